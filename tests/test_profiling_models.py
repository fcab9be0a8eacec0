"""Small ONNX models built in code for the profiling tests (never downloaded), and the tests of
importing them: loading, checking, shape folding, signatures, unsupported operators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from planner.profiling.errors import ProfilingInputError, UnsupportedOperator
from planner.profiling.onnx_import import fold_static, import_onnx, io_signature, load_checked


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


def test_load_checked_errors(tmp_path):
    with pytest.raises(ProfilingInputError, match="not found"):
        load_checked(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    with pytest.raises(ProfilingInputError, match="not a readable ONNX model|ONNX checker"):
        load_checked(tmp_path / "junk.onnx")
    with pytest.raises(ProfilingInputError, match="ONNX checker"):
        load_checked(checker_failure(tmp_path / "bad.onnx"))


def test_fold_static_makes_runtime_shapes_constant(tmp_path):
    model = load_checked(dynamic_reshape(tmp_path / "m.onnx"))
    folded = fold_static(model, {"x": [3, 2, 4, 5]})
    assert "Shape" not in {n.op_type for n in folded.graph.node}
    sig = io_signature(folded)
    assert [(t.name, t.shape, t.dtype) for t in sig.outputs] == [("y", (3, 40), "float32")]
    import_onnx(tmp_path / "m.onnx", {"x": [3, 2, 4, 5]})  # imports once folded


def test_declared_shapes_must_match_the_model(tmp_path):
    model = load_checked(mlp(tmp_path / "m.onnx"))
    with pytest.raises(ProfilingInputError, match="not in the model"):
        fold_static(model, {"nope": [1, 16]})
    with pytest.raises(ProfilingInputError, match="dimension 16"):
        fold_static(model, {"x": [1, 17]})
    with pytest.raises(ProfilingInputError, match="dynamic shape"):
        fold_static(model, {})


def test_unsupported_operator_is_named(tmp_path):
    with pytest.raises(UnsupportedOperator, match="Det") as info:
        import_onnx(with_det(tmp_path / "d.onnx"), {})
    assert info.value.ops == ["Det"]
    assert info.value.exit_code == 2
