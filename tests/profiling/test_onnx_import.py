"""Importing ONNX models (built in code: tests/profiling/onnx_models.py): loading, checking,
shape folding, signatures, unsupported operators."""

from __future__ import annotations

import pytest

from planner.profiling.errors import ProfilingInputError, UnsupportedOperator
from planner.profiling.onnx_import import fold_static, import_onnx, io_signature, load_checked
from tests.profiling.onnx_models import checker_failure, dynamic_reshape, mlp, with_det


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
