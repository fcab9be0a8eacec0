"""ONNX in: load and check a model, pin its input shapes, fold its shape subgraphs into
constants, read its tensor signature, and import it into a TVM Relax IRModule.

Why fold: exported models (PaddleOCR's cls and rec, for instance) compute `Reshape` targets
at run time from `Shape` of an activation. TVM's Relax frontend needs such shapes as
constants ("Reshape requires the input new shape to be Shape"). With every input shape
static, each `Shape` is a known constant and every node whose inputs are all constant can
be evaluated once (with ONNX's reference evaluator); repeat until nothing changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

from planner.profiling.errors import ProfilingInputError, UnsupportedOperator
from planner.profiling.table import NodeSignature
from planner.app.tensors import TensorSpec

if TYPE_CHECKING:
    import tvm

# ONNX element type -> the planner's dtype name
ONNX_DTYPES = {
    TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64",
    TensorProto.INT8: "int8", TensorProto.INT16: "int16", TensorProto.INT32: "int32",
    TensorProto.INT64: "int64", TensorProto.UINT8: "uint8", TensorProto.BOOL: "bool",
    TensorProto.STRING: "bytes",
}
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}
_MAX_FOLD_ELEMENTS = 1 << 24  # never materialize a folded constant larger than this


def load_checked(path: Path) -> onnx.ModelProto:
    """The model at `path`, passed by the ONNX checker; ProfilingInputError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ProfilingInputError("ONNX file not found", file=str(path))
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, OSError, external-data errors
        raise ProfilingInputError(f"not a readable ONNX model ({type(exc).__name__}: {_first_line(exc)})",
                                  file=str(path)) from None
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        raise ProfilingInputError(f"fails the ONNX checker: {_first_line(exc)}", file=str(path)) from None
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The real inputs (old exporters also list every initializer as an input)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _set_shape(vi: onnx.ValueInfoProto, shape: list[int]) -> None:
    tt = vi.type.tensor_type
    tt.shape.Clear()
    for d in shape:
        tt.shape.dim.add().dim_value = int(d)


def _static_shape(vi: onnx.ValueInfoProto) -> list[int] | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    return None if any(d is None or d < 0 for d in dims) else dims


def pin_inputs(model: onnx.ModelProto, input_shapes: dict[str, list[int]]) -> onnx.ModelProto:
    """A copy with every input's shape static: from `input_shapes`, or already static."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    unknown = sorted(set(input_shapes) - set(names))
    if unknown:
        raise ProfilingInputError(f"declared input{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                  f"not in the model (its inputs: {', '.join(names)})")
    for vi in inputs:
        if vi.name in input_shapes:
            old = vi.type.tensor_type.shape.dim
            new = list(input_shapes[vi.name])
            if len(old) and len(old) != len(new):
                raise ProfilingInputError(f"input {vi.name} has rank {len(old)} in the model, declared {new}")
            for d, n in zip(old, new):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != n:
                    raise ProfilingInputError(f"input {vi.name} has dimension {d.dim_value} in the model where "
                                              f"{n} is declared ({new})")
            _set_shape(vi, new)
        elif _static_shape(vi) is None:
            raise ProfilingInputError(f"input {vi.name} has a dynamic shape: declare it under `inputs:`")
    # drop stale intermediate/output shapes: inference fills them from the pinned inputs
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    return model


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        raise ProfilingInputError(f"ONNX shape inference failed with the declared shapes: {_first_line(exc)}") \
            from None


def _evaluate(node: onnx.NodeProto, consts: dict[str, np.ndarray], opset: list) -> list[np.ndarray] | None:
    from onnx.reference import ReferenceEvaluator

    try:
        g = helper.make_graph(
            [node], "fold",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(consts[n].dtype), consts[n].shape)
             for n in node.input if n],
            [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in node.output if n],
        )
        m = helper.make_model(g, opset_imports=opset)
        outs = ReferenceEvaluator(m).run(None, {n: consts[n] for n in node.input if n})
    except Exception:
        return None  # leave it to the importer
    return [np.asarray(o) for o in outs]


def fold_static(model: onnx.ModelProto, input_shapes: dict[str, list[int]]) -> onnx.ModelProto:
    """Pin the input shapes and fold every node computable from constants and static shapes."""
    model = _infer(pin_inputs(model, input_shapes))
    opset = list(model.opset_import)
    for _ in range(20):
        shapes = {vi.name: _static_shape(vi) for vi in
                  [*model.graph.input, *model.graph.value_info, *model.graph.output]}
        consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        keep, folded = [], {}
        for node in model.graph.node:
            values = None
            if node.domain not in ("", "ai.onnx") or node.op_type in _NO_FOLD or \
                    any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                pass
            elif node.op_type == "Constant":
                values = _evaluate(node, consts, opset)
            elif node.op_type in ("Shape", "Size") and shapes.get(node.input[0]) is not None:
                shape = np.array(shapes[node.input[0]], np.int64)
                if node.op_type == "Size":
                    values = [np.array(np.prod(shape), np.int64)]
                else:
                    attrs = {a.name: a.i for a in node.attribute}
                    values = [shape[attrs.get("start", 0): attrs.get("end", len(shape))]]
            elif node.input and all(n == "" or n in consts for n in node.input):
                values = _evaluate(node, consts, opset)
            if values is not None and all(v.size <= _MAX_FOLD_ELEMENTS for v in values):
                for name, v in zip(node.output, values):
                    consts[name] = v
                    folded[name] = v
            else:
                keep.append(node)
        if not folded:
            break
        graph_outputs = {o.name for o in model.graph.output}
        for name, v in folded.items():
            if name in graph_outputs:  # keep an output that became constant as an Identity of it
                const_name = f"{name}__folded"
                model.graph.initializer.append(numpy_helper.from_array(v, const_name))
                keep.append(helper.make_node("Identity", [const_name], [name]))
            else:
                model.graph.initializer.append(numpy_helper.from_array(v, name))
        del model.graph.node[:]
        model.graph.node.extend(keep)
        _drop_unused_initializers(model)
        del model.graph.value_info[:]
        model = _infer(model)
    return model


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {n for node in model.graph.node for n in node.input}
    used |= {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    real = [i for i in model.graph.input if i.name in used or i.name not in {x.name for x in keep}]
    del model.graph.input[:]
    model.graph.input.extend(real)


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    elem = vi.type.tensor_type.elem_type
    if elem not in ONNX_DTYPES:
        raise ProfilingInputError(f"tensor {vi.name} has ONNX element type "
                                  f"{TensorProto.DataType.Name(elem)}, which the planner cannot move between sites")
    shape = _static_shape(vi)
    if shape is None:
        raise ProfilingInputError(f"output {vi.name} has no static shape even with the declared input shapes")
    return TensorSpec(name=vi.name, dtype=ONNX_DTYPES[elem], shape=tuple(shape))


def io_signature(model: onnx.ModelProto) -> NodeSignature:
    """Inputs and outputs of a folded model (static shapes) as TensorSpecs."""
    return NodeSignature(inputs=[_spec(vi) for vi in graph_inputs(model)],
                         outputs=[_spec(vi) for vi in model.graph.output])


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    return sorted(op for op in ops if op not in known)


def import_folded(model: onnx.ModelProto, file: str | None = None) -> "tvm.IRModule":
    """Import an already folded model (static input shapes)."""
    from tvm.relax.frontend.onnx import from_onnx

    missing = unsupported_ops(model)
    if missing:
        raise UnsupportedOperator(missing, file=file)
    shapes = {vi.name: _static_shape(vi) for vi in graph_inputs(model)}
    try:
        return from_onnx(model, shape_dict=shapes, keep_params_in_input=False)
    except Exception as exc:
        name = type(exc).__name__
        if name == "OpNotImplemented":
            raise UnsupportedOperator([_first_line(exc)], file=file) from None
        raise ProfilingInputError(f"TVM's ONNX importer failed: {name}: {_first_line(exc)}", file=file) from None


def import_onnx(path: Path, input_shapes: dict[str, list[int]]) -> "tvm.IRModule":
    """Load, check, fold and import: the Relax IRModule of the model at `path`."""
    model = load_checked(path)
    try:
        folded = fold_static(model, input_shapes)
    except ProfilingInputError as exc:
        exc.file = exc.file or str(path)
        raise
    return import_folded(folded, file=str(path))
