"""`planner run` on the OCR example reads the bundled image: the text is sample.txt, with the
models compiled by TVM for this host and with ONNX Runtime (the reference) alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OCR = ROOT / "examples" / "ocr"
MODELS = ["ch_PP-OCRv4_det_infer.onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx",
          "ppocr_keys_v1.txt"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.skipif(not all((OCR / "models" / m).is_file() for m in MODELS),
                                 reason="OCR models not fetched (make models)")]


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
