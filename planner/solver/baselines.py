"""Plans an architect would try by hand, scored by the same evaluator as the optimum (each with
the replicas its queues need for the SLO, sized greedily: planner.solver.replicas)."""

from __future__ import annotations

from dataclasses import dataclass

from planner.solver.evaluate import Evaluation
from planner.solver.instance import FlowData, Instance
from planner.solver.replicas import with_replicas_for_slo


@dataclass
class Baseline:
    name: str
    description: str
    evaluation: Evaluation


def single_site(inst: Instance) -> list[Baseline]:
    """Every model on one site, for each site that may host them all."""
    out = []
    for site in inst.sites:
        if all(site.name in inst.options[m] for m in inst.models):
            placement = {m: site.name for m in inst.models}
            out.append(Baseline(f"all-on-{site.name}", f"every model on {site.name}", with_replicas_for_slo(inst, placement)))
    return out


def _inbound(inst: Instance) -> dict[str, list[FlowData]]:
    inbound: dict[str, list[FlowData]] = {}
    for f in inst.flows:
        inbound.setdefault(f.dst, []).append(f)
    return inbound


def _ready_us(flows: list[FlowData], site: str, finish: dict[str, int], site_of: dict[str, str]) -> int | None:
    """When the last input of a node on `site` arrives, its producers placed and finished as
    given; None when some input has no route there."""
    ready = 0
    for f in flows:
        if site_of[f.src] == site:
            arrive = finish[f.src]
        else:
            tr = f.transfer(site_of[f.src], site)
            if tr is None:
                return None
            arrive = finish[f.src] + tr.latency_us
        ready = max(ready, arrive)
    return ready


def greedy_earliest_finish(inst: Instance) -> Baseline:
    """Each model, in topological order, on the site where it finishes first given where its
    inputs already are (HEFT-style list scheduling); ties go to the cheaper site."""
    placement: dict[str, str] = {}
    finish: dict[str, int] = {s: 0 for s in inst.sources}
    site_of = dict(inst.fixed)
    inbound = _inbound(inst)
    price = {s.name: s.cost_uph for s in inst.sites}
    for m in inst.models:
        best = None
        for s, opt in inst.options[m].items():
            ready = _ready_us(inbound.get(m, []), s, finish, site_of)
            if ready is not None:
                key = (ready + opt.latency_us, price[s], s)
                best = min(best, key) if best else key
        if best is None:  # no site is reachable from its inputs: fall back to its first site
            best = (0, 0, next(iter(inst.options[m])))
        placement[m] = site_of[m] = best[2]
        finish[m] = best[0]
    return Baseline("greedy", "greedy: each model where it finishes first (HEFT-style)", with_replicas_for_slo(inst, placement))


def capacity_greedy_placement(inst: Instance) -> tuple[dict[str, str], list[str]]:
    """The HEFT-style greedy restricted at each step to the sites that still have room for the
    model (memory, and replicas within max_replicas). Returns the placement and the models no
    site had room for (each of those goes where it finishes first regardless of room)."""
    placement: dict[str, str] = {}
    finish: dict[str, int] = {s: 0 for s in inst.sources}
    site_of = dict(inst.fixed)
    inbound = _inbound(inst)
    sites = {s.name: s for s in inst.sites}
    load = {s: 0 for s in sites}
    mem = {s: 0 for s in sites}
    hosted: dict[str, list] = {s: [] for s in sites}
    overflow: list[str] = []
    for m in inst.models:
        best = best_any = None
        for s, opt in inst.options[m].items():
            ready = _ready_us(inbound.get(m, []), s, finish, site_of)
            if ready is None:
                continue
            key = (ready + opt.latency_us, sites[s].cost_uph, s)
            best_any = min(best_any, key) if best_any else key
            if mem[s] + opt.memory_kb > sites[s].memory_kb:
                continue
            if inst.least_replicas(s, load[s] + opt.load, [*hosted[s], opt]) > sites[s].max_replicas:
                continue
            best = min(best, key) if best else key
        if best is None:
            overflow.append(m)
            best = best_any or (0, 0, next(iter(inst.options[m])))
        s = best[2]
        placement[m] = site_of[m] = s
        finish[m] = best[0]
        load[s] += inst.options[m][s].load
        mem[s] += inst.options[m][s].memory_kb
        hosted[s].append(inst.options[m][s])
    return placement, overflow


def greedy_within_capacity(inst: Instance) -> Baseline:
    """The greedy above, but each model only among the sites with memory and replicas left:
    on large ensembles the plain greedy overfills the fastest site, this one stays feasible
    unless the SLO or cost cap rule it out (and so gives the solver a feasible start)."""
    placement, _ = capacity_greedy_placement(inst)
    return Baseline("greedy-capacity", "greedy: each model where it finishes first among the sites with room left",
                    with_replicas_for_slo(inst, placement))


def baselines(inst: Instance) -> list[Baseline]:
    greedy = greedy_earliest_finish(inst)
    capacity = greedy_within_capacity(inst)
    # listed only where capacity changed the greedy's plan (else the same row twice)
    differs = capacity.evaluation.placement != greedy.evaluation.placement
    return [*single_site(inst), greedy, *([capacity] if differs else [])]


def best_feasible(items: list[Baseline], objective: str) -> Baseline | None:
    """The baseline to hint the solver with: feasible and best for the objective."""
    feasible = [b for b in items if b.evaluation.feasible]
    if not feasible:
        return None
    if objective == "cost":
        return min(feasible, key=lambda b: (b.evaluation.cost_uph, b.evaluation.latency_us))
    return min(feasible, key=lambda b: (b.evaluation.latency_us, b.evaluation.cost_uph))
