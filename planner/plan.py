"""plan.json: the placement, what it predicts, why, and the alternatives beside it.

Every number here is recomputed from the final placement by the evaluator (never read back
from the solver's objective), so a reader can check any of them by hand with the README's
latency and cost model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.baselines import Baseline
from planner.evaluate import Evaluation
from planner.graph import EnsembleGraph
from planner.network import Network
from planner.profiling.table import NodeProfile
from planner.sites import ResolvedSite
from planner.solver.cpsat import PhaseResult, Solution, SolverConfig
from planner.solver.explain import Conflict, Explanation
from planner.solver.instance import REPLICA_CAPACITY, Instance

PATHS_LISTED_MAX = 200
PLAN_VERSION = 1


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathTerm(Model):
    kind: Literal["model", "transfer"]
    name: str  # a model, or "producer->consumer" for a transfer
    ms: float
    site: str | None = None  # model terms
    route: list[str] | None = None  # transfer terms crossing sites: the sites it goes through
    bytes: int | None = None


class PathReport(Model):
    source: str
    sink: str
    nodes: list[str]
    latency_ms: float
    slo_ms: float | None
    slack_ms: float | None
    terms: list[PathTerm]


class ModelReport(Model):
    site: str
    tier: str
    target: str
    latency_ms: float
    memory_mb: float
    rate_rps: float
    start_ms: float
    finish_ms: float
    provenance: str
    tuning: str | None = None


class SiteReport(Model):
    tier: str
    target: str
    models: list[str]
    replicas: int
    max_replicas: int
    load_replicas: float = Field(description="sum of rate x latency: the replicas the load fills")
    memory_mb_used: float
    memory_mb: float
    cost_per_hour: float


class EgressTerm(Model):
    flow: str
    link: list[str]
    gb_per_hour: float
    cost_per_hour: float


class CostReport(Model):
    compute_per_hour: float
    egress_per_hour: float
    egress: list[EgressTerm]


class BaselineReport(Model):
    name: str
    description: str
    feasible: bool
    violations: list[str]
    placement: dict[str, str]
    latency_ms: float
    cost_per_hour: float


class PhaseReport(Model):
    objective: str
    status: str
    value: float | None
    bound: float | None
    gap: float | None
    wall_time_s: float
    first_solution_s: float | None


class SolverReport(Model):
    status: str
    objective: str
    time_limit_s: float
    workers: int
    wall_time_s: float
    primary: PhaseReport | None
    secondary: PhaseReport | None


class AppSource(Model):
    """The app.yaml this plan was solved from, so `planner bench` can re-evaluate its placement."""

    file: str  # absolute path
    sha256: str
    overrides: list[str] = Field(default_factory=list)  # the --set options of `planner solve`


class Plan(Model):
    version: int = PLAN_VERSION
    app: str
    status: Literal["OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN"]
    objective: Literal["cost", "latency"]
    placement: dict[str, str]
    latency_ms: float | None
    cost_per_hour: float | None
    constraints: dict[str, float | None]
    solver: SolverReport
    models: dict[str, ModelReport] = Field(default_factory=dict)
    sites: dict[str, SiteReport] = Field(default_factory=dict)
    paths_total: int = 0
    paths: list[PathReport] = Field(default_factory=list)
    cost: CostReport | None = None
    baselines: list[BaselineReport] = Field(default_factory=list)
    profiles: list[NodeProfile] = Field(default_factory=list)
    explanation: list[str] = Field(default_factory=list)
    conflicts: list[Conflict] = Field(default_factory=list, description="infeasible: a minimal conflict set")
    warnings: list[str] = Field(default_factory=list)
    source: AppSource | None = None


def _phase(p: PhaseResult | None, scale: float) -> PhaseReport | None:
    if p is None:
        return None
    gap = None
    if p.value is not None and p.bound is not None:
        gap = abs(p.value - p.bound) / max(1, abs(p.value))
    return PhaseReport(
        objective=p.objective, status=p.status, gap=gap, wall_time_s=round(p.wall_time_s, 4),
        value=None if p.value is None else p.value / scale,
        bound=None if p.bound is None else p.bound / scale,
        first_solution_s=None if p.first_solution_s is None else round(p.first_solution_s, 4),
    )


def solver_report(solution: Solution, config: SolverConfig) -> SolverReport:
    # latency phases count microseconds (-> ms), cost phases micro-dollars (-> $)
    def scale(p: PhaseResult | None) -> float:
        return 1000.0 if p is not None and p.objective == "latency" else 1e6

    return SolverReport(
        status=solution.status, objective=config.objective, time_limit_s=config.time_limit_s,
        workers=config.workers, wall_time_s=round(solution.wall_time_s, 4),
        primary=_phase(solution.primary, scale(solution.primary)),
        secondary=_phase(solution.secondary, scale(solution.secondary)),
    )


def _path_report(inst: Instance, ev: Evaluation, graph: EnsembleGraph, network: Network, nodes: list[str]) -> PathReport:
    site_of = {**inst.fixed, **ev.placement}
    by_index = {t.index: t for t in ev.flows}
    nbytes = {f.index: f.nbytes for f in inst.flows}
    terms: list[PathTerm] = []
    for a, b in zip(nodes, nodes[1:]):
        # a pair may exchange several tensors: the path waits for the slowest
        term = max((by_index[i] for i in graph.g.edges[a, b]["flows"]), key=lambda t: t.latency_us)
        route = None
        if term.src_site != term.dst_site:
            r = network.route(term.src_site, term.dst_site, nbytes[term.index])
            route = list(r.sites) if r else None
        terms.append(PathTerm(kind="transfer", name=f"{a}->{b}", ms=term.latency_us / 1000, route=route,
                              bytes=nbytes[term.index]))
        if b in ev.placement:
            lat = inst.options[b][site_of[b]].latency_us
            terms.append(PathTerm(kind="model", name=b, ms=lat / 1000, site=site_of[b]))
    latency = sum(t.ms for t in terms)
    slo = inst.slo_us / 1000 if inst.slo_us is not None else None
    return PathReport(source=nodes[0], sink=nodes[-1], nodes=nodes, latency_ms=round(latency, 3), slo_ms=slo,
                      slack_ms=None if slo is None else round(slo - latency, 3), terms=terms)


def _critical_path(inst: Instance, ev: Evaluation, sink: str) -> list[str]:
    """Walk back from a sink through the input that arrived last."""
    producer = {f.index: f.src for f in inst.flows}
    consumer = {f.index: f.dst for f in inst.flows}
    inbound: dict[str, list] = {}
    for t in ev.flows:
        inbound.setdefault(consumer[t.index], []).append(t)
    nodes = [sink]
    while nodes[-1] not in inst.sources:
        last = max(inbound[nodes[-1]], key=lambda t: ev.finish_us[producer[t.index]] + t.latency_us)
        nodes.append(producer[last.index])
    return nodes[::-1]


def path_reports(inst: Instance, ev: Evaluation, graph: EnsembleGraph, network: Network) -> tuple[int, list[PathReport]]:
    total = graph.count_paths()
    if total <= PATHS_LISTED_MAX:
        chosen = list(graph.paths())
    else:  # too many to list: the critical path into each sink
        chosen = [_critical_path(inst, ev, k) for k in inst.sinks]
    return total, [_path_report(inst, ev, graph, network, p) for p in chosen]


def baseline_report(b: Baseline) -> BaselineReport:
    ev = b.evaluation
    return BaselineReport(
        name=b.name, description=b.description, feasible=ev.feasible, violations=ev.violations,
        placement=ev.placement, latency_ms=ev.latency_us / 1000, cost_per_hour=ev.cost_uph / 1e6,
    )


def cost_report(inst: Instance, ev: Evaluation, graph: EnsembleGraph, network: Network) -> CostReport:
    egress = []
    for term in ev.flows:
        if term.src_site == term.dst_site:
            continue
        f = next(f for f in inst.flows if f.index == term.index)
        route = network.route(term.src_site, term.dst_site, f.nbytes)
        gb_per_hour = graph.producer_rate(f.src) * f.nbytes * 3600 / 1e9
        for a, b in route.links:
            price = network.link(a, b)["cost_per_gb"]
            if price:
                egress.append(EgressTerm(flow=f"{f.src}->{f.dst}", link=[a, b], gb_per_hour=round(gb_per_hour, 6),
                                         cost_per_hour=round(gb_per_hour * price, 6)))
    return CostReport(compute_per_hour=sum(ev.compute_uph.values()) / 1e6, egress_per_hour=ev.egress_uph / 1e6,
                      egress=egress)


def make_plan(
    *,
    app_name: str,
    inst: Instance,
    sites: dict[str, ResolvedSite],
    graph: EnsembleGraph,
    network: Network,
    profiles: list[NodeProfile],
    solution: Solution,
    config: SolverConfig,
    evaluation: Evaluation | None,
    baselines: list[Baseline],
    warnings: list[str],
    explanation: Explanation | None = None,
) -> Plan:
    plan = Plan(
        app=app_name, status=solution.status, objective=config.objective, placement=solution.placement,
        latency_ms=None, cost_per_hour=None,
        constraints={"latency_ms": None if inst.slo_us is None else inst.slo_us / 1000,
                     "cost_per_hour": None if inst.cost_cap_uph is None else inst.cost_cap_uph / 1e6},
        solver=solver_report(solution, config), baselines=[baseline_report(b) for b in baselines],
        profiles=profiles, warnings=warnings, explanation=explanation.lines() if explanation else [],
        conflicts=explanation.conflicts if explanation else [],
    )
    if evaluation is None:
        return plan
    ev = evaluation
    plan.latency_ms = ev.latency_us / 1000
    plan.cost_per_hour = ev.cost_uph / 1e6
    prof = {(p.node, p.site): p for p in profiles}
    for m in inst.models:
        s = ev.placement[m]
        opt = inst.options[m][s]
        p = prof.get((m, s))
        plan.models[m] = ModelReport(
            site=s, tier=sites[s].tier, target=sites[s].target_name, latency_ms=opt.latency_us / 1000,
            memory_mb=opt.memory_kb / 1000, rate_rps=graph.rate_rps[m], start_ms=ev.start_us[m] / 1000,
            finish_ms=ev.finish_us[m] / 1000, provenance=p.provenance if p else "given",
            tuning=p.tuning if p else None,
        )
    for site in inst.sites:
        if site.name not in ev.replicas:
            continue
        r = sites[site.name]
        plan.sites[site.name] = SiteReport(
            tier=r.tier, target=r.target_name, models=[m for m in inst.models if ev.placement[m] == site.name],
            replicas=ev.replicas[site.name], max_replicas=site.max_replicas,
            load_replicas=round(ev.load[site.name] / REPLICA_CAPACITY, 6),
            memory_mb_used=ev.memory_kb[site.name] / 1000, memory_mb=site.memory_kb / 1000,
            cost_per_hour=ev.compute_uph[site.name] / 1e6,
        )
    plan.paths_total, plan.paths = path_reports(inst, ev, graph, network)
    plan.cost = cost_report(inst, ev, graph, network)
    return plan
