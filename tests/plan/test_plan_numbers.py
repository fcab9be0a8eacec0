"""plan.json's numbers are the README's formulas applied to the placement (checked here
independently, in floating point, from app.yaml alone)."""

from __future__ import annotations

import pytest
import yaml

from planner.pipeline import prepare, solve_prepared
from planner.solver.cpsat import SolverConfig
from tests import EXAMPLES
from tests.plan.readme_numbers import readme_numbers


@pytest.mark.parametrize("example", ["smart-camera", "voice-assistant"])
@pytest.mark.parametrize("objective", ["cost", "latency"])
def test_plan_numbers_follow_the_readme(example, objective):
    path = EXAMPLES / example / "app.yaml"
    app = yaml.safe_load(path.read_text())
    prepared = prepare(path)
    plan = solve_prepared(prepared, SolverConfig(objective=objective, time_limit_s=20))
    latency, cost = readme_numbers(app, plan.placement, {s: r.replicas for s, r in plan.sites.items()})
    assert plan.latency_ms == pytest.approx(latency, abs=0.01)
    assert plan.cost_per_hour == pytest.approx(cost, abs=1e-5)
    for b in plan.baselines:
        lat, c = readme_numbers(app, b.placement, b.replicas)
        assert b.latency_ms == pytest.approx(lat, abs=0.01)
        assert b.cost_per_hour == pytest.approx(c, abs=1e-5)
    # the longest listed path is the end-to-end latency
    assert max(p.latency_ms for p in plan.paths) == pytest.approx(plan.latency_ms, abs=1e-6)
