"""The plan's latency against its load: the chosen placement, builds and replicas with every
source's rate scaled, the slowest path's p50 and its percentile by the queueing model
(planner.model.queueing), the same terms the evaluator adds. Where the curve bends (the knee)
is where queueing starts to dominate: the last rate whose percentile stays within KNEE_RATIO
of the percentile at the lightest load on the curve (a quarter of the planned rates)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from planner.model.queueing import Queue
from planner.plan.schema import LoadPoint
from planner.solver.evaluate import Evaluation
from planner.plan.problem import site_wait_table
from planner.solver.instance import REPLICA_CAPACITY, Instance, Option

SCALES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
KNEE_RATIO = 1.5


def model_queue(rate_rps: float, latency_us: int, servers: int) -> Queue:
    """One model's queue in the plan: Poisson arrivals, its build's service time, c servers."""
    return Queue(rate_rps=rate_rps, service_ms=latency_us / 1000, servers=servers)


def site_share_ms(inst: Instance, evaluation: Evaluation, option: Option, site: str, scale: float,
                   percentile: float, slower: float = 1.0, core_load: float | None = None) -> float:
    """A model's share of its site's wait at this scale of the planned rates (as the evaluator's, at the plan's),
    with its service time `slower` times its profile; `core_load`: the site's cores' load at the planned
    rates where its models' times are not their profiles' (default: the evaluation's)."""
    load = round((evaluation.core_load.get(site, 0) if core_load is None else core_load) * scale)
    data = inst.site(site)
    if not data.waits or not load or not option.core_us:
        return 0.0
    replicas = evaluation.replicas[site]
    table = site_wait_table(len(data.waits), percentile)
    per_us = table[min(replicas, len(table)) - 1][data.level(load, replicas)]
    return slower * option.site_wait_us(per_us) / 1000


def _slowest_path_ms(inst: Instance, evaluation: Evaluation, duration_ms: dict[str, float]) -> float:
    producer = {f.index: f.src for f in inst.flows}
    inbound: dict[str, list] = {}
    for t in evaluation.flows:
        inbound.setdefault(inst.flows[t.index].dst, []).append(t)
    finish = {s: 0.0 for s in inst.sources}
    for node in [*inst.models, *inst.sinks]:
        start = max((finish[producer[t.index]] + t.latency_us / 1000 for t in inbound.get(node, [])), default=0.0)
        finish[node] = start + duration_ms.get(node, 0.0)
    return max(finish[k] for k in inst.sinks)


@dataclass(frozen=True)
class Point:
    """The plan at `scale` x its planned rates with every model's service time `slower` x its profile."""

    max_utilization: float
    stable: bool
    p50_ms: float | None = None
    tail_ms: float | None = None


class PlanQueues:
    """The chosen placement, builds and replicas, whose load and service times may be scaled."""

    def __init__(self, inst: Instance, evaluation: Evaluation, rates: dict[str, float], instances: dict[str, int]):
        self.inst, self.evaluation, self.rates = inst, evaluation, rates
        self.options = {m: inst.option(m, s, evaluation.builds[m]) for m, s in evaluation.placement.items()}
        self.servers = {m: evaluation.replicas[s] * instances[m] for m, s in evaluation.placement.items()}

    def point(self, scale: float = 1.0, slower: float | Mapping[str, float] = 1.0) -> Point:
        """The slowest path's p50 and percentile with every model's service time `slower` x its profile
        (or each model's own factor, 1 where none is given); unstable (no latency) where a queue cannot
        keep up (at or above 100 %) or a site's cores are past the last level of its wait table."""
        inst, evaluation = self.inst, self.evaluation
        k = {m: slower.get(m, 1.0) if isinstance(slower, Mapping) else slower for m in self.options}
        service = {m: o.latency_us * k[m] for m, o in self.options.items()}
        queues = {m: model_queue(self.rates[m] * scale, service[m], self.servers[m]) for m in service}
        core_load: dict[str, float] = {}
        for m, o in self.options.items():
            site = evaluation.placement[m]
            core_load[site] = core_load.get(site, 0.0) + o.core_load * k[m]
        cores = {s: load * scale / REPLICA_CAPACITY / evaluation.replicas[s]
                 for s, load in core_load.items() if load and inst.site(s).waits}
        busiest = round(max([q.utilization for q in queues.values()] + list(cores.values()), default=0.0), 4)
        if any(not q.stable for q in queues.values()) or any(
                inst.site(s).level(round(core_load[s] * scale), evaluation.replicas[s]) is None for s in cores):
            return Point(busiest, stable=False)
        # each model's wait: its queue's, or its share of its site's cores' queue, whichever is longer
        p50, tail = ({m: service[m] / 1000 + max(q.wait_ms(p), site_share_ms(
            inst, evaluation, self.options[m], evaluation.placement[m], scale, p, k[m],
            core_load[evaluation.placement[m]])) for m, q in queues.items()} for p in (50, inst.percentile))
        return Point(busiest, stable=True, p50_ms=round(_slowest_path_ms(inst, evaluation, p50), 3),
                     tail_ms=round(_slowest_path_ms(inst, evaluation, tail), 3))


def load_curve(plan: PlanQueues) -> list[LoadPoint]:
    """Points at SCALES x the planned rates, up to the first one the plan cannot keep up with
    (a queue at 100 %, or a site's cores past the last level of its wait table)."""
    inst, rates = plan.inst, plan.rates
    lightest: float | None = None
    total_rps = sum(rates.get(s, 0.0) for s in inst.sources) or max(rates.values(), default=0.0)
    points: list[LoadPoint] = []
    for scale in SCALES:
        p = plan.point(scale)
        if not p.stable:
            points.append(LoadPoint(rate_scale=scale, rate_rps=round(total_rps * scale, 6),
                                    max_utilization=p.max_utilization, stable=False))
            break
        lightest = p.tail_ms if lightest is None else lightest
        points.append(LoadPoint(rate_scale=scale, rate_rps=round(total_rps * scale, 6),
                                max_utilization=p.max_utilization, stable=True, p50_ms=p.p50_ms, tail_ms=p.tail_ms,
                                within_knee=p.tail_ms <= KNEE_RATIO * lightest))
    return points
