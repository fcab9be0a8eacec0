"""Making plan.json from a solved instance: every number recomputed by the evaluator from the
final placement, builds and replicas, each path's terms (service, queue wait, transfer), the
cost's parts, the baselines beside the optimum, and the plan's latency against its load."""

from __future__ import annotations

from planner.model.checked_app import CheckedApp
from planner.model.graph import EnsembleGraph
from planner.model.network import Network
from planner.plan.load_curve import PlanQueues, load_curve, model_queue, site_share_ms
from planner.plan.margin import service_margin
from planner.plan.schema import (
    BaselineReport,
    CostReport,
    EgressTerm,
    ModelReport,
    PathReport,
    PathTerm,
    PhaseReport,
    Plan,
    SimulatedCheck,
    SiteReport,
    SolverReport,
)
from planner.plan.simulated import simulated_check
from planner.profiling.table import NodeProfile
from planner.solver.baselines import Baseline
from planner.solver.cpsat import PhaseResult, Solution, SolverConfig
from planner.solver.evaluate import Evaluation
from planner.solver.explain import Explanation
from planner.solver.instance import REPLICA_CAPACITY, Instance

PATHS_LISTED_MAX = 200


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


def _path_report(inst: Instance, evaluation: Evaluation, graph: EnsembleGraph, network: Network, nodes: list[str],
                 median_wait_ms: dict[str, float]) -> PathReport:
    site_of = {**inst.fixed, **evaluation.placement}
    by_index = {t.index: t for t in evaluation.flows}
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
        if b in evaluation.placement:
            lat = inst.option(b, site_of[b], evaluation.builds[b]).latency_us
            terms.append(PathTerm(kind="model", name=b, ms=lat / 1000, site=site_of[b]))
            if evaluation.wait_us[b]:
                terms.append(PathTerm(kind="queue", name=b, ms=evaluation.wait_us[b] / 1000, site=site_of[b]))
    latency = sum(t.ms for t in terms)
    queueing = sum(t.ms for t in terms if t.kind == "queue")
    median = latency - queueing + sum(median_wait_ms[t.name] for t in terms if t.kind == "model")
    slo = inst.slo_us / 1000 if inst.slo_us is not None else None
    return PathReport(source=nodes[0], sink=nodes[-1], nodes=nodes, latency_ms=round(latency, 3), slo_ms=slo,
                      slack_ms=None if slo is None else round(slo - latency, 3), terms=terms,
                      p50_ms=round(median, 3), queueing_ms=round(queueing, 3))


def _critical_path(inst: Instance, evaluation: Evaluation, sink: str) -> list[str]:
    """Walk back from a sink through the input that arrived last."""
    producer = {f.index: f.src for f in inst.flows}
    consumer = {f.index: f.dst for f in inst.flows}
    inbound: dict[str, list] = {}
    for t in evaluation.flows:
        inbound.setdefault(consumer[t.index], []).append(t)
    nodes = [sink]
    while nodes[-1] not in inst.sources:
        last = max(inbound[nodes[-1]], key=lambda t: evaluation.finish_us[producer[t.index]] + t.latency_us)
        nodes.append(producer[last.index])
    return nodes[::-1]


def path_reports(inst: Instance, evaluation: Evaluation, graph: EnsembleGraph, network: Network,
                 median_wait_ms: dict[str, float]) -> tuple[int, list[PathReport]]:
    total = graph.count_paths()
    if total <= PATHS_LISTED_MAX:
        chosen = list(graph.paths())
    else:  # too many to list: the critical path into each sink
        chosen = [_critical_path(inst, evaluation, k) for k in inst.sinks]
    return total, [_path_report(inst, evaluation, graph, network, p, median_wait_ms) for p in chosen]


def baseline_report(b: Baseline) -> BaselineReport:
    evaluation = b.evaluation
    return BaselineReport(
        name=b.name, description=b.description, feasible=evaluation.feasible,
        violations=[v.message for v in evaluation.violations], violated=[v.key for v in evaluation.violations],
        placement=evaluation.placement, replicas=evaluation.replicas, latency_ms=evaluation.latency_us / 1000,
        cost_per_hour=evaluation.cost_uph / 1e6,
    )


def cost_report(inst: Instance, evaluation: Evaluation, graph: EnsembleGraph, network: Network) -> CostReport:
    egress = []
    for term in evaluation.flows:
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
    return CostReport(compute_per_hour=sum(evaluation.compute_uph.values()) / 1e6, egress_per_hour=evaluation.egress_uph / 1e6,
                      egress=egress)


def make_plan(
    *,
    checked: CheckedApp,
    inst: Instance,
    profiles: list[NodeProfile],
    solution: Solution,
    config: SolverConfig,
    evaluation: Evaluation | None,
    baselines: list[Baseline],
    warnings: list[str],
    explanation: Explanation | None = None,
    simulated: SimulatedCheck | None = None,
) -> Plan:
    sites, graph, network = checked.sites, checked.graph, checked.network
    plan = Plan(
        app=checked.app.name, status=solution.status, objective=config.objective, placement=solution.placement,
        latency_ms=None, cost_per_hour=None,
        constraints={"latency_ms": None if inst.slo_us is None else inst.slo_us / 1000,
                     "cost_per_hour": None if inst.cost_cap_uph is None else inst.cost_cap_uph / 1e6,
                     "max_utilization": checked.app.constraints.max_utilization},
        percentile=inst.percentile,
        solver=solver_report(solution, config), baselines=[baseline_report(b) for b in baselines],
        profiles=profiles, warnings=warnings, explanation=explanation.lines() if explanation else [],
        conflicts=explanation.conflicts if explanation else [],
    )
    if evaluation is None:
        return plan
    plan.latency_ms = evaluation.latency_us / 1000
    plan.cost_per_hour = evaluation.cost_uph / 1e6
    prof = {(p.node, p.site, p.build): p for p in profiles}
    median_wait: dict[str, float] = {}
    stated_pct: dict[str, float] = {}  # the chosen builds' stated errors (estimates)
    unknown_error: list[str] = []  # estimates that state none
    for m in inst.models:
        s = evaluation.placement[m]
        opt = inst.option(m, s, evaluation.builds[m])
        p = prof.get((m, s, opt.build))
        if p is not None and p.expected_error_pct is not None:
            stated_pct[m] = round(p.expected_error_pct, 1)
        elif p is not None and p.provenance == "estimated":
            unknown_error.append(m)
        instances = checked.app.models[m].instances
        queue = model_queue(graph.rate_rps[m], opt.latency_us, evaluation.replicas[s] * instances)
        # its own queue's median wait, or its share of its site's (as at the percentile: the longer)
        median_wait[m] = max(queue.wait_ms(50), site_share_ms(inst, evaluation, opt, s, 1.0, 50))
        engine, _, precision = opt.build.partition("/")
        plan.models[m] = ModelReport(
            site=s, tier=sites[s].tier, target=sites[s].target_name, latency_ms=opt.latency_us / 1000,
            memory_mb=opt.memory_kb / 1000, rate_rps=graph.rate_rps[m], start_ms=evaluation.start_us[m] / 1000,
            finish_ms=evaluation.finish_us[m] / 1000, provenance=p.provenance if p else "given",
            tuning=p.tuning if p else None, engine=engine, precision=precision,
            verified=p.verified if p else None, instances=instances, servers=queue.servers,
            utilization=round(queue.utilization, 6), wait_ms=evaluation.wait_us[m] / 1000,
            wait_p50_ms=round(median_wait[m], 3), mean_wait_ms=round(queue.mean_wait_ms, 3),
        )
    for site in inst.sites:
        if site.name not in evaluation.replicas:
            continue
        r = sites[site.name]
        plan.sites[site.name] = SiteReport(
            tier=r.tier, target=r.target_name, models=[m for m in inst.models if evaluation.placement[m] == site.name],
            replicas=evaluation.replicas[site.name], max_replicas=site.max_replicas,
            load_replicas=round(evaluation.load[site.name] / REPLICA_CAPACITY, 6),
            utilization=round(evaluation.load[site.name] / REPLICA_CAPACITY / evaluation.replicas[site.name], 6),
            memory_mb_used=evaluation.memory_kb[site.name] / 1000, memory_mb=site.memory_kb / 1000,
            cost_per_hour=evaluation.compute_uph[site.name] / 1e6,
        )
    plan.paths_total, plan.paths = path_reports(inst, evaluation, graph, network, median_wait)
    sources = {name: src.rate_rps for name, src in checked.app.sources.items()}
    queues = PlanQueues(inst, evaluation, {**graph.rate_rps, **sources},
                        {m: checked.app.models[m].instances for m in inst.models})
    plan.load_curve = load_curve(queues)
    plan.service_margin = service_margin(queues, None if inst.slo_us is None else inst.slo_us / 1000, stated_pct,
                                         unknown_error)
    plan.cost = cost_report(inst, evaluation, graph, network)
    plan.simulated = simulated or simulated_check(checked, inst, evaluation, profiles)
    plan.warnings.extend(simulation_warnings(plan.simulated, inst))
    return plan


def simulation_warnings(check: SimulatedCheck, inst: Instance) -> list[str]:
    if max(check.cores_utilization.values(), default=0) >= 1:
        return [f"not simulated at the planned rate: {check.why}; the solver's queues, each model on its own "
                "servers, keep up, but the models of a site share its cores"]
    if check.status != "ok" or inst.slo_us is None or check.tail_ms <= inst.slo_us / 1000:
        return []
    busy = check.cores_utilization
    site = max(busy, key=busy.get)
    tried = [r for r in check.rounds if r.placement]
    tried = (f"; {len(tried)} plans tried, none met it in simulation" if len(tried) > 1 else "") + (
        ", and no other plan meets the SLO by the model" if check.rounds and not check.rounds[-1].placement else "")
    return [f"simulated at the planned rate, p{inst.percentile:g} is {check.tail_ms:,.1f} ms, over the "
            f"{inst.slo_us / 1000:g} ms SLO the plan meets with each model on its own servers: the models of a "
            f"site share its cores (busiest: {site}, {busy[site]:.0%}){tried} (simulated.rounds in plan.json)"]
