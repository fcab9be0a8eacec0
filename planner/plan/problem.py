"""From a checked app and its profiles to the solver's integer Instance: the README's latency
and cost model, in the solver's units (planner.solver.instance), with each build's queue waits
tabulated per replica count (planner.model.queueing)."""

from __future__ import annotations

import functools
import math

from planner.model.checked_app import CheckedApp
from planner.model.queueing import Queue, least_servers, wait_table_ms
from planner.plan.cores import run_threads, site_cores
from planner.plan.limits import check_solver_limits
from planner.profiling.flows import flow_bytes
from planner.profiling.table import NodeProfile, ProfileTable
from planner.solver.instance import (
    REPLICA_CAPACITY,
    SITE_LEVEL_UNIT,
    SITE_LEVELS,
    SITE_WAIT_SCALE,
    FlowData,
    Instance,
    Option,
    SiteData,
    Transfer,
)


def us(ms: float) -> int:
    return round(ms * 1000)


def micro(x: float) -> int:
    return round(x * 1e6)


# a wait table ends where the wait is 0: about the load plus a few times its square root in
# servers (at most a few thousand entries at the largest loads the limits allow); this only
# bounds a runaway
TABLE_REPLICAS_MAX = 10**7


def undominated(options: list[Option]) -> list[Option]:
    """The builds no other build beats in both latency and memory (the same numbers: the first),
    fastest first: a dominated build is never in an optimal plan (its wait and load are no
    smaller either), so the solver need not see it."""
    kept: list[Option] = []
    for o in sorted(options, key=lambda o: (o.latency_us, o.memory_kb)):
        if not any(k.memory_kb <= o.memory_kb for k in kept):
            kept.append(o)
    return kept


def queue_waits(rate_rps: float, latency_us: int, instances: int, percentile: float,
                max_utilization: float | None) -> tuple[int, tuple[int, ...]]:
    """(fewest replicas the queue keeps up with, its wait in us with that many, one more, ...)."""
    least = -(-least_servers(rate_rps, latency_us / 1000, max_utilization) // instances)
    # up to the first replica count with no wait, whatever max_replicas says: a plan that needs
    # more replicas than allowed is still evaluated (and its latency shown) by these waits
    table = wait_table_ms(rate_rps, latency_us / 1000, instances, TABLE_REPLICAS_MAX, percentile,
                          max_utilization=max_utilization)
    if not table:  # more replicas than anything may run (the solver's limits refuse the app)
        return least, ()
    waits: list[int] = []
    for r in range(least, max(table) + 1):
        # never rising with more replicas (the solver relies on it), and cut after the last wait
        waits.append(min([us(table[r]), *waits[-1:]]))
    while waits and waits[-1] == 0:
        waits.pop()
    return least, tuple(waits)


def replica_load(work: int, instances: int, profiled_threads: int | None, build: str, cores: int | None) -> int:
    """The share of a replica a model's `work` (rate_mrps x latency_us) takes: its servers' share
    (`instances` runs at once) or its cores' (each run takes its threads of the replica's
    `cores`), whichever is larger. Two instances of a build that takes every core do not double
    what a replica serves: the cores are the limit, as the plan's simulation counts them. A site
    whose cores are unknown (no target) counts servers only."""
    servers = -(-work // instances)
    if cores is None:
        return servers
    return max(servers, -(-work * run_threads(build, profiled_threads, cores) // cores))


SITE_TABLE_ROWS = 32  # replicas; more run with the last row's waits (a little longer than theirs)


@functools.cache
def site_wait_table(rows: int, percentile: float) -> tuple[tuple[int, ...], ...]:
    """SiteData.waits: for 1 .. `rows` replicas (servers), at each of SITE_LEVELS, the M/D/c wait
    at the percentile per unit of service time (fixed service: the wait scales with it), x
    SITE_WAIT_SCALE, rounded up; never falling with the level nor rising with the replicas."""
    table: list[tuple[int, ...]] = []
    for k in range(1, rows + 1):
        row: list[int] = []
        for level in SITE_LEVELS:
            rho = level / SITE_LEVEL_UNIT
            wait = Queue(rate_rps=rho * k * 1000, service_ms=1.0, servers=k).wait_ms(percentile)
            value = math.ceil(wait * SITE_WAIT_SCALE)
            value = max([value, *row[-1:]])
            row.append(min(value, table[-1][len(row)]) if table else value)
        table.append(tuple(row))
    return tuple(table)


def build_instance(checked: CheckedApp, profiles: ProfileTable) -> Instance:
    app, sites, graph, network = checked.app, checked.sites, checked.graph, checked.network
    rate_mrps = {m: max(1, round(r * 1000)) for m, r in graph.rate_rps.items()}
    limits = app.constraints

    def option(m: str, s: str, latency_ms: float, memory_mb: float, build: str = "given/fp32",
               threads: int | None = None) -> Option:
        lat = max(1, us(latency_ms))
        instances = app.models[m].instances
        least, waits = queue_waits(rate_mrps[m] / 1000, lat, instances, limits.percentile, limits.max_utilization)
        cores = site_cores(checked, s)
        core_us = 0 if cores is None else -(-lat * run_threads(build, threads, cores) // cores)
        return Option(latency_us=lat, memory_kb=round(memory_mb * 1000), build=build, min_replicas=least,
                      waits_us=waits, load=replica_load(rate_mrps[m] * lat, instances, threads, build, cores),
                      core_us=core_us, core_load=rate_mrps[m] * core_us)

    profile_of: dict[tuple[str, str], list[NodeProfile]] = {}
    for e in profiles.entries:  # indexed once (ProfileTable.get scans)
        profile_of.setdefault((e.node, e.site), []).append(e)
    options: dict[str, dict[str, Option]] = {}
    more_builds: dict[str, dict[str, list[Option]]] = {}
    unpinned: dict[str, dict[str, Option]] = {}
    for m in graph.topological_models:
        options[m] = {}
        too_big = []
        for s in app.candidate_sites(m):
            builds = profile_of.get((m, s))
            if not builds:
                continue  # excluded by the profiler (it said why)
            fits = [p for p in builds if p.memory_mb <= sites[s].memory_mb]
            if not fits:
                too_big.append(f"{s} ({sites[s].memory_mb:g} MB)")
                continue
            kept = undominated([option(m, s, p.latency_ms, p.memory_mb, p.build, p.threads) for p in fits])
            options[m][s] = kept[0]
            if kept[1:]:
                more_builds.setdefault(m, {})[s] = kept[1:]
        # given numbers on sites that `sites:` excludes: what relaxing the pin would allow
        extra = {s: option(m, s, e.latency_ms, e.memory_mb) for s, e in app.models[m].profile.items()
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
                        max_replicas=s.max_replicas,
                        waits=() if site_cores(checked, s.name) is None else site_wait_table(
                            SITE_TABLE_ROWS, limits.percentile))
               for s in sites.values()],
        models=graph.topological_models,
        options=options,
        more_builds=more_builds,
        unpinned=unpinned,
        fixed=fixed,
        sources=list(app.sources),
        sinks=list(app.sinks),
        flows=flows,
        slo_us=us(app.constraints.latency_ms) if app.constraints.latency_ms is not None else None,
        cost_cap_uph=micro(app.constraints.cost_per_hour) if app.constraints.cost_per_hour is not None else None,
        percentile=limits.percentile,
        replica_capacity=REPLICA_CAPACITY if limits.max_utilization is None
        else max(1, int(REPLICA_CAPACITY * limits.max_utilization)),
    )
    check_solver_limits(checked, inst)
    return inst
