"""Infeasibility explanations checked against brute force: the conflict set is infeasible
and minimal, and each relaxation is the smallest that makes the app feasible."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings

from planner.errors import InputError
from planner.solver import constraints
from planner.solver.constraints import Family
from planner.solver.explain import explain_infeasible
from tests.appgen import apps, instance_of
from tests.solver.plans import all_plans


def all_evaluations(inst):
    return all_plans(inst, unpinned=True)


def quantity(evaluation, key):
    """What the constraint `key` bounds, in the evaluation, in the unit of the relaxation."""
    return {
        Family.SLO: lambda: evaluation.latency_us / 1000,
        Family.COST_CAP: lambda: evaluation.cost_uph / 1e6,
        Family.MEMORY: lambda: evaluation.memory_kb.get(key.subject, 0) / 1000,
        Family.REPLICAS: lambda: evaluation.replicas.get(key.subject, 0),
    }[key.family]()


EXAMPLES = 80
# at least this many examples must be infeasible and routable somewhere, and so reach the
# comparison of the conflict set and relaxations with brute force (`broken` apps: built around a
# witness, one of whose bounds is then a unit too tight)
MIN_EXPLAINED = 60


def test_explanation_matches_brute_force():
    explained = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=apps(max_models=5, max_sites=3, broken=True))
    def example(data):
        try:
            inst, _, _ = instance_of(data)
        except InputError:
            assume(False)
        evs = [ev for ev in all_evaluations(inst)]
        routable = [ev for ev in evs if constraints.ROUTE not in ev.violated]
        assume(all(ev.violated for ev in evs))  # feasible: nothing to explain
        explanation = explain_infeasible(inst, time_limit_s=20, workers=2)
        if not routable:
            assert explanation.conflicts == [] and explanation.notes
            return
        check_explanation(explanation, routable)
        explained.append(explanation)

    example()
    assert len(explained) >= MIN_EXPLAINED, f"only {len(explained)} of {EXAMPLES} examples had a conflict to explain"


def check_explanation(explanation, routable) -> None:
    core = {c.constraint for c in explanation.conflicts}
    assert core, explanation
    # infeasible: every placement breaks one of the conflict set
    assert all(ev.violated & core for ev in routable)
    # minimal: without any one member, the rest can all hold
    for k in core:
        assert any(not (ev.violated & (core - {k})) for ev in routable), (k, core)
    # smallest relaxation of each, with every other constraint kept
    for c in explanation.conflicts:
        ok = [ev for ev in routable if ev.violated <= {c.constraint}]
        if not ok:
            assert c.relaxation is None
            continue
        assert c.proven
        if c.constraint.family is Family.PIN:
            assert any(ev.placement[c.constraint.subject] == c.site for ev in ok)
        else:
            assert c.bound == pytest.approx(min(quantity(ev, c.constraint) for ev in ok))
