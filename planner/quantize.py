"""The reduced-precision files of an ONNX model: int8 (ONNX Runtime's dynamic quantization: int8
weights, activations quantized per call) and fp16 (onnxconverter-common's float16 converter). One
function each, so that the build the profiler checks and the build a bundle ships are made the
same way (same settings, same file for the same model).

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
    """The model could not be quantized or converted (the message says why)."""


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


def float16(path: Path) -> bytes:
    """The model at `path` with its float tensors and arithmetic in fp16; its inputs and outputs
    stay fp32 (casts at the edges), so that it is fed and read like the fp32 model. Constants
    beyond fp16's range are clamped by the converter (a warning per value, silenced here: what
    that does to the outputs is what the profiler's check against the fp32 model measures)."""
    import warnings

    import onnx
    from onnxconverter_common import float16 as converter

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = converter.convert_float_to_float16(onnx.load_model(str(path)), keep_io_types=True)
    except Exception as exc:
        raise QuantizationError(f"fp16 conversion failed ({type(exc).__name__}: {str(exc)[:200]})") from None
    return model.SerializeToString()
