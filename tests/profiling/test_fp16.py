"""The fp16 build (issue 10, item 1): ONNX Runtime running the model converted to fp16, offered on
GPU targets only and only with `max_error`. Its error is measured on this CPU (the same fp16 file)
and checked here against numpy's fp16 arithmetic on the same network; its GPU time is the fp32
estimate scaled by the target's fp16 roofline; the GPU build itself stays unverified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from planner.app.targets import get_target
from planner.app.tensors import TensorSpec
from planner.cli.main import app as cli
from planner.profiling.compile import Kernel
from planner.profiling.half import fp16_ratio
from planner.profiling.measure import sample_inputs
from planner.profiling.verify import max_rel_error
from tests.profiling.onnx_models import conv_wide_batch_norm, mlp, scaled_twice
from tests.profiling.tiny_app import chain_app, run

SHAPE = [4, 16]


def gpu_app(tmp: Path, onnx_file: Path, max_error: float | None, gpu_only: bool = False,
            shape: list[int] = SHAPE) -> Path:
    """source -> m -> sink on this host (`here`), m also (or only) on an L4 (`gpu`, g6-xlarge)."""
    model = {"onnx": onnx_file.name, "inputs": {"x": shape}, **({"max_error": max_error} if max_error else {}),
             **({"sites": ["gpu"]} if gpu_only else {})}
    return chain_app(tmp, model, {"here": {"tier": "edge", "target": "host"},
                                  "gpu": {"tier": "cloud", "target": "g6-xlarge"}},
                     [("here", "gpu", 1000, 1)], name="half")


def numpy_fp16(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The MLP in numpy's fp16 (its matmul accumulates in fp32, then rounds)."""
    h = {k: v.astype(np.float16) for k, v in w.items()}
    half = np.maximum(x.astype(np.float16) @ h["w1"] + h["b1"], 0) @ h["w2"]
    assert half.dtype == np.float16
    return half


def numpy_fp16_error(onnx_file: Path) -> tuple[float, float]:
    """The MLP's error in fp16, computed by numpy alone (inputs, weights and every intermediate
    in fp16; numpy's fp16 matmul accumulates in fp32), against the float64 computation on the
    profiling inputs; and one fp16 step of the output's largest value, in the same relative units."""
    w = {t.name: numpy_helper.to_array(t) for t in onnx.load(onnx_file).graph.initializer}
    x = sample_inputs([TensorSpec(name="x", shape=SHAPE, dtype="float32")])["x"]
    exact = np.maximum(x.astype(np.float64) @ w["w1"] + w["b1"], 0) @ w["w2"]
    top = float(np.abs(exact).max())
    return max_rel_error([numpy_fp16(w, x)], [exact])[0], float(np.spacing(np.float16(top))) / max(1.0, top)


def test_fp16_only_on_gpu_targets_with_max_error_its_cpu_error_checked_and_judged(tmp_path):
    onnx_file = mlp(tmp_path / "mlp.onnx")
    table, _ = run(gpu_app(tmp_path, onnx_file, None), tmp_path / "cache")
    assert "onnxruntime/fp16" not in {e.build for e in table.entries} | {x.build for x in table.excluded}

    table, _ = run(gpu_app(tmp_path, onnx_file, 0.01), tmp_path / "cache")
    here = {e.build for e in table.builds("m", "here")} | {x.build for x in table.excluded if x.site == "here"}
    assert "onnxruntime/fp16" not in here and "onnxruntime/int8" in here  # int8 on CPUs, fp16 on GPUs
    assert "onnxruntime/int8" not in {e.build for e in table.builds("m", "gpu")}
    fp16, fp32 = table.get("m", "gpu", "onnxruntime/fp16"), table.get("m", "gpu", "onnxruntime/fp32")
    assert fp16.provenance == "estimated" and fp16.verified is None  # the GPU build did not run
    assert fp16.verification == f"unverified (CPU {fp16.max_rel_error:.1e})"
    # its arithmetic ran on this CPU: numpy's fp16 error, to one fp16 step (the file folds MatMul and Add
    # into one Gemm: one rounding less)
    reference, step = numpy_fp16_error(onnx_file)
    assert fp16.max_rel_error > 1e-4  # an fp16 error: fp32 arithmetic is ~1e-7 off here
    assert fp16.max_rel_error == pytest.approx(reference, abs=step), (fp16.max_rel_error, reference, step)
    # its time: the fp32 estimate x the L4's fp16/fp32 roofline (this MLP is memory-bound: half the bytes)
    assert fp16.latency_ms == pytest.approx(fp32.latency_ms / 2, rel=1e-9)
    assert fp16.expected_error_pct is None and "latency error unknown" in fp16.note
    assert "measured on this CPU" in fp16.note and "the GPU build unverified" in fp16.note
    assert fp16.memory_mb < fp32.memory_mb  # fp16 weights and activations

    # the same measurement (cached), a budget below its error: excluded with the reason
    table, stats = run(gpu_app(tmp_path, onnx_file, fp16.max_rel_error / 2), tmp_path / "cache")
    assert stats["counters"].measures == 0
    [ex] = [x for x in table.excluded if x.build == "onnxruntime/fp16"]
    assert ex.site == "gpu" and "above max_error" in ex.reason and "emulated on this host's CPU" in ex.reason
    assert ex.profile.verified is False and ex.profile.verification == f"FAILED ({fp16.max_rel_error:.1e})"
    assert table.get("m", "gpu", "onnxruntime/fp32") is not None


def test_fp16_ratio_follows_the_published_peaks():
    l4 = get_target("g6-xlarge")
    compute = Kernel("conv", flops=1e12, nbytes=1)
    memory = Kernel("add", flops=1, nbytes=10**9)
    assert fp16_ratio([compute], l4) == pytest.approx(l4.peak_gflops / l4.peak_gflops_fp16)  # 30.3 / 121
    assert fp16_ratio([memory], l4) == pytest.approx(0.5)
    assert fp16_ratio([], get_target("g4dn-xlarge")) == pytest.approx(8100 / 65000)  # no kernels: peak ratio
    assert fp16_ratio([compute], get_target("jetson-orin-nano")) is None  # no published fp16 peak: no gain


def test_a_solve_takes_fp16_on_the_gpu_and_the_plan_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CALIBRATION_DIR", str(tmp_path / "calibration"))
    path = gpu_app(tmp_path, mlp(tmp_path / "mlp.onnx"), 0.01, gpu_only=True)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["solve", str(path), "--cache-dir", str(tmp_path / "cache"), "-o", str(out),
                                      "--no-bundles"])
    assert result.exit_code == 0, result.output
    plan = json.loads((out / "plan.json").read_text())
    m = plan["models"]["m"]
    assert (m["site"], m["engine"], m["precision"], m["verified"]) == ("gpu", "onnxruntime", "fp16", None)
    result = CliRunner().invoke(cli, ["profile", str(path), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0 and "onnxruntime/fp16" in result.output and "unverified (CPU" in result.output


def test_without_a_published_fp16_peak_no_gain_is_claimed():
    from planner.profiling.entries import HostBuildEntry
    from planner.profiling.half import fp16_site

    fp32 = {"latency_ms": 3.0, "memory_mb": 10.0, "provenance": "estimated", "note": "roofline"}
    found = fp16_site(fp32, HostBuildEntry(memory_mb=5.0, max_rel_error=2e-3), [Kernel("k", 1e9, 10**6)],
                      get_target("jetson-orin-nano"))
    assert found["latency_ms"] == 3.0 and found["memory_mb"] == 5.0 and found["max_rel_error"] == 2e-3
    assert "no fp16 peak for jetson-orin-nano" in found["note"] and "no gain claimed" in found["note"]


def test_a_model_the_converter_rejects_has_no_fp16_build_and_says_why(tmp_path, monkeypatch):
    import planner.quantize as quantize

    def refuse(path):
        raise quantize.QuantizationError("fp16 conversion failed (ValueError: test)")

    monkeypatch.setattr(quantize, "float16", refuse)
    table, _ = run(gpu_app(tmp_path, mlp(tmp_path / "mlp.onnx"), 0.01), tmp_path / "cache")
    [ex] = [x for x in table.excluded if x.build == "onnxruntime/fp16"]
    assert ex.site == "gpu" and ex.reason == "fp16 conversion failed (ValueError: test)" and ex.profile is None
    assert table.get("m", "gpu", "onnxruntime/fp32") is not None


def test_fp16_overflow_is_caught_on_this_cpu(tmp_path):
    # e.g. 0.9 * 300 * 300 = 81000: fine in fp32, beyond fp16's 65504 (ONNX Runtime's CPU, running the
    # fp16 file as it is, would compute this Mul in fp32 and miss it)
    table, _ = run(gpu_app(tmp_path, scaled_twice(tmp_path / "scaled.onnx", width=16), 0.5, shape=[1, 16]),
                   tmp_path / "cache")
    x = sample_inputs([TensorSpec(name="x", shape=[1, 16], dtype="float32")])["x"]
    with np.errstate(over="ignore"):  # numpy agrees: it overflows
        assert np.isinf(x.astype(np.float16) * np.float16(300) * np.float16(300)).any()
    [ex] = [x for x in table.excluded if x.build == "onnxruntime/fp16"]
    assert "NaN or Inf" in ex.reason and ex.profile.verified is False
    assert table.get("m", "gpu", "onnxruntime/fp32") is not None


def test_the_cpu_emulation_computes_numpy_s_fp16_arithmetic(tmp_path):
    from onnxconverter_common.float16 import convert_float_to_float16

    from planner.profiling.fp16_emulation import emulated
    from planner.profiling.measure import ort_session

    onnx_file = mlp(tmp_path / "mlp.onnx", seed=4)
    model = onnx.load(onnx_file)
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # the graph as written (planner.quantize.float16 folds MatMul and Add into one Gemm first: one rounding less)
    half = convert_float_to_float16(model, keep_io_types=True).SerializeToString()
    x = np.random.default_rng(4).standard_normal((256, 16)).astype(np.float32)
    want = numpy_fp16(w, x).astype(np.float32)
    got = ort_session(emulated(half), 1, optimize=False).run(None, {"x": x})[0]
    # the same fp16 values, but for a rare last-place step where fp32 sums ran in another order
    assert np.all(np.abs(got - want) <= np.spacing(np.abs(want).astype(np.float16)).astype(np.float32))
    assert np.mean(got == want) > 0.95
    as_is = ort_session(half, 1, optimize=False).run(None, {"x": x})[0]
    assert np.mean(as_is == want) < np.mean(got == want)  # the fp16 file as ONNX Runtime's CPU runs it: less so


def test_a_batch_norm_beyond_fp16_is_folded_into_its_conv_before_the_conversion(tmp_path):
    from onnxconverter_common.float16 import convert_float_to_float16

    from planner.profiling.fp16_emulation import emulated
    from planner.profiling.measure import ort_session

    onnx_file = conv_wide_batch_norm(tmp_path / "convbn.onnx")
    table, _ = run(gpu_app(tmp_path, onnx_file, 0.01, shape=[1, 4, 8, 8]), tmp_path / "cache")
    fp16 = table.get("m", "gpu", "onnxruntime/fp16")
    assert fp16 is not None and 0 < fp16.max_rel_error < 0.01
    # the same model converted as written: the converter clamps the variance to 1e4, 10x the output
    x = sample_inputs([TensorSpec(name="x", shape=[1, 4, 8, 8], dtype="float32")])["x"]
    want = ort_session(onnx_file.read_bytes(), 1, optimize=False).run(None, {"x": x})
    with pytest.warns(UserWarning, match="truncated"):
        as_written = convert_float_to_float16(onnx.load(onnx_file), keep_io_types=True).SerializeToString()
    got = ort_session(emulated(as_written), 1, optimize=False).run(None, {"x": x})
    assert max_rel_error(got, want)[0] > 1
