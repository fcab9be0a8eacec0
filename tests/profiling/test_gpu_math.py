"""CUDA's fast math makes powf of a negative base NaN (PP-OCRv4 rec's NaN on an H200): GPU builds
write integral powers as products, and benchmarks/cuda_bisect.py finds the kernel that computes
NaN; both checked here on the CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from planner.app.targets import get_target
from planner.profiling.compile import compile_analyzed
from planner.profiling.gpu_math import integral_powers_as_products
from planner.profiling.measure import ort_session, run_tvm
from planner.profiling.onnx_import import import_onnx
from tests.profiling.onnx_models import layer_norm_pow

ROOT = Path(__file__).resolve().parents[2]
SHAPE = [2, 4, 8]


def cuda_source(executable) -> str:
    """The CUDA C of a build, as the device script reads it (benchmarks/cuda_bisect.py)."""
    source = _bisect_module().cuda_source(executable)
    assert source is not None, "no CUDA module in the build"
    return source


def test_a_cuda_build_has_no_powf_of_an_integral_power(tmp_path):
    mod = import_onnx(layer_norm_pow(tmp_path / "ln.onnx"), {"x": SHAPE})
    source = cuda_source(compile_analyzed(mod, get_target("g6-xlarge")).executable)
    # Pow(c, 2) and Pow(d, 3) are products; Pow(var + eps, 0.5), of a positive base, stays powf
    # (inlined where it is used): every powf left is that one's
    half = "0x1p-1f/*5.000000e-01*/)"
    assert source.count("powf(") == source.count(half) > 0


def test_integral_powers_as_products_keep_the_answer_on_the_cpu(tmp_path):
    path = layer_norm_pow(tmp_path / "ln.onnx")
    mod = import_onnx(path, {"x": SHAPE})
    products = integral_powers_as_products(mod)
    assert mod.script().count("R.power(") == 3 and products.script().count("R.power(") == 1
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    [want] = ort_session(path.read_bytes(), optimize=False).run(None, {"x": x})
    [got] = run_tvm(compile_analyzed(products, get_target("host")).executable, [x])
    assert np.all(np.isfinite(want)) and (want < 0).any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _bisect_module():
    spec = importlib.util.spec_from_file_location("cuda_bisect", ROOT / "benchmarks" / "cuda_bisect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("emulate", [True, False])
def test_cuda_bisect_on_the_cpu_names_the_kernel_that_computes_nan(tmp_path, emulate):
    """The device script's CPU path: with CUDA's __powf emulated, the build without the rewrite is
    NaN, first in the kernel that computes the power, on just the inputs that are negative."""
    import json

    model, out = layer_norm_pow(tmp_path / "ln.onnx"), tmp_path / "bisect.json"
    argv = ["--model", str(model), "--shape", "x=2,4,8", "--target", "llvm", "--out", str(out)]
    result = _bisect_module().main(argv + (["--emulate-fast-pow"] if emulate else []))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    planner, unfixed = result["variants"]
    assert planner["variant"] == "planner" and planner["first_nonfinite_kernel"] is None
    assert planner["max_rel_error"] < 1e-4 and not planner["nonfinite"]
    if not emulate:  # the CPU's own pow is exact: nothing to find
        assert unfixed["first_nonfinite_kernel"] is None and unfixed["max_rel_error"] < 1e-4
        return
    assert unfixed["nonfinite"] and "verification failed" in unfixed["verdict"]
    culprit = unfixed["first_nonfinite_kernel"]
    assert "log" in culprit["kernel"] and "exp" in culprit["kernel"]
    [inputs] = culprit["inputs"]
    assert 0 < inputs["negative"] < 1 and culprit["result"]["nonfinite"] == pytest.approx(inputs["negative"])


def test_cuda_bisect_compile_only_counts_the_powf_calls_of_each_variant(tmp_path):
    """Its CUDA path up to the GPU: the planner's build keeps only the non-integral power's powf."""
    model, out = layer_norm_pow(tmp_path / "ln.onnx"), tmp_path / "bisect.json"
    result = _bisect_module().main(["--model", str(model), "--shape", "x=2,4,8", "--compile-only", "--out", str(out)])
    planner, unfixed = result["variants"][:2]
    assert result["target"]["kind"] == "cuda" and "max_rel_error" not in planner
    assert set(planner["powf_exponents"]) == {"5.000000e-01"}
    assert {"2.000000e+00", "3.000000e+00", "5.000000e-01"} == set(unfixed["powf_exponents"])


def test_only_a_power_whose_result_has_the_base_type_is_rewritten():
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((3,), "float32"))
    with bb.function("main", [x]):
        wider = bb.emit(relax.op.power(x, relax.const(np.array([[2.0]], "float32"))))  # (1, 3): not x*x
        cube = bb.emit(relax.op.power(x, relax.const(3.0, "float32")))
        root = bb.emit(relax.op.power(x, relax.const(2.5, "float32")))
        bb.emit_func_output(relax.Tuple([wider, cube, root]))
    text = integral_powers_as_products(bb.get()).script()
    assert text.count("R.power(") == 2 and text.count("R.multiply(") == 2 and "2.5" in text
