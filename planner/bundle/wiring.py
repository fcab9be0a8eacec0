"""The ensemble as the runtime sees it: every flow with the tensor it carries, named at both
ends. Shared by every site's bundle (each site needs the whole graph to know where its
outputs go) and by `planner run`.

Naming (documented in the README): a source's tensor is the flow's `output:` or else the
source's name; a sink's tensor is the flow's `input:` or else the producer's tensor name.
"""

from __future__ import annotations

from planner.app.tensors import TensorSpec
from planner.model.checked_app import CheckedApp
from planner.profiling.flows import flow_tensor
from planner.profiling.table import ProfileTable
from planner_runtime.bundle_format import Endpoint, FlowEdge, NodeSpec, SinkSpec, SourceSpec, Tensor


def _tensor(spec: TensorSpec, name: str | None = None) -> Tensor:
    return Tensor(name=name or spec.name, dtype=spec.dtype, shape=list(spec.shape))


def given_only(checked: CheckedApp) -> list[str]:
    """Models known only by given profiles: nothing to compile or run."""
    return [m for m, node in checked.app.models.items() if node.kind == "given"]


def wire(checked: CheckedApp, profiles: ProfileTable, placement: dict[str, str]):
    """(sources, sinks, nodes, flows) of bundle.yaml; nodes without artifacts yet."""
    app = checked.app
    given = given_only(checked)
    if given:
        raise checked.error(f"'{given[0]}' has only given profiles (no `onnx:` or `python:`): there is nothing to "
                            "put in a bundle or run", ("models", given[0]))
    nodes: dict[str, NodeSpec] = {}
    for name, node in app.models.items():
        sig = profiles.signatures[name]
        nodes[name] = NodeSpec(site=placement[name], kind="tvm" if node.onnx else "python",
                               inputs=[_tensor(t) for t in sig.inputs], outputs=[_tensor(t) for t in sig.outputs],
                               instances=node.instances)
    sources = {s: SourceSpec(site=src.site, tensors=[]) for s, src in app.sources.items()}
    sinks = {s: SinkSpec(site=snk.site, tensors=[]) for s, snk in app.sinks.items()}
    flows: list[FlowEdge] = []
    for i, flow in enumerate(app.flows):
        spec = flow_tensor(checked, profiles, i)
        if flow.from_ in app.sources:
            src_name = flow.output or flow.from_
            src = Endpoint(kind="source", name=flow.from_, tensor=src_name)
            known = {t.name: t for t in sources[flow.from_].tensors}
            tensor = _tensor(spec, src_name)
            if src_name in known and known[src_name] != tensor:
                raise checked.error(f"source '{flow.from_}' sends '{src_name}' with two shapes or dtypes; name its "
                                    "tensors apart with `output:`", ("flows", i))
            if src_name not in known:
                sources[flow.from_].tensors.append(tensor)
        else:
            src = Endpoint(kind="node", name=flow.from_, tensor=spec.name)
            tensor = _tensor(spec)
        if flow.to in app.sinks:
            dst_name = flow.input or spec.name
            if any(t.name == dst_name for t in sinks[flow.to].tensors):
                raise checked.error(f"sink '{flow.to}' receives two tensors named '{dst_name}': "
                                    "name them with `input:`",
                                    ("flows", i))
            sinks[flow.to].tensors.append(_tensor(spec, dst_name))
            dst = Endpoint(kind="sink", name=flow.to, tensor=dst_name)
        else:
            inputs = nodes[flow.to].inputs
            name = flow.input or (inputs[0].name if len(inputs) == 1 else None)
            if name is None:  # planner.app.checks reports this earlier for declared inputs
                raise checked.error(f"'{flow.to}' has several inputs: name one with `input:`", ("flows", i))
            dst = Endpoint(kind="node", name=flow.to, tensor=name)
        flows.append(FlowEdge(src=src, dst=dst, tensor=tensor))
    return sources, sinks, nodes, flows
