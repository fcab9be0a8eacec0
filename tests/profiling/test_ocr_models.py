"""The real OCR models (PP-OCRv4 det, PP-OCR mobile cls, PP-OCRv4 rec, fetched by `make models`):
each imports (cls and rec only after shape folding), compiles for this host, and gives the same
output as ONNX Runtime within 1e-4 on the same input. Each model compiles once per session."""

from __future__ import annotations

import numpy as np
import pytest
from tests import OCR_MODELS
from tests.conftest import require_system

MODELS = OCR_MODELS
OCR = {
    "det": ("ch_PP-OCRv4_det_infer.onnx", [1, 3, 640, 640]),
    "cls": ("ch_ppocr_mobile_v2.0_cls_infer.onnx", [8, 3, 48, 192]),
    "rec": ("ch_PP-OCRv4_rec_infer.onnx", [8, 3, 48, 320]),
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _models_fetched():  # module scope: before the module's compiles
    require_system("the OCR models", all((MODELS / f).is_file() for f, _ in OCR.values()),
                   "`make models` fetches them")


@pytest.fixture(scope="module", params=list(OCR))
def compiled(request):
    from planner.profiling.compile import compile_analyzed
    from planner.profiling.onnx_import import import_onnx
    from planner.app.targets import get_target

    name = request.param
    file, shape = OCR[name]
    c = compile_analyzed(import_onnx(MODELS / file, {"x": shape}), get_target("host"))
    return name, c


def test_ocr_model_matches_onnx_runtime(compiled):
    from planner.profiling.measure import ort_session, run_ort, run_tvm

    name, c = compiled
    file, shape = OCR[name]
    x = np.random.default_rng(7).uniform(-1, 1, shape).astype(np.float32)  # the models' input range
    got = run_tvm(c.executable, [x])
    want = run_ort(ort_session((MODELS / file).read_bytes()), {"x": x})
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    assert c.kernels and c.params_bytes > 100_000 and c.activation_bytes > 0


def test_cls_and_rec_need_folding():
    from planner.profiling.errors import ProfilingInputError
    from planner.profiling.onnx_import import graph_inputs, import_folded, load_checked, pin_inputs

    model = load_checked(MODELS / OCR["rec"][0])
    pinned = pin_inputs(model, {"x": OCR["rec"][1]})  # static input shape, nothing folded
    with pytest.raises(ProfilingInputError, match="Reshape"):
        import_folded(pinned)
    assert [i.name for i in graph_inputs(model)] == ["x"]


def test_rec_gpu_kernels_have_no_pow_and_rec_is_the_file_the_h200_record_names():
    """rec's LayerNorms write the variance as Pow(x - mean, 2): its CUDA C had powf(x, 2), NaN for
    x < 0 under TVM's --use_fast_math (profiles/verification/nvidia-h200.yaml); now its GPU kernels
    have no pow. The record excludes rec by its sha256: the file fetched here must be the one measured."""
    from planner.app.targets import get_target
    from planner.profiling.compile import fused_module
    from planner.profiling.hardware_checks import all_records
    from planner.profiling.onnx_import import import_onnx
    from planner_runtime.digest import sha256_file

    file, shape = OCR["rec"]
    [record] = [r.failure for r in all_records() if r.failure.model == file]
    assert record.onnx_sha256 == sha256_file(MODELS / file) and record.shapes == {"x": shape}
    mod = import_onnx(MODELS / file, {"x": shape})
    assert mod.script().count("R.power(") == 5
    assert "T.pow(" not in fused_module(mod, get_target("g6-xlarge")).script()
