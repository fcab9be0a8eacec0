"""From a checked app and its profiles to the solver's integer Instance."""

from __future__ import annotations

from planner.domains import candidate_sites
from planner.graph import EnsembleGraph
from planner.loader import LoadedApp
from planner.network import Network
from planner.profiling.table import NodeProfile, ProfileTable
from planner.sites import ResolvedSite
from planner.solver.instance import FlowData, Instance, Option, SiteData, Transfer
from planner.tensors import TensorSpec


def us(ms: float) -> int:
    return round(ms * 1000)


def micro(x: float) -> int:
    return round(x * 1e6)


def _pick(tensors: list[TensorSpec], name: str | None, what: str, la: LoadedApp, key) -> TensorSpec:
    if name is None:
        if len(tensors) != 1:
            raise la.error(f"{what} has several tensors ({', '.join(t.name for t in tensors)}): "
                           f"name one with `{key[-1]}:`", key[:-1])
        return tensors[0]
    for t in tensors:
        if t.name == name:
            return t
    raise la.error(f"{what} has no tensor '{name}' (tensors: {', '.join(t.name for t in tensors)})", key)


def flow_tensor(la: LoadedApp, profiles: ProfileTable, i: int) -> TensorSpec | None:
    """The tensor a flow carries, when the producer's or consumer's signature is known."""
    app, flow = la.app, la.app.flows[i]
    if flow.from_ in app.models and flow.from_ in profiles.signatures:
        outs = profiles.signatures[flow.from_].outputs
        return _pick(outs, flow.output, f"'{flow.from_}' output", la, ("flows", i, "output"))
    consumer = flow.to
    if consumer in app.models:
        sig = profiles.signatures.get(consumer)
        inputs = sig.inputs if sig else app.models[consumer].input_specs
        if inputs and flow.from_ in app.sources:
            return _pick(inputs, flow.input, f"'{consumer}' input", la, ("flows", i, "input"))
    return None


def flow_bytes(la: LoadedApp, profiles: ProfileTable, i: int) -> int:
    flow = la.app.flows[i]
    if flow.bytes is not None:
        return flow.bytes
    tensor = flow_tensor(la, profiles, i)
    if tensor is None:
        raise la.error(f"flow {flow.from_} -> {flow.to}: give `bytes:` (nothing to derive the tensor size "
                       f"from: '{flow.from_}' has no ONNX model or python step, and no declared input)", ("flows", i))
    return tensor.nbytes


def build_instance(
    la: LoadedApp,
    sites: dict[str, ResolvedSite],
    graph: EnsembleGraph,
    network: Network,
    profiles: ProfileTable,
) -> Instance:
    app = la.app
    rate_mrps = {m: max(1, round(r * 1000)) for m, r in graph.rate_rps.items()}

    def option(m: str, latency_ms: float, memory_mb: float) -> Option:
        lat = max(1, us(latency_ms))
        return Option(latency_us=lat, memory_kb=round(memory_mb * 1000), load=rate_mrps[m] * lat)

    profile_of: dict[tuple[str, str], NodeProfile] = {}
    for e in profiles.entries:  # indexed once (ProfileTable.get scans); the first entry wins, as there
        profile_of.setdefault((e.node, e.site), e)
    options: dict[str, dict[str, Option]] = {}
    unpinned: dict[str, dict[str, Option]] = {}
    for m in graph.topological_models:
        options[m] = {}
        too_big = []
        for s in candidate_sites(app, m):
            p = profile_of.get((m, s))
            if p is None:
                continue  # excluded by the profiler (it said why)
            if p.memory_mb > sites[s].memory_mb:
                too_big.append(f"{s} ({sites[s].memory_mb:g} MB)")
                continue
            options[m][s] = option(m, p.latency_ms, p.memory_mb)
        # given numbers on sites that `sites:` excludes: what relaxing the pin would allow
        extra = {s: option(m, e.latency_ms, e.memory_mb) for s, e in app.models[m].profile.items()
                 if s not in options[m] and s not in candidate_sites(app, m) and e.memory_mb <= sites[s].memory_mb}
        if extra:
            unpinned[m] = extra
        if not options[m]:
            why = f": it needs more memory than {', '.join(too_big)}" if too_big else ""
            raise la.error(f"no site may host '{m}'{why}", ("models", m))

    fixed = {n: s.site for n, s in app.sources.items()} | {n: s.site for n, s in app.sinks.items()}

    def allowed(node: str) -> list[str]:
        return [fixed[node]] if node in fixed else [*options[node], *unpinned.get(node, {})]

    flows = []
    for i, flow in enumerate(app.flows):
        nbytes = flow_bytes(la, profiles, i)
        rate = graph.producer_rate(flow.from_)
        transfers = []
        for s in allowed(flow.from_):
            for t in allowed(flow.to):
                route = network.route(s, t, nbytes) if s != t else None
                if route is None:
                    continue
                egress = rate * nbytes * 3600 / 1e9 * route.cost_per_gb
                transfers.append(Transfer(src_site=s, dst_site=t, latency_us=us(route.latency_ms),
                                          egress_uph=micro(egress)))
        if not transfers and not set(allowed(flow.from_)) & set(allowed(flow.to)):
            raise la.error(f"flow {flow.from_} -> {flow.to}: no route joins the sites where its ends may run",
                           ("flows", i))
        flows.append(FlowData(index=i, src=flow.from_, dst=flow.to, nbytes=nbytes, transfers=transfers))

    return Instance(
        sites=[SiteData(name=s.name, cost_uph=micro(s.cost_per_hour), memory_kb=round(s.memory_mb * 1000),
                        max_replicas=s.max_replicas) for s in sites.values()],
        models=graph.topological_models,
        options=options,
        unpinned=unpinned,
        fixed=fixed,
        sources=list(app.sources),
        sinks=list(app.sinks),
        flows=flows,
        slo_us=us(app.constraints.latency_ms) if app.constraints.latency_ms is not None else None,
        cost_cap_uph=micro(app.constraints.cost_per_hour) if app.constraints.cost_per_hour is not None else None,
    )
