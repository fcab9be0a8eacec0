"""The int8 build of an ONNX model: ONNX Runtime's dynamic quantization (int8 weights,
activations quantized per call). One function, so that the build the profiler measures and the
build a bundle ships are made the same way (same settings, same file for the same model).

Outside the layers on purpose: the profiler (planner.profiling) and the bundles (planner.bundle)
both call it; it imports nothing of the planner."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path


def _not_preprocessing_advice(record: logging.LogRecord) -> bool:
    # quantize_dynamic advises ONNX Runtime's pre-processing on the root logger at every call: noise
    # in the planner's output (the build is verified against the fp32 model instead)
    return not str(record.msg).startswith("Please consider to run pre-processing")


class QuantizationError(Exception):
    """ONNX Runtime could not quantize the model (the message says why)."""


def quantized_int8(path: Path) -> bytes:
    """The model at `path` with dynamically quantized weights (int8; activations quantized per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(_not_preprocessing_advice)
    try:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "int8.onnx"
            try:
                quantize_dynamic(Path(path), out, weight_type=QuantType.QInt8)
            except Exception as exc:
                raise QuantizationError(f"dynamic quantization failed ({type(exc).__name__}: "
                                        f"{str(exc)[:200]})") from None
            return out.read_bytes()
    finally:
        root.removeFilter(_not_preprocessing_advice)
