"""The solver's plan, checked by simulation, and the next plan while the simulation refuses it.

The solver is exact over its latency model, where each model queues on its own servers and the
path adds their percentiles. Where the models of a site share its cores, that model can
promise less than the site delivers (planner.plan.simulated). So the plan is simulated at its
planned rate; when the simulated percentile exceeds the SLO, the solver runs again with that
plan excluded, and with it the same placement and builds on no more replicas per site (fewer
replicas share fewer cores: no better), so it finds the best plan by its objective among the
rest: a different placement, or more replicas where they pay. Until a plan's simulation meets
the SLO, no plan is left (the first plan stays, with the simulation's warning), or MAX_ROUNDS
solves are spent (the same). Each round is in plan.json (`simulated.rounds`).

Within MAX_ROUNDS this is exact over both: the plan is the best by the objective among those
that meet the SLO by the model and by the simulation (brute force over every plan agrees,
tests/plan/test_simulated.py). A plan the model refuses and the simulation would accept is
never found: the model's own bound stays a constraint.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.model.checked_app import CheckedApp
from planner.plan.schema import SimulatedCheck, VettingRound
from planner.plan.simulated import simulated_check
from planner.profiling.table import NodeProfile
from planner.solver.cpsat import PlacementSolver, Solution, SolverConfig
from planner.solver.evaluate import Evaluation
from planner.solver.instance import Instance

MAX_ROUNDS = 8  # solves after the first


@dataclass
class Vetted:
    solution: Solution
    evaluation: Evaluation | None  # of the solution, by the app's own instance (its SLO)
    simulated: SimulatedCheck | None = None  # of that plan, with every round; None when there is none


def solve_vetted(checked: CheckedApp, inst: Instance, profiles: list[NodeProfile], config: SolverConfig,
                 hint: Evaluation | None) -> Vetted:
    first = _checked(checked, inst, profiles, PlacementSolver(inst, config, hint=hint).solve())
    vetted, refused, rounds = first, [], []
    while True:
        check, evaluation = vetted.simulated, vetted.evaluation
        if inst.slo_us is None or evaluation is None or check is None or check.status != "ok":
            break
        met = round(check.tail_ms * 1000) <= inst.slo_us
        rounds.append(VettingRound(status=vetted.solution.status, placement=evaluation.placement,
                                   replicas=evaluation.replicas, cost_per_hour=evaluation.cost_uph / 1e6,
                                   latency_ms=evaluation.latency_us / 1000, simulated_ms=check.tail_ms, met=met))
        if met:
            break
        refused.append(evaluation)
        if len(rounds) > MAX_ROUNDS:
            vetted = first
            break
        again = PlacementSolver(inst, config, excluded=refused).solve()
        if not again.placement:
            rounds.append(VettingRound(status=again.status, met=False))
            vetted = first
            break
        vetted = _checked(checked, inst, profiles, again)
    if vetted.simulated is not None:
        vetted.simulated.rounds = rounds
    return vetted


def _checked(checked: CheckedApp, inst: Instance, profiles: list[NodeProfile], solution: Solution) -> Vetted:
    evaluation = solution.evaluate(inst) if solution.placement else None
    if evaluation is not None and not evaluation.feasible:
        # a solver bug, never the input's fault
        raise AssertionError(f"solver placement violates: {[str(v) for v in evaluation.violations]}")
    check = simulated_check(checked, inst, evaluation, profiles) if evaluation is not None else None
    return Vetted(solution, evaluation, check)
