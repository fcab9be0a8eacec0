"""`planner run` on the OCR example reads the bundled image: the text is sample.txt, with the
models compiled by TVM for this host and with ONNX Runtime (the reference) alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tests import ROOT, OCR
from tests.conftest import require_system

MODELS = ["ch_PP-OCRv4_det_infer.onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx",
          "ppocr_keys_v1.txt"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module", autouse=True)
def _models_fetched():
    require_system("the OCR models", all((OCR / "models" / m).is_file() for m in MODELS), "`make models` fetches them")


@pytest.mark.parametrize("engine", ["tvm", "onnxruntime"])
def test_planner_run_reads_the_sample(engine):
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "run", str(OCR / "app.yaml"), "--input", f"camera={OCR / 'sample.png'}",
         "--engine", engine, "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=880, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    expected = [line for line in (OCR / "sample.txt").read_text().splitlines() if line.strip()]
    lines = [" ".join(t.split()) for t in result["text"] if t.strip()]
    assert lines == expected
    assert all(s > 0.9 for s in result["score"][: len(expected)])
    assert len(result["boxes"]) == 8


def _run(*args):
    return subprocess.run([sys.executable, "-m", "planner", "run", str(OCR / "app.yaml"), *map(str, args),
                           "--engine", "onnxruntime"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("case", ["missing-file", "wrong-shape", "unknown-input", "no-input", "bad-syntax"])
def test_planner_run_bad_input_is_one_clear_error(case, tmp_path):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGB", (100, 50)).save(small)
    args, message = {
        "missing-file": (["--input", f"camera={tmp_path / 'nope.png'}"], "file not found"),
        "wrong-shape": (["--input", f"camera={small}"], "holds uint8[50, 100, 3], the ensemble input 'camera' is "
                                                         "uint8[640, 640, 3]"),
        "unknown-input": (["--input", f"webcam={small}"], "unknown input 'webcam'; inputs: camera.camera"),
        "no-input": ([], "missing --input for camera.camera (uint8[640, 640, 3])"),
        "bad-syntax": (["--input", "camera"], "expected SOURCE=FILE"),
    }[case]
    proc = _run(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ocr_through_the_site_runtimes_reads_the_same_text(tmp_path):
    """The OCR ensemble split over phone / mec / cloud (all compiled for this host), served by
    three runtimes on loopback and called with tritonclient: the same text as sample.txt and
    the same boxes and scores as ONNX Runtime in one process."""
    import numpy as np
    import tritonclient.grpc as grpcclient
    from PIL import Image

    from tests.runtime import fanapp

    pins = {"det": "mec", "find_text": "mec", "cls": "cloud", "rotate": "cloud", "rec": "cloud", "decode": "cloud"}
    sets = [f"sites.{s}.target=host" for s in ("phone", "mec", "cloud")]
    sets += [f"models.{m}.sites=[{s}]" for m, s in pins.items()]
    sets += ["constraints.latency_ms=600000", "sites.mec.max_replicas=64", "sites.cloud.max_replicas=64"]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "planner", "solve", str(OCR / "app.yaml"), "-o", str(out),
                           "--time-limit", "10", *[a for s in sets for a in ("--set", s)]],
                          capture_output=True, text=True, cwd=ROOT, timeout=880, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sites = ("phone", "mec", "cloud")
    running = fanapp.start_sites({s: out / "sites" / s for s in sites}, tmp_path / "run")
    try:
        client = grpcclient.InferenceServerClient(running.addr["phone"])
        image = np.asarray(Image.open(OCR / "sample.png").convert("RGB"))
        inp = grpcclient.InferInput("camera", list(image.shape), "UINT8")
        inp.set_data_from_numpy(image)
        result = client.infer("ocr", [inp], client_timeout=300)
        served = {k: result.as_numpy(k) for k in ("text", "score", "boxes")}
    finally:
        running.stop()
    expected = [line for line in (OCR / "sample.txt").read_text().splitlines() if line.strip()]
    lines = [" ".join(t.decode().split()) for t in served["text"] if t.strip()]
    assert lines == expected
    ref = _run("--input", f"camera={OCR / 'sample.png'}", "--json")
    assert ref.returncode == 0, ref.stderr
    ref = json.loads(ref.stdout)
    np.testing.assert_allclose(served["boxes"], np.array(ref["boxes"], dtype=np.float32), atol=1e-4)
    np.testing.assert_allclose(served["score"], np.array(ref["score"], dtype=np.float32), atol=1e-4)
