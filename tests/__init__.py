"""The tests mirror the package: tests/<stage>/ holds the tests of planner/<stage>/, tests/runtime/
those of the site runtime, tests/examples/ those of the bundled examples. Paths every folder
uses are here; the shared fixtures are in conftest.py."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CAMERA = EXAMPLES / "smart-camera" / "app.yaml"
VOICE = EXAMPLES / "voice-assistant" / "app.yaml"
OCR = EXAMPLES / "ocr"
OCR_APP = OCR / "app.yaml"
OCR_MODELS = OCR / "models"
