"""Replicas for a given placement, where the solver does not choose them: the baselines (plans
an architect would try by hand, with as many replicas as their queues need to meet the SLO)
and the solver's own plan (no replica it does not need: a free site would otherwise keep any
number the search left it with)."""

from __future__ import annotations

from planner.solver import constraints
from planner.solver.evaluate import Evaluation, evaluate
from planner.solver.instance import Instance


def with_replicas_for_slo(inst: Instance, placement: dict[str, str], builds: dict[str, str] | None = None) -> Evaluation:
    """The placement with the fewest replicas its load allows, then one replica more at a time
    where it shortens the latency most (the cheaper on a tie), until the SLO is met or no
    replica helps: a greedy, as an architect would size it; the solver's replicas are exact."""
    best = evaluate(inst, placement, builds)
    sites = {s.name: s for s in inst.sites}
    while inst.slo_us is not None and constraints.SLO in best.violated:
        step = None
        for s, r in best.replicas.items():
            if r >= sites[s].max_replicas or not any(best.wait_us[m] for m, at in placement.items() if at == s):
                continue
            trial = evaluate(inst, placement, best.builds, {**best.replicas, s: r + 1})
            if trial.latency_us < best.latency_us and (
                    step is None or (trial.latency_us, trial.cost_uph) < (step.latency_us, step.cost_uph)):
                step = trial
        if step is None:
            break
        best = step
    return best


def without_spare_replicas(inst: Instance, evaluation: Evaluation, excluded: list[Evaluation] = ()) -> Evaluation:
    """The same plan less every replica that changes neither its latency nor its feasibility, and
    does not make it one of the `excluded` plans (PlacementSolver's)."""
    best = evaluation
    for s in sorted(best.replicas):
        while best.replicas[s] > best.least_replicas[s]:
            trial = evaluate(inst, best.placement, best.builds, {**best.replicas, s: best.replicas[s] - 1})
            if trial.latency_us != best.latency_us or trial.violated - best.violated or any(
                    covered_by(trial, plan) for plan in excluded):
                break
            best = trial
    return best


def covered_by(plan: Evaluation, excluded: Evaluation) -> bool:
    """The plan is the excluded one, or its placement and builds on no more replicas per site:
    what PlacementSolver(excluded=...) rules out."""
    return (plan.placement == excluded.placement and plan.builds == excluded.builds
            and all(plan.replicas[s] <= r for s, r in excluded.replicas.items()))
