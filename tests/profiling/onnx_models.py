"""Small ONNX models built in code for the profiling tests (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp(path: Path, n_in: int = 16, n_hidden: int = 32, n_out: int = 8, seed: int = 0) -> Path:
    """x[N, n_in] -> MatMul -> Add -> Relu -> MatMul -> y[N, n_out] (N dynamic)."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((n_in, n_hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal((n_hidden,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((n_hidden, n_out)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])], [w1, b1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def dynamic_reshape(path: Path) -> Path:
    """x[N, C, H, W] -> Reshape to [N, C*H*W] with the shape computed at run time from Shape(x)
    (what PaddleOCR's cls and rec do): TVM needs it folded first."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Sigmoid", ["flat"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    graph = helper.make_graph(nodes, "dynreshape",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "K"])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def with_det(path: Path) -> Path:
    """Det (matrix determinant): valid ONNX, but TVM's Relax frontend has no converter for it."""
    graph = helper.make_graph([helper.make_node("Det", ["x"], ["y"])], "det",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def checker_failure(path: Path) -> Path:
    """A node reading a tensor nothing produces: the ONNX checker rejects it."""
    graph = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"])], "bad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def strided_conv(path: Path, channels: int = 16, size: int = 64, seed: int = 0) -> Path:
    """x[1, C, S, S] -> 3x3 Conv, stride 2 (C -> 2C) -> Relu: untuned TVM is many times slower
    than ONNX Runtime at it on a CPU (12-14x on the 2-core development machine, even when busy)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array((rng.standard_normal((2 * channels, channels, 3, 3)) * 0.1).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2 * channels, size // 2, size // 2])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def layer_norm_pow(path: Path, width: int = 8) -> Path:
    """x[N, T, width] -> LayerNorm as ONNX exports write it (PP-OCRv4 rec has five): the variance
    the mean of Pow(x - mean, 2), then Pow(variance + eps, 0.5) for its root, and Pow(d, 3) of the
    normalized d added, so the model has integral powers of a negative base and a non-integral one."""
    const = {"two": 2.0, "three": 3.0, "half": 0.5, "eps": 1e-5}
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in const.items()]
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1]), helper.make_node("Sub", ["x", "mean"], ["c"]),
             helper.make_node("Pow", ["c", "two"], ["sq"]), helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Pow", ["ve", "half"], ["std"]),
             helper.make_node("Div", ["c", "std"], ["d"]), helper.make_node("Pow", ["d", "three"], ["d3"]),
             helper.make_node("Add", ["d", "d3"], ["y"])]
    graph = helper.make_graph(nodes, "layer_norm_pow",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T", width])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def scaled_twice(path: Path, factor: float = 300.0, width: int = 4) -> Path:
    """x[1, width] -> Mul by factor -> Mul by factor: beyond fp16's 65504 for x > 65504 / factor**2
    (0.73 at 300), well within fp32."""
    c = numpy_helper.from_array(np.array(factor, np.float32), "c")
    nodes = [helper.make_node("Mul", ["x", "c"], ["h"]), helper.make_node("Mul", ["h", "c"], ["y"])]
    graph = helper.make_graph(nodes, "scaled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], [c])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def conv_wide_batch_norm(path: Path, channels: int = 4, size: int = 8, variance: float = 1e6, seed: int = 0) -> Path:
    """x[1, C, S, S] -> 3x3 Conv -> BatchNormalization whose running variance (1e6) is beyond
    fp16's 65504 and whose scale (its square root) brings the output back to O(1), as a trained
    network's batch norm after a near-dead channel can (PP-OCRv4 det's first: up to 9.8e7)."""
    rng = np.random.default_rng(seed)
    c = channels
    inits = [numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array(np.full(c, np.sqrt(variance), np.float32), "scale"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "bias"),
             numpy_helper.from_array(np.zeros(c, np.float32), "mean"),
             numpy_helper.from_array(np.full(c, variance, np.float32), "var")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["h", "scale", "bias", "mean", "var"], ["y"])]
    graph = helper.make_graph(
        nodes, "convbn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, size, size])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path
