"""The independent evaluator: latency and cost of a given placement, by direct arithmetic.

Everything a plan reports (latency_ms, cost_per_hour, baselines) comes from here, and the
tests check the CP-SAT optimum against brute force through this same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.solver import constraints
from planner.solver.constraints import ConstraintKey, Violation
from planner.solver.instance import REPLICA_CAPACITY, Instance


@dataclass
class FlowTerm:
    index: int
    src_site: str
    dst_site: str
    latency_us: int
    egress_uph: int


@dataclass
class Evaluation:
    placement: dict[str, str]
    violations: list[Violation] = field(default_factory=list)
    start_us: dict[str, int] = field(default_factory=dict)
    finish_us: dict[str, int] = field(default_factory=dict)  # sources 0, sinks = arrival
    flows: list[FlowTerm] = field(default_factory=list)
    replicas: dict[str, int] = field(default_factory=dict)
    memory_kb: dict[str, int] = field(default_factory=dict)
    load: dict[str, int] = field(default_factory=dict)
    compute_uph: dict[str, int] = field(default_factory=dict)
    latency_us: int = 0
    cost_uph: int = 0

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def violated(self) -> set[ConstraintKey]:
        return {v.key for v in self.violations}

    @property
    def egress_uph(self) -> int:
        return sum(f.egress_uph for f in self.flows)


def evaluate(inst: Instance, placement: dict[str, str]) -> Evaluation:
    evaluation = Evaluation(placement=dict(placement))

    def violate(key: ConstraintKey, message: str) -> None:
        evaluation.violations.append(Violation(key, message))

    site_of = {**inst.fixed, **placement}
    for m in inst.models:
        if m not in placement:
            raise ValueError(f"{m} is not placed")
        if placement[m] in inst.unpinned.get(m, {}):
            violate(constraints.pin(m), f"{m} runs on {placement[m]}, outside its `sites:`")
        elif placement[m] not in inst.options[m]:
            raise ValueError(f"{m} cannot run on {placement[m]}")

    # Transfer of every flow: free within a site, the fastest route across sites.
    inbound: dict[str, list[FlowTerm]] = {}
    for f in inst.flows:
        s, t = site_of[f.src], site_of[f.dst]
        if s == t:
            term = FlowTerm(f.index, s, t, 0, 0)
        else:
            tr = f.transfer(s, t)
            if tr is None:
                violate(constraints.ROUTE, f"flow {f.src}->{f.dst}: no route from {s} to {t}")
                return evaluation
            term = FlowTerm(f.index, s, t, tr.latency_us, tr.egress_uph)
        evaluation.flows.append(term)
        inbound.setdefault(f.dst, []).append(term)
    producer = {f.index: f.src for f in inst.flows}

    # A node starts when all its inputs have arrived; sources are at time 0.
    for src in inst.sources:
        evaluation.start_us[src] = evaluation.finish_us[src] = 0
    for node in [*inst.models, *inst.sinks]:
        arrivals = [evaluation.finish_us[producer[t.index]] + t.latency_us for t in inbound.get(node, [])]
        evaluation.start_us[node] = max(arrivals, default=0)
        duration = inst.option(node, placement[node]).latency_us if node in placement else 0
        evaluation.finish_us[node] = evaluation.start_us[node] + duration
    evaluation.latency_us = max(evaluation.finish_us[k] for k in inst.sinks)

    # Replicas from the load, memory per replica, cost = replicas x price + egress.
    for m, s in placement.items():
        opt = inst.option(m, s)
        evaluation.load[s] = evaluation.load.get(s, 0) + opt.load
        evaluation.memory_kb[s] = evaluation.memory_kb.get(s, 0) + opt.memory_kb
    for site in inst.sites:
        if site.name not in evaluation.load:
            continue
        replicas = max(1, -(-evaluation.load[site.name] // REPLICA_CAPACITY))  # exact integer ceil
        evaluation.replicas[site.name] = replicas
        evaluation.compute_uph[site.name] = replicas * site.cost_uph
        if replicas > site.max_replicas:
            violate(constraints.replicas(site.name), f"{site.name} needs {replicas} replicas, max_replicas is {site.max_replicas}")
        if evaluation.memory_kb[site.name] > site.memory_kb:
            violate(constraints.memory(site.name),
                    f"{site.name} needs {evaluation.memory_kb[site.name] / 1000:g} MB, has {site.memory_kb / 1000:g} MB")
    evaluation.cost_uph = sum(evaluation.compute_uph.values()) + evaluation.egress_uph

    if inst.slo_us is not None and evaluation.latency_us > inst.slo_us:
        violate(constraints.SLO, f"latency {evaluation.latency_us / 1000:g} ms exceeds the SLO of {inst.slo_us / 1000:g} ms")
    if inst.cost_cap_uph is not None and evaluation.cost_uph > inst.cost_cap_uph:
        violate(constraints.COST_CAP, f"cost {evaluation.cost_uph / 1e6:g} $/h exceeds the cap of {inst.cost_cap_uph / 1e6:g} $/h")
    return evaluation
