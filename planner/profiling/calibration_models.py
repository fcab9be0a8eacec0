"""The fixed set of small models `planner calibrate` measures, built in code (onnx.helper).

Chosen so that both ends of the roofline are covered: dense convolutions and matrix products
(compute-bound), a depthwise block (little work per byte), an elementwise chain and a
normalization block (memory-bound). Each runs in milliseconds on a small CPU, so a calibration
takes seconds per model, not minutes. The set is part of a calibration's meaning: change it
and the calibrations measured with the old set no longer compare (bump SET_VERSION)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SET_VERSION = 1
OPSET = 13


@dataclass(frozen=True)
class CalibrationModel:
    name: str
    what: str  # what it exercises, written into the calibration file
    build: Callable[[], onnx.ModelProto]
    shapes: dict[str, list[int]]


def _model(name: str, nodes, x_shape: list[int], y_shape: list[int], weights: dict[str, np.ndarray]):
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def _w(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape) * (1.0 / np.sqrt(np.prod(shape[1:])))


def conv_stack() -> onnx.ModelProto:
    """Three 3x3 convolutions with ReLU, 16 -> 32 -> 32 -> 32 channels on 48x48."""
    rng = np.random.default_rng(1)
    weights, nodes, prev, cin = {}, [], "x", 16
    for i in range(3):
        weights[f"w{i}"], weights[f"b{i}"] = _w(rng, 32, cin, 3, 3), rng.standard_normal(32) * 0.1
        nodes += [helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], ["y" if i == 2 else f"r{i}"])]
        prev, cin = f"r{i}", 32
    return _model("conv_stack", nodes, [1, 16, 48, 48], [1, 32, 48, 48], weights)


def matmul_stack() -> onnx.ModelProto:
    """Three dense layers 256 -> 256 with bias and ReLU on a batch of 64 rows."""
    rng = np.random.default_rng(2)
    weights, nodes, prev = {}, [], "x"
    for i in range(3):
        weights[f"w{i}"], weights[f"b{i}"] = _w(rng, 256, 256), rng.standard_normal(256) * 0.1
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], ["y" if i == 2 else f"r{i}"])]
        prev = f"r{i}"
    return _model("matmul_stack", nodes, [64, 256], [64, 256], weights)


def depthwise_block() -> onnx.ModelProto:
    """A MobileNet block: 3x3 depthwise convolution, ReLU, 1x1 pointwise convolution, ReLU,
    64 channels on 40x40."""
    rng = np.random.default_rng(3)
    weights = {"dw": _w(rng, 64, 1, 3, 3), "pw": _w(rng, 64, 64, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "dw"], ["d"], pads=[1, 1, 1, 1], group=64),
             helper.make_node("Relu", ["d"], ["dr"]),
             helper.make_node("Conv", ["dr", "pw"], ["p"]),
             helper.make_node("Relu", ["p"], ["y"])]
    return _model("depthwise_block", nodes, [1, 64, 40, 40], [1, 64, 40, 40], weights)


def elementwise_chain() -> onnx.ModelProto:
    """Swish, scale and shift, tanh and a residual add over 1x32x96x96 (little compute per byte)."""
    weights = {"scale": np.full([1, 32, 1, 1], 0.5), "shift": np.full([1, 32, 1, 1], 0.1)}
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["sw"]),
             helper.make_node("Mul", ["sw", "scale"], ["sc"]), helper.make_node("Add", ["sc", "shift"], ["sh"]),
             helper.make_node("Tanh", ["sh"], ["t"]), helper.make_node("Add", ["t", "x"], ["y"])]
    return _model("elementwise_chain", nodes, [1, 32, 96, 96], [1, 32, 96, 96], weights)


def norm_block() -> onnx.ModelProto:
    """Softmax over 256 rows of 1024, then a layer normalization written out (ReduceMean, Sub,
    Mul, Sqrt, Div): reductions and broadcasts, memory-bound."""
    weights = {"eps": np.array([1e-5])}
    nodes = [helper.make_node("Softmax", ["x"], ["p"], axis=-1),
             helper.make_node("ReduceMean", ["p"], ["mu"], axes=[-1]),
             helper.make_node("Sub", ["p", "mu"], ["d"]),
             helper.make_node("Mul", ["d", "d"], ["d2"]),
             helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["y"])]
    return _model("norm_block", nodes, [256, 1024], [256, 1024], weights)


MODELS: tuple[CalibrationModel, ...] = (
    CalibrationModel("conv_stack", "dense 3x3 convolutions (compute-bound)", conv_stack, {"x": [1, 16, 48, 48]}),
    CalibrationModel("matmul_stack", "dense matrix products (compute-bound)", matmul_stack, {"x": [64, 256]}),
    CalibrationModel("depthwise_block", "depthwise + pointwise convolution (mixed)", depthwise_block,
                     {"x": [1, 64, 40, 40]}),
    CalibrationModel("elementwise_chain", "elementwise chain (memory-bound)", elementwise_chain,
                     {"x": [1, 32, 96, 96]}),
    CalibrationModel("norm_block", "softmax and layer normalization (memory-bound reductions)", norm_block,
                     {"x": [256, 1024]}),
)
