"""The independent evaluator: latency and cost of a given placement, by direct arithmetic.

Everything a plan reports (latency_ms, cost_per_hour, baselines) comes from here, and the
tests check the CP-SAT optimum against brute force through this same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    violations: list[str] = field(default_factory=list)
    violated: set[str] = field(default_factory=set)  # slo, cost_cap, memory:<s>, replicas:<s>, pin:<m>, route
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
    def egress_uph(self) -> int:
        return sum(f.egress_uph for f in self.flows)


def evaluate(inst: Instance, placement: dict[str, str]) -> Evaluation:
    ev = Evaluation(placement=dict(placement))

    def violate(key: str, message: str) -> None:
        ev.violated.add(key)
        ev.violations.append(message)

    site_of = {**inst.fixed, **placement}
    for m in inst.models:
        if m not in placement:
            raise ValueError(f"{m} is not placed")
        if placement[m] in inst.unpinned.get(m, {}):
            violate(f"pin:{m}", f"{m} runs on {placement[m]}, outside its `sites:`")
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
                violate("route", f"flow {f.src}->{f.dst}: no route from {s} to {t}")
                return ev
            term = FlowTerm(f.index, s, t, tr.latency_us, tr.egress_uph)
        ev.flows.append(term)
        inbound.setdefault(f.dst, []).append(term)
    producer = {f.index: f.src for f in inst.flows}

    # A node starts when all its inputs have arrived; sources are at time 0.
    for src in inst.sources:
        ev.start_us[src] = ev.finish_us[src] = 0
    for node in [*inst.models, *inst.sinks]:
        arrivals = [ev.finish_us[producer[t.index]] + t.latency_us for t in inbound.get(node, [])]
        ev.start_us[node] = max(arrivals, default=0)
        duration = inst.option(node, placement[node]).latency_us if node in placement else 0
        ev.finish_us[node] = ev.start_us[node] + duration
    ev.latency_us = max(ev.finish_us[k] for k in inst.sinks)

    # Replicas from the load, memory per replica, cost = replicas x price + egress.
    for m, s in placement.items():
        opt = inst.option(m, s)
        ev.load[s] = ev.load.get(s, 0) + opt.load
        ev.memory_kb[s] = ev.memory_kb.get(s, 0) + opt.memory_kb
    for site in inst.sites:
        if site.name not in ev.load:
            continue
        replicas = max(1, -(-ev.load[site.name] // REPLICA_CAPACITY))  # exact integer ceil
        ev.replicas[site.name] = replicas
        ev.compute_uph[site.name] = replicas * site.cost_uph
        if replicas > site.max_replicas:
            violate(f"replicas:{site.name}", f"{site.name} needs {replicas} replicas, max_replicas is {site.max_replicas}")
        if ev.memory_kb[site.name] > site.memory_kb:
            violate(f"memory:{site.name}",
                    f"{site.name} needs {ev.memory_kb[site.name] / 1000:g} MB, has {site.memory_kb / 1000:g} MB")
    ev.cost_uph = sum(ev.compute_uph.values()) + ev.egress_uph

    if inst.slo_us is not None and ev.latency_us > inst.slo_us:
        violate("slo", f"latency {ev.latency_us / 1000:g} ms exceeds the SLO of {inst.slo_us / 1000:g} ms")
    if inst.cost_cap_uph is not None and ev.cost_uph > inst.cost_cap_uph:
        violate("cost_cap", f"cost {ev.cost_uph / 1e6:g} $/h exceeds the cap of {inst.cost_cap_uph / 1e6:g} $/h")
    return ev
