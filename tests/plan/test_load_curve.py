"""The plan's latency against its load: at the planned rate it is the plan's own latency, it
never falls as the rate grows, and it stops where a queue can no longer keep up."""

from __future__ import annotations

import pytest

from planner.pipeline import prepare, solve_prepared
from planner.solver.cpsat import SolverConfig
from tests import CAMERA, EXAMPLES


@pytest.mark.parametrize("path", [CAMERA, EXAMPLES / "voice-assistant" / "app.yaml"])
def test_the_curve_passes_through_the_plan_and_rises_to_saturation(path):
    plan = solve_prepared(prepare(path), SolverConfig(time_limit_s=20, workers=2))
    curve = plan.load_curve
    planned = next(p for p in curve if p.rate_scale == 1.0)
    # the same terms the evaluator adds, each rounded to the microsecond there
    assert planned.tail_ms == pytest.approx(plan.latency_ms, abs=0.01 * len(plan.models))
    stable = [p for p in curve if p.stable]
    assert [p.tail_ms for p in stable] == sorted(p.tail_ms for p in stable)
    assert [p.p50_ms for p in stable] == sorted(p.p50_ms for p in stable)
    assert all(p.p50_ms <= p.tail_ms for p in stable)
    # past the last point a queue cannot keep up (at or above 100 %) or a site's cores are past
    # the last level of its wait table (95 %)
    if not curve[-1].stable:
        assert curve[-1].max_utilization > 0.95 and stable[-1].max_utilization < 1
    # the busiest queue at a scale is the planned one's times the scale (servers do not change)
    for p in stable:
        assert p.max_utilization == pytest.approx(planned.max_utilization * p.rate_scale, abs=1e-3)
    knee = [p.within_knee for p in stable]
    assert knee == sorted(knee, reverse=True) and knee[0]  # within the knee up to a rate, then beyond it
