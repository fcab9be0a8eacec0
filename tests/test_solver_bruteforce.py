"""CP-SAT's optimum equals brute-force enumeration through the independent evaluator."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings

from planner.errors import InputError
from planner.evaluate import evaluate
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
