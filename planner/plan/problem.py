"""From a checked app and its profiles to the solver's integer Instance: the README's latency
and cost model, in the solver's units (planner.solver.instance)."""

from __future__ import annotations

from planner.model.checked_app import CheckedApp
from planner.plan.limits import check_solver_limits
from planner.profiling.flows import flow_bytes
from planner.profiling.table import NodeProfile, ProfileTable
from planner.solver.instance import FlowData, Instance, Option, SiteData, Transfer


def us(ms: float) -> int:
    return round(ms * 1000)


def micro(x: float) -> int:
    return round(x * 1e6)


def build_instance(checked: CheckedApp, profiles: ProfileTable) -> Instance:
    app, sites, graph, network = checked.app, checked.sites, checked.graph, checked.network
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
        for s in app.candidate_sites(m):
            p = profile_of.get((m, s))
            if p is None:
                continue  # excluded by the profiler (it said why)
            if p.memory_mb > sites[s].memory_mb:
                too_big.append(f"{s} ({sites[s].memory_mb:g} MB)")
                continue
            options[m][s] = option(m, p.latency_ms, p.memory_mb)
        # given numbers on sites that `sites:` excludes: what relaxing the pin would allow
        extra = {s: option(m, e.latency_ms, e.memory_mb) for s, e in app.models[m].profile.items()
                 if s not in options[m] and s not in app.candidate_sites(m) and e.memory_mb <= sites[s].memory_mb}
        if extra:
            unpinned[m] = extra
        if not options[m]:
            why = f": it needs more memory than {', '.join(too_big)}" if too_big else ""
            raise checked.error(f"no site may host '{m}'{why}", ("models", m))

    fixed = {n: s.site for n, s in app.sources.items()} | {n: s.site for n, s in app.sinks.items()}

    def allowed(node: str) -> list[str]:
        return [fixed[node]] if node in fixed else [*options[node], *unpinned.get(node, {})]

    flows = []
    for i, flow in enumerate(app.flows):
        nbytes = flow_bytes(checked, profiles, i)
        rate = graph.producer_rate(flow.from_)
        transfers = []
        for s in allowed(flow.from_):
            for t in allowed(flow.to):
                route = network.route(s, t, nbytes)  # None within one site: no transfer
                if route is None:
                    continue
                egress = rate * nbytes * 3600 / 1e9 * route.cost_per_gb
                transfers.append(Transfer(src_site=s, dst_site=t, latency_us=us(route.latency_ms),
                                          egress_uph=micro(egress)))
        if not transfers and not set(allowed(flow.from_)) & set(allowed(flow.to)):
            raise checked.error(f"flow {flow.from_} -> {flow.to}: no route joins the sites where its ends may run",
                                ("flows", i))
        flows.append(FlowData(index=i, src=flow.from_, dst=flow.to, nbytes=nbytes, transfers=transfers))

    inst = Instance(
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
    check_solver_limits(checked, inst)
    return inst
