"""The OCR example's glue, checked against an independent truth.

(a) the chain preprocess -> det -> find_text -> cls -> rotate -> rec -> decode, wired here by
    hand with ONNX Runtime on the real models, reads `sample.txt` from `sample.png`;
(b) the rapidocr_onnxruntime library itself (the code the glue is modelled on) reads the same
    lines, and its own pre/post-processing functions, applied to the same model outputs, give
    the same boxes, model inputs and text as the steps;
(c) every step returns exactly its static shapes and dtypes, on the sample and on blank input,
    and they agree with the inputs app.yaml declares.

The models come from `examples/ocr/models/`; when missing, `fetch_models.py` downloads them.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests import OCR, OCR_MODELS

MODELS = OCR_MODELS
DET, CLS, REC = "ch_PP-OCRv4_det_infer.onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"
WHEEL = MODELS / "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"


def _load_steps():
    spec = importlib.util.spec_from_file_location("ocr_example_steps", OCR / "ocr_steps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


steps = _load_steps()
K = steps.K


def _lines(texts) -> list[str]:
    """Non-empty lines, whitespace normalized."""
    out = []
    for t in texts:
        t = t.decode("utf-8") if isinstance(t, bytes) else t
        t = " ".join(t.split())
        if t:
            out.append(t)
    return out


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def models() -> Path:
    needed = [DET, CLS, REC, "ppocr_keys_v1.txt", WHEEL.name]
    if not all((MODELS / n).is_file() for n in needed):
        proc = subprocess.run([sys.executable, str(OCR / "fetch_models.py")], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"fetch_models.py failed:\n{proc.stdout}\n{proc.stderr}")
    return MODELS


@pytest.fixture(scope="module")
def sessions(models):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # `make test` runs two workers on two cores
    return {
        name: ort.InferenceSession(str(models / f), opts, providers=["CPUExecutionProvider"])
        for name, f in (("det", DET), ("cls", CLS), ("rec", REC))
    }


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(OCR / "sample.png").convert("RGB"))


@pytest.fixture(scope="module")
def expected_lines() -> list[str]:
    return _lines((OCR / "sample.txt").read_text(encoding="utf-8").splitlines())


def _model(session, x: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def run_chain(sessions, image: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """The graph of app.yaml, executed in order; every node's outputs by node name."""
    out: dict[str, dict[str, np.ndarray]] = {}
    out["preprocess"] = steps.preprocess(image=image)
    out["det"] = {"prob": _model(sessions["det"], out["preprocess"]["x"])}
    out["find_text"] = steps.find_text(prob=out["det"]["prob"], image=image)
    out["cls"] = {"cls_out": _model(sessions["cls"], out["find_text"]["cls_x"])}
    out["rotate"] = steps.rotate(
        cls_out=out["cls"]["cls_out"], crops=out["find_text"]["crops"], crop_w=out["find_text"]["crop_w"]
    )
    out["rec"] = {"rec_out": _model(sessions["rec"], out["rotate"]["rec_x"])}
    out["decode"] = steps.decode(rec_out=out["rec"]["rec_out"], count=out["find_text"]["count"])
    return out


@pytest.fixture(scope="module")
def chain(sessions, sample):
    return run_chain(sessions, sample)


@pytest.fixture(scope="module")
def rapidocr(models, tmp_path_factory):
    """The reference library: installed, or unpacked from the fetched wheel."""
    import shapely  # noqa: F401  (rapidocr_onnxruntime needs it: a dev dependency, never a skip)

    try:
        module = importlib.import_module("rapidocr_onnxruntime")
    except ImportError:
        target = tmp_path_factory.mktemp("rapidocr")
        with zipfile.ZipFile(WHEEL) as zf:
            zf.extractall(target)
        sys.path.insert(0, str(target))
        module = importlib.import_module("rapidocr_onnxruntime")
    return module.RapidOCR()


# ---------------------------------------------------------------- (a) the chain reads the sample


def test_chain_reads_the_sample(chain, expected_lines):
    text = chain["decode"]["text"]
    count = int(chain["find_text"]["count"][0])
    assert count == len(expected_lines)
    assert _lines(text) == expected_lines
    assert all(t == b"" for t in text[count:])
    assert np.all(chain["decode"]["score"][:count] > 0.9)


def test_chain_turns_upside_down_text(sessions, sample, expected_lines):
    """The sample rotated by 180 degrees: the classifier says 180, rotate turns every crop,
    and the lines read the same (in reverse order: the last line is now on top)."""
    out = run_chain(sessions, np.ascontiguousarray(sample[::-1, ::-1]))
    count = int(out["find_text"]["count"][0])
    assert count == len(expected_lines)
    assert np.all(out["cls"]["cls_out"][:count].argmax(axis=1) == 1)
    assert _lines(out["decode"]["text"]) == expected_lines[::-1]


# ---------------------------------------------------------------- (b) the real library is the truth


def test_rapidocr_reads_the_same_lines(rapidocr, chain, expected_lines):
    result, _ = rapidocr(str(OCR / "sample.png"))
    assert result is not None
    assert _lines(line[1] for line in result) == expected_lines
    assert _lines(chain["decode"]["text"]) == _lines(line[1] for line in result)
    # rapidocr runs its detector at 736x736 here, the chain at 640x640: boxes agree to a few pixels
    n = int(chain["find_text"]["count"][0])
    assert np.abs(chain["find_text"]["boxes"][:n] - np.array([line[0] for line in result])).max() <= 6


def test_steps_match_rapidocr_processing(rapidocr, chain, sample):
    """rapidocr's own functions, fed the same model outputs, give what the steps give."""
    n = int(chain["find_text"]["count"][0])
    bgr = np.ascontiguousarray(sample[:, :, ::-1])
    h, w = bgr.shape[:2]

    # detector input: DetPreProcess (no resize: 640x640 is already a multiple of 32 here)
    ref_x = rapidocr.text_det.get_preprocess(max(h, w)).normalize(bgr).transpose(2, 0, 1)[np.newaxis]
    np.testing.assert_allclose(chain["preprocess"]["x"], ref_x, atol=1e-6)

    # boxes: DBPostProcess + filter_tag_det_res + sorted_boxes
    prob = chain["det"]["prob"]
    dt_boxes, _ = rapidocr.text_det.postprocess_op(prob, (h, w))
    ref_boxes = rapidocr.sorted_boxes(rapidocr.text_det.filter_tag_det_res(dt_boxes, (h, w)))
    assert n == len(ref_boxes)
    np.testing.assert_array_equal(chain["find_text"]["boxes"][:n], np.array(ref_boxes))

    # classifier input: perspective crops + TextClassifier.resize_norm_img
    crops = rapidocr.get_crop_img_list(bgr, ref_boxes)
    ref_cls_x = np.stack([rapidocr.text_cls.resize_norm_img(c) for c in crops])
    np.testing.assert_allclose(chain["find_text"]["cls_x"][:n], ref_cls_x, atol=1e-6)

    # recognizer input: TextRecognizer.resize_norm_img at the fixed 320/48 ratio (no crop is
    # upside down in the sample, so rotate only lays the crops out)
    assert not np.any(chain["cls"]["cls_out"][:n].argmax(axis=1) == 1)
    ref_rec_x = np.stack([rapidocr.text_rec.resize_norm_img(c, 320 / 48) for c in crops])
    np.testing.assert_allclose(chain["rotate"]["rec_x"][:n], ref_rec_x, atol=1e-6)

    # text: CTCLabelDecode with the characters from the model's metadata
    ref = rapidocr.text_rec.postprocess_op(chain["rec"]["rec_out"][:n])
    assert [t.decode("utf-8") for t in chain["decode"]["text"][:n]] == [t for t, _ in ref]
    np.testing.assert_allclose(chain["decode"]["score"][:n], [s for _, s in ref], rtol=1e-6)


# ---------------------------------------------------------------- (c) static shapes and dtypes

OUTPUTS = {
    "preprocess": {"x": ((1, 3, 640, 640), np.float32)},
    "find_text": {
        "cls_x": ((K, 3, 48, 192), np.float32),
        "crops": ((K, 48, 320, 3), np.uint8),
        "crop_w": ((K,), np.int32),
        "boxes": ((K, 4, 2), np.float32),
        "count": ((1,), np.int32),
    },
    "rotate": {"rec_x": ((K, 3, 48, 320), np.float32)},
    "decode": {"text": ((K,), np.object_), "score": ((K,), np.float32)},
}


def assert_static(node: str, outputs: dict[str, np.ndarray]) -> None:
    assert set(outputs) == set(OUTPUTS[node]), node
    for name, (shape, dtype) in OUTPUTS[node].items():
        arr = outputs[name]
        assert isinstance(arr, np.ndarray), (node, name)
        assert arr.shape == shape and arr.dtype == dtype, (node, name, arr.shape, arr.dtype)
        if dtype == np.object_:
            assert all(isinstance(v, bytes) for v in arr), (node, name)


def assert_blank(out: dict[str, dict[str, np.ndarray]]) -> None:
    for node in OUTPUTS:
        assert_static(node, out[node])
    ft = out["find_text"]
    assert ft["count"][0] == 0
    for name in ("cls_x", "crops", "crop_w", "boxes"):
        assert not ft[name].any(), name
    assert not out["rotate"]["rec_x"].any()
    assert list(out["decode"]["text"]) == [b""] * K
    assert not out["decode"]["score"].any()


def test_steps_static_on_sample(chain):
    for node in OUTPUTS:
        assert_static(node, chain[node])


@pytest.mark.parametrize("value", [0, 255], ids=["black", "white"])
def test_chain_on_blank_image(sessions, value):
    assert_blank(run_chain(sessions, np.full((640, 640, 3), value, np.uint8)))


def test_steps_on_zero_tensors():
    """All-zero inputs straight into each step (no models): no text."""
    out = {
        "preprocess": steps.preprocess(image=np.zeros((640, 640, 3), np.uint8)),
        "find_text": steps.find_text(prob=np.zeros((1, 1, 640, 640), np.float32), image=np.zeros((640, 640, 3), np.uint8)),
        "rotate": steps.rotate(
            cls_out=np.zeros((K, 2), np.float32), crops=np.zeros((K, 48, 320, 3), np.uint8), crop_w=np.zeros((K,), np.int32)
        ),
        "decode": steps.decode(rec_out=np.zeros((K, 40, 6625), np.float32), count=np.zeros((1,), np.int32)),
    }
    assert_blank(out)
    assert np.all(out["preprocess"]["x"] == -1.0)


def test_decode_ignores_rows_past_count(chain):
    text = steps.decode(rec_out=chain["rec"]["rec_out"], count=np.array([2], np.int32))["text"]
    assert list(text[2:]) == [b""] * (K - 2)
    assert list(text[:2]) == list(chain["decode"]["text"][:2])


def test_steps_are_deterministic(chain, sample):
    again = steps.find_text(prob=chain["det"]["prob"].copy(), image=sample.copy())
    for name, arr in chain["find_text"].items():
        np.testing.assert_array_equal(again[name], arr)


def test_app_yaml_declares_what_flows(chain, sample):
    """Every input app.yaml declares has the shape and dtype its producer really emits."""
    app = yaml.safe_load((OCR / "app.yaml").read_text())
    produced = {
        ("camera", None): sample,
        ("preprocess", None): chain["preprocess"]["x"],
        ("det", None): chain["det"]["prob"],
        ("cls", None): chain["cls"]["cls_out"],
        ("rotate", "rec_x"): chain["rotate"]["rec_x"],
        ("rec", None): chain["rec"]["rec_out"],
        **{("find_text", k): v for k, v in chain["find_text"].items()},
    }
    checked = 0
    for flow in app["flows"]:
        node = app["models"].get(flow["to"])
        if node is None:
            continue
        decls = node["inputs"]
        name = flow.get("input") or next(iter(decls))
        decl = decls[name]
        shape, dtype = (decl, "float32") if isinstance(decl, list) else (decl["shape"], decl.get("dtype", "float32"))
        arr = produced[(flow["from"], flow.get("output"))]
        assert (list(arr.shape), str(arr.dtype)) == (shape, dtype), flow
        checked += 1
    assert checked == sum(len(m["inputs"]) for m in app["models"].values())
    for node, f in (("det", DET), ("cls", CLS), ("rec", REC)):
        assert app["models"][node]["onnx"] == f"models/{f}"


def test_fetch_is_idempotent(models):
    proc = subprocess.run([sys.executable, str(OCR / "fetch_models.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "already" in proc.stdout
