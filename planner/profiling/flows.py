"""The tensor each flow carries, from the nodes' signatures: the one that a flow's `output:`
or `input:` names, its size in bytes, and the check that both ends of a flow agree on it."""

from __future__ import annotations

from planner.app.tensors import TensorSpec
from planner.model.checked_app import CheckedApp
from planner.profiling.table import NodeSignature, ProfileTable


def _named(tensors: list[TensorSpec], name: str | None) -> TensorSpec | None:
    """The tensor `name` names, or the only one when no name is given; None otherwise."""
    if name is None:
        return tensors[0] if len(tensors) == 1 else None
    return next((t for t in tensors if t.name == name), None)


def _pick(tensors: list[TensorSpec], name: str | None, what: str, checked: CheckedApp, key) -> TensorSpec:
    found = _named(tensors, name)
    if found is not None:
        return found
    if name is None:
        raise checked.error(f"{what} has several tensors ({', '.join(t.name for t in tensors)}): "
                            f"name one with `{key[-1]}:`", key[:-1])
    raise checked.error(f"{what} has no tensor '{name}' (tensors: {', '.join(t.name for t in tensors)})", key)


def flow_tensor(checked: CheckedApp, profiles: ProfileTable, i: int) -> TensorSpec | None:
    """The tensor a flow carries, when the producer's or consumer's signature is known."""
    app, flow = checked.app, checked.app.flows[i]
    if flow.from_ in app.models and flow.from_ in profiles.signatures:
        outs = profiles.signatures[flow.from_].outputs
        return _pick(outs, flow.output, f"'{flow.from_}' output", checked, ("flows", i, "output"))
    consumer = flow.to
    if consumer in app.models:
        sig = profiles.signatures.get(consumer)
        inputs = sig.inputs if sig else app.models[consumer].input_specs
        if inputs and flow.from_ in app.sources:
            return _pick(inputs, flow.input, f"'{consumer}' input", checked, ("flows", i, "input"))
    return None


def flow_bytes(checked: CheckedApp, profiles: ProfileTable, i: int) -> int:
    """Bytes per request of flow i: its `bytes:`, else the size of the tensor it carries."""
    flow = checked.app.flows[i]
    if flow.bytes is not None:
        return flow.bytes
    tensor = flow_tensor(checked, profiles, i)
    if tensor is None:
        raise checked.error(f"flow {flow.from_} -> {flow.to}: give `bytes:` (nothing to derive the tensor size "
                            f"from: '{flow.from_}' has no ONNX model or python step, and no declared input)",
                            ("flows", i))
    return tensor.nbytes


def check_flows(checked: CheckedApp, table: ProfileTable) -> None:
    """Each flow between two nodes carries one tensor: the producer's output and the consumer's
    input must agree in shape and dtype. A BYTES tensor's size is not its shape: its flow needs
    an explicit `bytes:`."""
    app = checked.app
    for i, flow in enumerate(app.flows):
        out = None
        if flow.from_ in app.models and flow.from_ in table.signatures:
            out = _named(table.signatures[flow.from_].outputs, flow.output)
        inp = None
        if flow.to in app.models:
            sig: NodeSignature | None = table.signatures.get(flow.to)
            inp = _named(sig.inputs if sig else app.models[flow.to].input_specs, flow.input)
        if out is not None and out.is_variable and flow.bytes is None:
            raise checked.error(f"flow {flow.from_} -> {flow.to}: '{flow.from_}' output {out.name} is bytes "
                                "(variable size): give `bytes:` per request", ("flows", i))
        if out is not None and inp is not None and (out.shape != inp.shape or out.dtype != inp.dtype):
            raise checked.error(f"flow {flow.from_} -> {flow.to}: '{flow.from_}' gives {out.describe()} but "
                                f"'{flow.to}' takes {inp.describe()}", ("flows", i))
