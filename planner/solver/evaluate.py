"""The independent evaluator: latency and cost of a given placement, by direct arithmetic.

Everything a plan reports (latency_ms, cost_per_hour, baselines) comes from here, and the
tests check the CP-SAT optimum against brute force through this same function.

A plan is a placement, a build per model (default: the site's first) and replicas per site
(default: the fewest the load allows). A model's time on a path is its latency plus its wait at
the planned percentile with its site's replicas: its own queue's (Option.wait_us), or its share
of its site's cores' queue (SiteData.wait_per_us x its core time), whichever is longer; the
path latency is the sum of those times and of the transfers: a percentile bound (the README's
latency model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.solver import constraints
from planner.solver.constraints import ConstraintKey, Violation
from planner.solver.instance import Instance


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
    builds: dict[str, str] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    start_us: dict[str, int] = field(default_factory=dict)
    finish_us: dict[str, int] = field(default_factory=dict)  # sources 0, sinks = arrival
    flows: list[FlowTerm] = field(default_factory=list)
    replicas: dict[str, int] = field(default_factory=dict)
    least_replicas: dict[str, int] = field(default_factory=dict)  # the fewest the load allows
    wait_us: dict[str, int] = field(default_factory=dict)  # model -> its queue's wait at the percentile
    memory_kb: dict[str, int] = field(default_factory=dict)
    load: dict[str, int] = field(default_factory=dict)
    core_load: dict[str, int] = field(default_factory=dict)  # its models' share of its cores
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


def evaluate(inst: Instance, placement: dict[str, str], builds: dict[str, str] | None = None,
             replicas: dict[str, int] | None = None) -> Evaluation:
    """`builds` and `replicas` may name some models and sites only; the others take their defaults."""
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
    chosen = {m: inst.option(m, s, (builds or {}).get(m)) for m, s in placement.items()}
    evaluation.builds = {m: o.build for m, o in chosen.items()}

    # Replicas: the fewest the load allows, or as given; then each queue's wait with them.
    hosted: dict[str, list[str]] = {}
    for m, s in placement.items():
        opt = chosen[m]
        hosted.setdefault(s, []).append(m)
        evaluation.load[s] = evaluation.load.get(s, 0) + opt.load
        evaluation.core_load[s] = evaluation.core_load.get(s, 0) + opt.core_load
        evaluation.memory_kb[s] = evaluation.memory_kb.get(s, 0) + opt.memory_kb
    for s, models in hosted.items():
        least = inst.least_replicas(s, evaluation.load[s], [chosen[m] for m in models])
        evaluation.least_replicas[s] = least
        r = (replicas or {}).get(s, least)
        if r < least:
            raise ValueError(f"{s} cannot run {r} replicas: its load needs at least {least}")
        evaluation.replicas[s] = r
        # its own queue's wait, or its share of the site's cores' (they serve every model there)
        per_us = inst.site(s).wait_per_us(evaluation.core_load[s], r)
        for m in models:
            evaluation.wait_us[m] = max(chosen[m].wait_us(r), chosen[m].site_wait_us(per_us))

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
        duration = chosen[node].latency_us + evaluation.wait_us[node] if node in placement else 0
        evaluation.finish_us[node] = evaluation.start_us[node] + duration
    evaluation.latency_us = max(evaluation.finish_us[k] for k in inst.sinks)

    # Memory per replica, cost = replicas x price + egress.
    for site in inst.sites:
        if site.name not in evaluation.load:
            continue
        r = evaluation.replicas[site.name]
        evaluation.compute_uph[site.name] = r * site.cost_uph
        if r > site.max_replicas:
            violate(constraints.replicas(site.name), f"{site.name} needs {r} replicas, max_replicas is {site.max_replicas}")
        if evaluation.memory_kb[site.name] > site.memory_kb:
            violate(constraints.memory(site.name),
                    f"{site.name} needs {evaluation.memory_kb[site.name] / 1000:g} MB, has {site.memory_kb / 1000:g} MB")
    evaluation.cost_uph = sum(evaluation.compute_uph.values()) + evaluation.egress_uph

    if inst.slo_us is not None and evaluation.latency_us > inst.slo_us:
        violate(constraints.SLO, f"p{inst.percentile:g} latency {evaluation.latency_us / 1000:g} ms exceeds the SLO of "
                                 f"{inst.slo_us / 1000:g} ms")
    if inst.cost_cap_uph is not None and evaluation.cost_uph > inst.cost_cap_uph:
        violate(constraints.COST_CAP, f"cost {evaluation.cost_uph / 1e6:g} $/h exceeds the cap of {inst.cost_cap_uph / 1e6:g} $/h")
    return evaluation
