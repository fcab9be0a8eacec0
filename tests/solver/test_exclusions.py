"""PlacementSolver(excluded=...): the best plan that is neither an excluded plan nor its placement
and builds on no more replicas per site (what planner.plan.vetted asks for a plan the
simulation refused), against brute force over every plan."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings

from planner.solver.cpsat import PlacementSolver, SolverConfig
from planner.solver.evaluate import evaluate
from planner.solver.replicas import covered_by
from tests.appgen import apps
from tests.solver.plans import all_plans
from tests.solver.test_bruteforce import assert_enough_optima, planned, ranked


def rest(inst, refused):
    """Every feasible plan no refused plan covers: brute force's plans, and the refused placements
    and builds on every replica count up to max_replicas (more replicas than the queues use,
    which brute force leaves out as never cheaper, may be what is left)."""
    for ev in all_plans(inst):
        if ev.feasible and not any(covered_by(ev, r) for r in refused):
            yield ev
    for r in refused:
        sites = sorted(r.replicas)
        ranges = [range(r.replicas[s], inst.site(s).max_replicas + 1) for s in sites]
        for counts in itertools.product(*ranges):
            ev = evaluate(inst, r.placement, r.builds, dict(zip(sites, counts)))
            if ev.feasible and not any(covered_by(ev, q) for q in refused):
                yield ev


def test_the_solver_without_refused_plans_finds_the_best_of_the_rest():
    reached, second = [], []

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=apps())
    def example(data):
        inst = planned(data)
        config = SolverConfig(objective="cost", time_limit_s=20, workers=2)
        refused = []
        for _ in range(2):  # the optimum refused, then the next one too
            sol = PlacementSolver(inst, config, excluded=refused).solve()
            expected = min((ranked(ev, "cost") for ev in rest(inst, refused)), default=None)
            if expected is None:
                assert sol.status == "INFEASIBLE"
                break
            assert sol.status == "OPTIMAL"
            ev = sol.evaluate(inst)
            assert ev.feasible and not any(covered_by(ev, r) for r in refused)
            assert ranked(ev, "cost") == expected
            refused.append(ev)
        reached.append(len(refused) >= 1)  # the exclusion compared: a plan of the rest, or none either way
        second.append(len(refused) == 2)

    example()
    assert_enough_optima(reached, 60)
    # a plan left after the optimum is refused, and after the next one too: 36 of the 60 that
    # `make test` draws, 7-36 at --hypothesis-seed 1-40 (most generated apps are built around one
    # feasible witness); the floor fails if that stops
    assert sum(second) >= 5, sum(second)
