"""Plans an architect would try by hand, scored by the same evaluator as the optimum."""

from __future__ import annotations

from dataclasses import dataclass

from planner.evaluate import Evaluation, evaluate
from planner.solver.instance import Instance


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
            out.append(Baseline(f"all-on-{site.name}", f"every model on {site.name}", evaluate(inst, placement)))
    return out


def greedy_earliest_finish(inst: Instance) -> Baseline:
    """Each model, in topological order, on the site where it finishes first given where its
    inputs already are (HEFT-style list scheduling); ties go to the cheaper site."""
    placement: dict[str, str] = {}
    finish: dict[str, int] = {s: 0 for s in inst.sources}
    site_of = dict(inst.fixed)
    inbound: dict[str, list] = {}
    for f in inst.flows:
        inbound.setdefault(f.dst, []).append(f)
    price = {s.name: s.cost_uph for s in inst.sites}
    for m in inst.models:
        best = None
        for s, opt in inst.options[m].items():
            ready = 0
            for f in inbound.get(m, []):
                src_site = site_of[f.src]
                if src_site == s:
                    arrive = finish[f.src]
                else:
                    tr = f.transfer(src_site, s)
                    if tr is None:
                        break
                    arrive = finish[f.src] + tr.latency_us
                ready = max(ready, arrive)
            else:
                key = (ready + opt.latency_us, price[s], s)
                best = min(best, key) if best else key
        if best is None:  # no site is reachable from its inputs: fall back to its first site
            best = (0, 0, next(iter(inst.options[m])))
        placement[m] = site_of[m] = best[2]
        finish[m] = best[0]
    return Baseline("greedy", "greedy: each model where it finishes first (HEFT-style)", evaluate(inst, placement))


def baselines(inst: Instance) -> list[Baseline]:
    return [*single_site(inst), greedy_earliest_finish(inst)]


def best_feasible(items: list[Baseline], objective: str) -> Baseline | None:
    """The baseline to hint the solver with: feasible and best for the objective."""
    feasible = [b for b in items if b.evaluation.feasible]
    if not feasible:
        return None
    if objective == "cost":
        return min(feasible, key=lambda b: (b.evaluation.cost_uph, b.evaluation.latency_us))
    return min(feasible, key=lambda b: (b.evaluation.latency_us, b.evaluation.cost_uph))
