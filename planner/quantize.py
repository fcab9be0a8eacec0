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


def _folded(path: Path):
    """The model after ONNX Runtime's basic graph optimizations, in fp32 (constant folding, and
    BatchNormalization, Add and Mul folded into the convolution before them: plain ONNX operators),
    or as written where ONNX Runtime cannot load it. Why: a BatchNormalization's running variance
    can be far beyond fp16's 65504 (PP-OCRv4 det's first: up to 9.8e7), which the converter clamps,
    and that alone wrecks the output (error 1.0); folded into the weights in fp32 first, its fp16
    file is off by 3e-6."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(d) / "basic.onnx")
        try:
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:  # the converter gets the model as written; the profiler's check judges the result
            return onnx.load_model(str(path))
        return onnx.load_model(options.optimized_model_filepath)


def float16(path: Path) -> bytes:
    """The model at `path` (its batch norms folded first: _folded) with its float tensors and
    arithmetic in fp16; its inputs and outputs stay fp32 (casts at the edges), so that it is fed
    and read like the fp32 model. Constants beyond fp16's range are clamped by the converter (a
    warning per value, silenced here: what that does to the outputs is what the profiler's check
    against the fp32 model measures)."""
    import warnings

    from onnxconverter_common import float16 as converter

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = converter.convert_float_to_float16(_folded(path), keep_io_types=True)
    except Exception as exc:
        raise QuantizationError(f"fp16 conversion failed ({type(exc).__name__}: {str(exc)[:200]})") from None
    return model.SerializeToString()
