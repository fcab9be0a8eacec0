"""benchmarks/engine_choice.py's core on a tiny model, so that the benchmark cannot rot: the plan
solved with every site on this host, every build timed in interleaved rounds on the profiler's
threads, and the gap to the fastest build."""

from __future__ import annotations

import pytest

from benchmarks import engine_choice
from tests.profiling.onnx_models import strided_conv
from tests.profiling.tiny_app import chain_app


def conv_app(tmp, max_error=None):
    """camera -> conv -> screen; two sites of other hardware (on this host in the benchmark)."""
    strided_conv(tmp / "conv.onnx")
    model = {"onnx": "conv.onnx", "inputs": {"x": [1, 16, 64, 64]}, **({"max_error": max_error} if max_error else {})}
    return chain_app(tmp, model, {"phone": {"tier": "edge", "target": "rpi5"},
                                  "mec": {"tier": "base-station", "target": "xeon-d", "cost_per_hour": 0.4}},
                     [("phone", "mec", 50, 8)], name="conv", node="conv", source="camera", sink="screen")


def test_the_plan_chooses_the_faster_engine_and_every_build_is_timed_in_rounds(tmp_path):
    from planner.app.targets import get_target

    result = engine_choice.engine_choice(conv_app(tmp_path), [], None, 2, tmp_path / "work")
    cores = get_target("host").tvm_target["num-cores"]
    assert result["plan"]["status"] in ("OPTIMAL", "FEASIBLE") and result["threads"] == cores
    row = result["models"]["conv"]
    assert set(row["builds"]) == {"tvm/fp32", "onnxruntime/fp32"}  # no max_error: no int8
    for b in row["builds"].values():
        assert len(b["samples_ms"]) == 2 and b["threads"] == cores and b["admitted"] and b["profiled_ms"] > 0
        assert b["min_ms"] <= b["median_ms"] <= b["max_ms"]
    # untuned TVM is many times slower at this conv (tests/profiling/test_builds.py): the plan runs
    # ONNX Runtime on the host, it is the fastest build this run too, so the gap is nothing
    assert row["chosen"] == row["best"] == "onnxruntime/fp32" and row["gap_pct"] == 0 and row["within_goal"]
    assert row["plan_ms"] == pytest.approx(row["builds"]["onnxruntime/fp32"]["profiled_ms"], abs=1e-3)  # plan: us
    assert row["site"] in result["plan"]["placement"].values()
    report = {"machine": engine_choice.machine("test") | {"loadavg_after": engine_choice.loadavg(cores)},
              "quick": True, "result": result}
    md = engine_choice.markdown(report)
    assert "| conv | onnxruntime/fp32 |" in md and "| conv | tvm/fp32 | " in md


def test_with_max_error_the_int8_build_is_timed_too(tmp_path):
    result = engine_choice.engine_choice(conv_app(tmp_path, max_error=0.5), [], None, 1, tmp_path / "work")
    assert set(result["models"]["conv"]["builds"]) == {"tvm/fp32", "onnxruntime/fp32", "onnxruntime/int8"}


def test_gap_is_the_chosen_builds_distance_from_the_fastest_admitted_one():
    medians = {"tvm/fp32": 12.0, "onnxruntime/fp32": 10.0, "onnxruntime/int8": 8.0}
    # int8 is faster but not admitted (failed its accuracy budget): the best is ONNX Runtime fp32
    g = engine_choice.gap(medians, "tvm/fp32", {"tvm/fp32", "onnxruntime/fp32"})
    assert (g["best"], g["best_ms"], g["chosen_ms"]) == ("onnxruntime/fp32", 10.0, 12.0)
    assert g["gap_pct"] == pytest.approx(20.0) and not g["within_goal"]
    assert engine_choice.gap({"a": 10.4, "b": 10.0}, "a", {"a", "b"})["within_goal"]  # 4 % <= 5 %
    assert engine_choice.gap(medians, None, set(medians))["gap_pct"] is None  # no plan: no gap, not met
