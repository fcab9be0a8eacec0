"""The exact latency-cost Pareto front by the epsilon-constraint method with CP-SAT.

Minimize cost (ties: lower latency) subject to latency <= eps; record the point; tighten eps
to one time unit (1 us, the solver's integer unit) below its latency; repeat until no
placement is feasible. With every solve OPTIMAL, each point is non-dominated and every
non-dominated (latency, cost) pair is found: cost rises strictly as eps falls, and a point
between two found ones would have been the optimum of the earlier solve.
"""

from __future__ import annotations

from pydantic import BaseModel

from planner.solver.cpsat import PlacementSolver, SolverConfig
from planner.solver.instance import Instance

MAX_POINTS = 500


class ParetoPoint(BaseModel):
    latency_ms: float
    cost_per_hour: float
    placement: dict[str, str]
    replicas: dict[str, int] = {}
    builds: dict[str, str] = {}
    status: str  # OPTIMAL: proven cheapest within this latency bound


class ParetoFront(BaseModel):
    app: str
    exact: bool  # every solve proven optimal and the sweep ran to infeasibility
    slo_ms: float | None
    cost_cap_per_hour: float | None
    points: list[ParetoPoint]  # fastest last: latency falls and cost rises along the list
    note: str | None = None


def with_slo(inst: Instance, slo_us: int | None) -> Instance:
    """The instance with another latency bound (the epsilon of the sweep)."""
    return inst.model_copy(update={"slo_us": slo_us})


def pareto_front(inst: Instance, app: str = "", time_limit_s: float = 30.0, workers: int | None = None,
                 max_points: int = MAX_POINTS) -> ParetoFront:
    extra = {"workers": workers} if workers else {}
    eps = inst.slo_us
    points: list[ParetoPoint] = []
    exact, note = True, None
    while len(points) < max_points:
        solution = PlacementSolver(with_slo(inst, eps), SolverConfig(objective="cost", time_limit_s=time_limit_s,
                                                               **extra)).solve()
        if solution.status == "INFEASIBLE":
            break
        if solution.status == "UNKNOWN":
            exact, note = False, f"a solve with latency <= {eps / 1000:g} ms found nothing within {time_limit_s:g} s"
            break
        evaluation = solution.evaluate(inst)
        if solution.status != "OPTIMAL":
            exact, note = False, "some solves hit the time limit: their points are feasible, not proven optimal"
        points.append(ParetoPoint(latency_ms=evaluation.latency_us / 1000, cost_per_hour=evaluation.cost_uph / 1e6,
                                  placement=dict(solution.placement), replicas=dict(evaluation.replicas),
                                  builds=dict(evaluation.builds), status=solution.status))
        eps = evaluation.latency_us - 1  # one integer time unit below the point found
        if eps < 0:
            break
    else:
        exact, note = False, f"stopped after {max_points} points"
    return ParetoFront(app=app, exact=exact, slo_ms=None if inst.slo_us is None else inst.slo_us / 1000,
                       cost_cap_per_hour=None if inst.cost_cap_uph is None else inst.cost_cap_uph / 1e6,
                       points=points, note=note)


def dominated(points: list[ParetoPoint]) -> list[int]:
    """Indexes of points some other point dominates (none, on a correct front)."""
    out = []
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            if i != j and q.latency_ms <= p.latency_ms and q.cost_per_hour <= p.cost_per_hour and (
                    q.latency_ms < p.latency_ms or q.cost_per_hour < p.cost_per_hour):
                out.append(i)
                break
    return out
