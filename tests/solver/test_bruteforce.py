"""CP-SAT's optimum equals brute-force enumeration through the independent evaluator."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from ortools.sat.python import cp_model

from planner.errors import InputError
from planner.solver.baselines import baselines, best_feasible
from planner.solver.cpsat import PlacementSolver, SolverConfig
from tests.appgen import apps, instance_of
from tests.solver.plans import all_plans


def brute_force(inst, objective: str):
    best = None
    for ev in all_plans(inst):
        if not ev.feasible:
            continue
        key = (ev.cost_uph, ev.latency_us) if objective == "cost" else (ev.latency_us, ev.cost_uph)
        best = key if best is None or key < best else best
    return best


def ranked(ev, objective: str) -> tuple[int, int]:
    return (ev.cost_uph, ev.latency_us) if objective == "cost" else (ev.latency_us, ev.cost_uph)


def planned(data: dict):
    """The app's Instance. An app the planner refuses as input (a flow no link can carry, a model
    no site can hold) is no example for these tests: hypothesis draws another."""
    try:
        return instance_of(data)[0]
    except InputError:
        assume(False)


# Of each property test's examples, at least this share must be feasible and so reach the
# comparison of optima (the generator builds most apps around a feasible witness); the others
# check that both sides call the app infeasible. The share is ~80 % of 60 examples; drawn at
# random (a developer's run: new examples each time) it was 72 % at --hypothesis-seed=3, under
# 0.75, so the floor is 0.6: about four standard deviations of 60 draws below the typical share,
# and still failing when the generator stops building feasible apps.
MIN_OPTIMA_SHARE = 0.6


def assert_enough_optima(optima: list[bool], examples: int) -> None:
    assert sum(optima) >= MIN_OPTIMA_SHARE * examples, f"only {sum(optima)} of {examples} examples reached an optimum"


def check_against_brute_force(inst, objective: str, hint: dict[str, str] | None = None) -> bool:
    """CP-SAT's optimum (from the hint, when given) equals brute force's; True when there is one."""
    expected = brute_force(inst, objective)
    sol = PlacementSolver(inst, SolverConfig(objective=objective, time_limit_s=20, workers=2), hint=hint).solve()
    if expected is None:
        assert sol.status == "INFEASIBLE"
        return False
    assert sol.status == "OPTIMAL"
    ev = sol.evaluate(inst)
    assert ev.feasible, ev.violations
    assert ranked(ev, objective) == expected
    return True


@pytest.mark.parametrize("objective", ["cost", "latency"])
def test_cpsat_matches_brute_force(objective):
    optima = []

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=apps())
    def example(data):
        optima.append(check_against_brute_force(planned(data), objective))

    example()
    assert_enough_optima(optima, 100)


@pytest.mark.parametrize("objective", ["cost", "latency"])
def test_cpsat_with_the_cli_hint_matches_brute_force(objective):
    """The CLI's path: the best feasible baseline as a complete hint (every variable)."""
    optima = []

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=apps())
    def example(data):
        inst = planned(data)
        hint = best_feasible(baselines(inst), objective)
        found = check_against_brute_force(inst, objective, hint=hint.evaluation if hint else None)
        assert found or hint is None
        optima.append(found)

    example()
    assert_enough_optima(optima, 60)


def assert_hint_is_complete_and_feasible(inst, evaluation) -> None:
    """A feasible plan as the solver's hint sets every variable of the model, and the model with
    every variable fixed to it is solved, at the plan's cost."""
    placement_solver = PlacementSolver(inst, SolverConfig(workers=1), hint=evaluation)
    hint = placement_solver.model.proto.solution_hint
    assert sorted(hint.vars) == list(range(len(placement_solver.model.proto.variables)))
    for i, v in zip(hint.vars, hint.values):
        placement_solver.model.add(placement_solver.model.get_int_var_from_proto_index(i) == v)
    placement_solver.model.minimize(placement_solver.cost)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(placement_solver.model) == cp_model.OPTIMAL
    assert round(solver.objective_value) == evaluation.cost_uph


def feasible_baselines_as_hints(inst) -> list[str]:
    """Every baseline of `inst` the evaluator calls feasible, checked as a hint
    (assert_hint_is_complete_and_feasible); their names."""
    names = []
    for b in baselines(inst):
        if b.evaluation.feasible:
            assert_hint_is_complete_and_feasible(inst, b.evaluation)
            names.append(b.name)
    return names


def test_hint_of_a_feasible_plan_is_complete_and_feasible():
    """Every baseline the evaluator calls feasible becomes a hint that sets every variable and
    satisfies every constraint of the model (checked by fixing the variables to it)."""
    hints = []

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=apps())
    def example(data):
        hints.extend(feasible_baselines_as_hints(planned(data)))

    example()
    assert len(hints) >= 40, f"only {len(hints)} feasible baselines were checked as hints"
