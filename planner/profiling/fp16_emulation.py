"""fp16 arithmetic on a CPU: the fp16 file rewritten so that ONNX Runtime's CPU runs it truthfully.

ONNX Runtime's CPU has fp16 kernels for few operators; for the others it silently inserts casts
and computes in fp32, keeping fp32 intermediates (no rounding to fp16, no overflow beyond 65504):
the fp16 file run as it is would understate its error. Here every tensor the fp16 file holds in
fp16 is held in fp32 instead and rounded to fp16 where it is produced (Cast to fp16 and back):
each operator computes in fp32 on fp16 values and stores an fp16 result, as a GPU's fp16 kernels
do (tensor-core GEMMs and convolutions accumulate in fp32; for one add, multiply, divide or square
root, fp32 then rounding to fp16 is the correctly rounded fp16 result). fp16 weights are exact
in fp32. What stays inexact: operators a GPU library runs with fp16 accumulators or in another
order (reductions, fused kernels), which this does not model."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT


def _fp32_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(t).astype("float32"), t.name)


def _fp16_names(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    names = {v.name for v in [*g.input, *g.output, *g.value_info] if v.type.tensor_type.elem_type == F16}
    names |= {t.name for t in g.initializer if t.data_type == F16}
    for n in g.node:
        if n.op_type == "Constant" and any(a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F16
                                           for a in n.attribute):
            names.update(n.output)
    return names


def _retyped(node: onnx.NodeProto) -> onnx.NodeProto:
    """The node with its fp16 attributes (a Cast's `to`, a `dtype`, a tensor value) made fp32."""
    node = onnx.NodeProto.FromString(node.SerializeToString())
    for a in node.attribute:
        if a.name in ("to", "dtype") and a.type == onnx.AttributeProto.INT and a.i == F16:
            a.i = F32
        elif a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F16:
            a.t.CopyFrom(_fp32_tensor(a.t))
    return node


def emulated(fp16_model: bytes) -> bytes:
    """The fp16 file as an fp32 graph that rounds every fp16 tensor to fp16 where it is made."""
    model = onnx.load_model_from_string(fp16_model)
    half = _fp16_names(model)
    g = model.graph
    nodes = []
    for n in g.node:
        n = _retyped(n)
        rounded = [] if n.op_type == "Constant" else [o for o in n.output if o in half]  # constants: fp16-exact
        for o in rounded:
            n.output[list(n.output).index(o)] = f"{o}__fp32"
        nodes.append(n)
        for o in rounded:
            nodes += [helper.make_node("Cast", [f"{o}__fp32"], [f"{o}__fp16"], to=F16),
                      helper.make_node("Cast", [f"{o}__fp16"], [o], to=F32)]
    for v in [*g.input, *g.output]:
        if v.type.tensor_type.elem_type == F16:
            v.type.tensor_type.elem_type = F32
    inits = [_fp32_tensor(t) if t.data_type == F16 else t for t in g.initializer]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]  # fp16 types throughout: ONNX Runtime infers them again
    del g.node[:]
    g.node.extend(nodes)
    return model.SerializeToString()
