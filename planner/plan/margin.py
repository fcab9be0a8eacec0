"""How much slower the models may run before the plan misses its SLO at its planned rate.

A plan's latency under load rests on its profiles, and near the knee a small error in a service
time is a large error in the wait: a queue at 85 % busy waits ~2.8x as long once its service is
10 % slower (M/M/1's mean wait, rho / (1 - rho) services: 5.7 at 85 %, 14.4 at 93.5 %, of services
10 % longer).
Measured, a machine's speed moves that much (benchmarks/results/machine_drift.md: a 2-vCPU VM ran
the same build 2x slower in spells of a minute), and an estimate's stated error is often wider
(profiles/calibration). So beside the plan's percentile the plan states what it becomes with
every model's service time SLOWER x its profile, with the placement, builds, replicas and links
unchanged (a slower machine everywhere: the same latency model, planner.plan.load_curve's), and
the margin: the largest such slowdown, up to MAX_SLOWER, under which the percentile still meets
the SLO (bisection: the percentile only grows as the models slow down). And where profiles state
their error (estimates for hardware not measured here: their calibration's expected error), the
plan with each of those models that much slower and the others as profiled: the slow end of what
the profiles themselves claim."""

from __future__ import annotations

from planner.model.bisection import turning_point
from planner.plan.load_curve import PlanQueues
from planner.plan.schema import ServiceMargin, SlowerPoint, StatedErrorsPoint

SLOWER = (1.1, 1.25, 1.5)
MAX_SLOWER = 4.0  # a margin beyond this is reported as "at least"
RESOLUTION = 0.005  # the margin's bisection stops within half a percent


def service_margin(plan: PlanQueues, slo_ms: float | None, stated_pct: dict[str, float] | None = None,
                   unknown: list[str] | None = None) -> ServiceMargin:
    """The plan's percentile with every model SLOWER x its profile, its margin against `slo_ms`, and
    the percentile with each model of `stated_pct` (its stated error, %) that much slower; `unknown`:
    the estimated models whose error nobody states (said, not guessed)."""

    def within(p) -> bool | None:
        return None if slo_ms is None else p.stable and p.tail_ms <= slo_ms

    def figures(slower) -> dict:
        p = plan.point(slower=slower)
        return {"max_utilization": p.max_utilization, "stable": p.stable, "p50_ms": p.p50_ms, "tail_ms": p.tail_ms,
                "within_slo": within(p)}

    points = [SlowerPoint(slower=slower, **figures(slower)) for slower in SLOWER]
    stated = {m: pct for m, pct in (stated_pct or {}).items() if pct > 0}
    at_stated = (StatedErrorsPoint(errors_pct=stated, **figures({m: 1 + pct / 100 for m, pct in stated.items()}))
                 if stated else None)
    slower_pct, at_least = (None, False) if slo_ms is None else _margin_pct(lambda k: within(plan.point(slower=k)))
    return ServiceMargin(slower_pct=slower_pct, at_least=at_least, points=points, at_stated_errors=at_stated,
                         unknown_errors=sorted(unknown or []))


def _margin_pct(meets) -> tuple[float, bool]:
    """The largest slowdown (%) under which `meets`, and whether even MAX_SLOWER does."""
    if not meets(1.0):
        return 0.0, False
    if meets(MAX_SLOWER):
        return round(100 * (MAX_SLOWER - 1), 1), True
    lo, _ = turning_point(meets, 1.0, MAX_SLOWER, RESOLUTION)
    return round(100 * (lo - 1), 1), False
