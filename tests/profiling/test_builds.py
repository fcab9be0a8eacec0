"""Every build of an ONNX model per site (TVM, ONNX Runtime, int8 with max_error), each verified
against the fp32 reference, on a recorded thread count; --engine; load recorded and warned about."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.profiling import builds, load
from planner.profiling.builds import Runner
from tests.profiling.onnx_models import mlp, strided_conv
from tests.profiling.tiny_app import chain_app, run

def one_model_app(tmp: Path, onnx: Path, shape: list[int], max_error: float | None = None) -> Path:
    """source -> model -> sink on this host (`here`) and a Raspberry Pi 5 (`pi`, estimated)."""
    model = {"onnx": onnx.name, "inputs": {"x": shape}, **({"max_error": max_error} if max_error else {})}
    return chain_app(tmp, model, {"here": {"tier": "edge", "target": "host"},
                                  "pi": {"tier": "base-station", "target": "rpi5"}},
                     [("here", "pi", 100, 2)], name="one")


def host_cores() -> int:
    from planner.app.targets import get_target

    return get_target("host").tvm_target["num-cores"]


def test_onnxruntime_and_tvm_builds_both_verified_on_the_recorded_threads(tmp_path):
    path = one_model_app(tmp_path, strided_conv(tmp_path / "conv.onnx"), [1, 16, 64, 64])
    table, stats = run(path, tmp_path / "cache")
    tvm, ort = table.get("m", "here", "tvm/fp32"), table.get("m", "here", "onnxruntime/fp32")
    assert [e.build for e in table.builds("m", "here")] == ["tvm/fp32", "onnxruntime/fp32"]  # no int8: no max_error
    for e in (tvm, ort):
        assert e.provenance == "measured" and e.verified is True and e.max_rel_error <= 1e-4
        assert e.threads == host_cores() and e.load_per_core is not None
    assert ort.latency_ms < tvm.latency_ms / 2  # untuned TVM is slow at this conv: ONNX Runtime is the faster build
    assert (ort.tvm_ms, ort.ort_ms) == (tvm.latency_ms, ort.latency_ms)
    # ONNX Runtime's memory: the initializers (32*16*3*3 float32), and the activations TVM planned
    weights_mb = 32 * 16 * 9 * 4 / 1e6
    assert ort.memory_mb == pytest.approx(tvm.memory_mb, rel=1e-9) and ort.memory_mb > weights_mb
    pi_tvm, pi_ort = table.get("m", "pi", "tvm/fp32"), table.get("m", "pi", "onnxruntime/fp32")
    assert pi_tvm.provenance == pi_ort.provenance == "estimated"
    assert pi_tvm.verified is None and pi_ort.verified is None and "unverified" in pi_ort.note
    # the same roofline scale for both engines: the estimate keeps the host's ratio between them
    assert pi_ort.latency_ms / pi_tvm.latency_ms == pytest.approx(ort.latency_ms / tvm.latency_ms, rel=1e-6)
    assert pi_ort.threads == 4  # a deployment on the Pi uses its 4 cores
    assert not table.excluded

    # threads are part of the key: another count measures again, and is what the entries say
    table1, stats1 = run(path, tmp_path / "cache", threads=1)
    assert stats1["counters"].measures == 2
    assert [e.threads for e in table1.builds("m", "here")] == [1, 1]  # TVM's pool and ONNX Runtime's threads
    _, warm = run(path, tmp_path / "cache", threads=1)
    assert warm["counters"].measures == 0 and warm["counters"].compiles == 0


def _injected(name: str, outputs):
    """The registry's build `name`, its outputs replaced by outputs(real outputs)."""
    kind = builds.KINDS[name]

    def load_it(work, threads):
        real = kind.load(work, threads)
        return Runner(run=lambda: outputs(real.run()), time=real.time, threads=real.threads, memory_mb=real.memory_mb)

    return replace(kind, load=load_it, version=lambda: f"test {name}")


@pytest.mark.parametrize("name, outputs, bad, good, reason", [
    ("onnxruntime/fp32", lambda outs: [np.full_like(o, np.nan) for o in outs], "onnxruntime/fp32", "tvm/fp32",
     "NaN or Inf"),
    ("tvm/fp32", lambda outs: [o * 1.01 + 0.01 for o in outs], "tvm/fp32", "onnxruntime/fp32",
     "above the fp32 tolerance"),
    ("tvm/fp32", lambda outs: [np.where(o > 0, np.inf, o) for o in outs], "tvm/fp32", "onnxruntime/fp32",
     "NaN or Inf"),
])
def test_a_build_with_nan_or_wrong_outputs_is_excluded_and_the_others_stay(tmp_path, monkeypatch, name, outputs, bad,
                                                                          good, reason):
    monkeypatch.setitem(builds.KINDS, name, _injected(name, outputs))
    path = one_model_app(tmp_path, mlp(tmp_path / "mlp.onnx"), [1, 16])
    table, _ = run(path, tmp_path / "cache")
    for site in ("here", "pi"):  # the estimate for the Pi scales the failed host build: excluded too
        assert [e.build for e in table.builds("m", site)] == [good]
        [ex] = [x for x in table.excluded if x.site == site]
        assert ex.build == bad and reason in ex.reason
    assert table.get("m", "here").verified is True
    here_ex = next(x for x in table.excluded if x.site == "here")
    assert any(bad in w and "excluded" in w for w in table.warnings)
    if reason == "above the fp32 tolerance":  # wrong but finite: timed, and its numbers shown beside the reason
        assert here_ex.profile.verified is False and here_ex.profile.max_rel_error > 1e-3


def test_int8_only_with_max_error_and_excluded_beyond_it(tmp_path):
    onnx_file = mlp(tmp_path / "mlp.onnx")
    table, _ = run(one_model_app(tmp_path, onnx_file, [1, 16]), tmp_path / "cache")
    assert "onnxruntime/int8" not in {e.build for e in table.entries} | {x.build for x in table.excluded}

    table, _ = run(one_model_app(tmp_path, onnx_file, [1, 16], max_error=0.5), tmp_path / "cache")
    int8 = table.get("m", "here", "onnxruntime/int8")
    assert int8.provenance == "measured" and int8.verified is True and 0 < int8.max_rel_error <= 0.5
    assert int8.memory_mb < table.get("m", "here", "onnxruntime/fp32").memory_mb  # int8 weights
    assert table.get("m", "pi", "onnxruntime/int8").provenance == "estimated"

    # the same measurement (cached), a budget below its error: excluded, on every site, with the reason
    table, stats = run(one_model_app(tmp_path, onnx_file, [1, 16], max_error=int8.max_rel_error / 2),
                       tmp_path / "cache")
    assert stats["counters"].measures == 0
    ex = [x for x in table.excluded if x.build == "onnxruntime/int8"]
    assert {x.site for x in ex} == {"here", "pi"} and all("max_error" in x.reason for x in ex)
    assert table.get("m", "here", "onnxruntime/fp32").verified is True


def test_engine_option_restricts_the_builds_the_solver_may_use(tmp_path):
    from tests.profiling.tiny_app import write_app

    path = write_app(tmp_path)
    table, _ = run(path, tmp_path / "cache", engine="onnxruntime")
    assert {e.build for e in table.entries if e.node == "mlp"} == {"onnxruntime/fp32"}
    assert table.get("post", "here").engine == "python"  # python steps are no engine's build
    tvm_out = [x for x in table.excluded if x.build == "tvm/fp32"]
    assert {x.site for x in tvm_out} == {"here", "pi"} and all(x.reason == "--engine onnxruntime" for x in tvm_out)
    assert tvm_out[0].profile.latency_ms > 0  # still shown with its numbers

    cache = str(tmp_path / "cache")
    result = CliRunner().invoke(cli, ["profile", str(path), "--cache-dir", cache, "--engine", "tvm", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {e["engine"] for e in data["entries"]} == {"tvm", "python"}
    result = CliRunner().invoke(cli, ["profile", str(path), "--cache-dir", cache])
    assert result.exit_code == 0
    for word in ("tvm/fp32", "onnxruntime/fp32", "unverified", "yes ("):
        assert word in result.output
    # solve and sweep pass it to the profiling stage: the plan's numbers are TVM's only
    result = CliRunner().invoke(cli, ["solve", str(path), "--cache-dir", cache, "--engine", "tvm", "--json",
                                      "--no-bundles", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output[result.output.index("{"):])
    assert {p["engine"] for p in plan["profiles"]} == {"tvm", "python"}
    result = CliRunner().invoke(cli, ["sweep", str(path), "--set", "links.here-pi.bandwidth_mbps=10,100", "--engine",
                                      "bogus", "-o", str(tmp_path / "sweep")])
    assert result.exit_code == 2 and "--engine must be one of" in result.output
    result = CliRunner().invoke(cli, ["profile", str(path), "--cache-dir", cache, "--engine", "tensorrt"])
    assert result.exit_code == 2 and "--engine must be one of auto, tvm, onnxruntime" in result.output


def test_a_busy_measurement_is_warned_about_every_time_it_is_used(tmp_path, monkeypatch):
    busy = load.Load(load_per_core=3.0, steal_pct=0.0, others_pct=80.0)
    monkeypatch.setattr(load, "measure_with_load", lambda fn, cores, speed=None: (fn(), busy))
    path = one_model_app(tmp_path, mlp(tmp_path / "mlp.onnx"), [1, 16])
    for _ in range(2):  # measured, then read from the cache: the warning both times
        table, _ = run(path, tmp_path / "cache")
        warned = [w for w in table.warnings if "busy machine" in w]
        assert len(warned) == 2 and all("'m'" in w and "80 %" in w for w in warned)
        assert table.get("m", "here").load_per_core == 3.0


def test_quietest_measures_again_after_a_bounded_wait_and_keeps_the_quieter(monkeypatch):
    loads = iter([load.Load(0.2, 0.0, 90.0), load.Load(0.2, 0.0, 5.0)])
    calls = []
    monkeypatch.setattr(load, "measure_with_load", lambda fn, cores, speed=None: (fn(), next(loads)))
    monkeypatch.setattr(load, "wait_until_quiet", lambda cores, wait_s: calls.append(wait_s))
    value, kept, reason = load.quietest(lambda: len(calls), cores=2, wait_s=7)
    assert calls == [7] and value == 1 and kept.others_pct == 5.0 and reason is None
    # no wait allowed: measured once, and said to be busy
    monkeypatch.setattr(load, "measure_with_load", lambda fn, cores, speed=None: (fn(), load.Load(0.2, 0.0, 90.0)))
    _, kept, reason = load.quietest(lambda: None, cores=2, wait_s=0)
    assert kept.others_pct == 90.0 and "90 %" in reason


def test_busy_thresholds():
    assert load.Load(load_per_core=1.0).busy_reason(2) is None  # 2 on 2 cores: the profiler's own core, one more
    assert "load average" in load.Load(load_per_core=1.6).busy_reason(2)
    assert "steal" in load.Load(load_per_core=0.1, steal_pct=20).busy_reason(2)
    _, real = load.measure_with_load(lambda: time.sleep(0.1), 2)  # long enough for /proc/stat to move
    assert real.load_per_core >= 0 and real.others_pct is not None and 0 <= real.others_pct <= 100


def test_verification_error_and_failures():
    from planner.profiling.verify import failure, max_rel_error

    ref = [np.array([1.0, -4.0, 0.5], np.float32)]
    assert max_rel_error([np.array([1.0, -4.4, 0.5])], ref) == (pytest.approx(0.1), False)  # 0.4 / max|ref| 4
    assert max_rel_error([np.array([1.0, np.inf, 0.5])], ref)[1] is True
    assert max_rel_error([np.zeros(2)], ref)[0] == float("inf")
    assert failure(5e-5, False, None) is None and "fp32 tolerance" in failure(2e-4, False, None)
    assert failure(0.01, False, 0.02) is None and "max_error 0.005" in failure(0.01, False, 0.005)
    assert "NaN" in failure(0.0, True, 1.0)
