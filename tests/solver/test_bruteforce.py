"""CP-SAT's optimum equals brute-force enumeration through the independent evaluator."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from ortools.sat.python import cp_model

from planner.solver.baselines import baselines, best_feasible
from planner.errors import InputError
from planner.solver.evaluate import evaluate
from planner.solver.cpsat import PlacementSolver, SolverConfig
from tests.appgen import apps, instance_of


def brute_force(inst, objective: str):
    best = None
    models = inst.models
    for combo in itertools.product(*(list(inst.options[m]) for m in models)):
        ev = evaluate(inst, dict(zip(models, combo)))
        if not ev.feasible:
            continue
        key = (ev.cost_uph, ev.latency_us) if objective == "cost" else (ev.latency_us, ev.cost_uph)
        best = key if best is None or key < best else best
    return best


@pytest.mark.parametrize("objective", ["cost", "latency"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=apps())
def test_cpsat_matches_brute_force(data, objective):
    try:
        inst, _, _ = instance_of(data)
    except InputError:
        return  # e.g. a flow whose ends can never be joined: rejected before solving
    expected = brute_force(inst, objective)
    sol = PlacementSolver(inst, SolverConfig(objective=objective, time_limit_s=20, workers=2)).solve()
    if expected is None:
        assert sol.status == "INFEASIBLE"
        return
    assert sol.status == "OPTIMAL"
    ev = evaluate(inst, sol.placement)
    assert ev.feasible, ev.violations
    got = (ev.cost_uph, ev.latency_us) if objective == "cost" else (ev.latency_us, ev.cost_uph)
    assert got == expected


@pytest.mark.parametrize("objective", ["cost", "latency"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=apps())
def test_cpsat_with_the_cli_hint_matches_brute_force(data, objective):
    """The CLI's path: the best feasible baseline as a complete hint (every variable)."""
    try:
        inst, _, _ = instance_of(data)
    except InputError:
        return
    expected = brute_force(inst, objective)
    hint = best_feasible(baselines(inst), objective)
    sol = PlacementSolver(inst, SolverConfig(objective=objective, time_limit_s=20, workers=2),
                          hint=hint.evaluation.placement if hint else None).solve()
    if expected is None:
        assert hint is None
        assert sol.status == "INFEASIBLE"
        return
    assert sol.status == "OPTIMAL"
    ev = evaluate(inst, sol.placement)
    assert ev.feasible, ev.violations
    got = (ev.cost_uph, ev.latency_us) if objective == "cost" else (ev.latency_us, ev.cost_uph)
    assert got == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=apps())
def test_hint_of_a_feasible_plan_is_complete_and_feasible(data):
    """Every baseline the evaluator calls feasible becomes a hint that sets every variable and
    satisfies every constraint of the model (checked by fixing the variables to it)."""
    try:
        inst, _, _ = instance_of(data)
    except InputError:
        return
    for b in baselines(inst):
        placement_solver = PlacementSolver(inst, SolverConfig(workers=1), hint=b.evaluation.placement)
        hint = placement_solver.model.proto.solution_hint
        if not b.evaluation.feasible:
            continue
        assert sorted(hint.vars) == list(range(len(placement_solver.model.proto.variables)))
        for i, v in zip(hint.vars, hint.values):
            placement_solver.model.add(placement_solver.model.get_int_var_from_proto_index(i) == v)
        placement_solver.model.minimize(placement_solver.cost)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        assert solver.solve(placement_solver.model) == cp_model.OPTIMAL
        assert round(solver.objective_value) == b.evaluation.cost_uph
