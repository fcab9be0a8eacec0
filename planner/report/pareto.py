"""The exact latency-cost Pareto front by the epsilon-constraint method with CP-SAT.

Minimize cost (ties: lower latency) subject to latency <= eps; record the point; tighten eps
to one time unit (1 us, the solver's integer unit) below its latency; repeat until no
placement is feasible. With every solve OPTIMAL, each point is non-dominated and every
non-dominated (latency, cost) pair is found: cost rises strictly as eps falls, and a point
between two found ones would have been the optimum of the earlier solve.
"""

from __future__ import annotations

from pydantic import BaseModel

from planner.evaluate import evaluate
from planner.solver.cpsat import PlacementSolver, SolverConfig
from planner.solver.instance import Instance

MAX_POINTS = 500


class ParetoPoint(BaseModel):
    latency_ms: float
    cost_per_hour: float
    placement: dict[str, str]
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
        sol = PlacementSolver(with_slo(inst, eps), SolverConfig(objective="cost", time_limit_s=time_limit_s,
                                                               **extra)).solve()
        if sol.status == "INFEASIBLE":
            break
        if sol.status == "UNKNOWN":
            exact, note = False, f"a solve with latency <= {eps / 1000:g} ms found nothing within {time_limit_s:g} s"
            break
        ev = evaluate(inst, sol.placement)
        if sol.status != "OPTIMAL":
            exact, note = False, "some solves hit the time limit: their points are feasible, not proven optimal"
        points.append(ParetoPoint(latency_ms=ev.latency_us / 1000, cost_per_hour=ev.cost_uph / 1e6,
                                  placement=dict(sol.placement), status=sol.status))
        eps = ev.latency_us - 1  # one integer time unit below the point found
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


def placement_label(placement: dict[str, str], reference: dict[str, str] | None = None) -> str:
    """`det@phone, cls@mec`; with a reference, only what differs from it."""
    items = [(m, s) for m, s in placement.items() if reference is None or reference.get(m) != s]
    return ", ".join(f"{m}@{s}" for m, s in items) or "(same)"


def markdown(front: ParetoFront, chosen: dict[str, str] | None = None) -> str:
    lines = [f"# Latency-cost Pareto front: {front.app}", "",
             ("Exact: every point proven cheapest within its latency bound (epsilon-constraint sweep with CP-SAT)."
              if front.exact else f"Not proven exact: {front.note}."),
             f"SLO {front.slo_ms:g} ms." if front.slo_ms is not None else "No SLO.",
             "", "![Pareto front](pareto.svg)", "",
             "| # | latency ms | cost $/h | status | placement | chosen by solve |", "|---:|---:|---:|---|---|---|"]
    for i, p in enumerate(front.points, 1):
        mark = "yes" if chosen is not None and chosen == p.placement else ""
        lines.append(f"| {i} | {p.latency_ms:g} | {p.cost_per_hour:.6f} | {p.status} | "
                     f"{placement_label(p.placement)} | {mark} |")
    return "\n".join(lines) + "\n"


def plot(front: ParetoFront, png, svg, chosen: dict[str, str] | None = None) -> None:
    """Cost against latency, a step line through the front, each point numbered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sorted(front.points, key=lambda p: p.latency_ms)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    if pts:
        xs = [p.latency_ms for p in pts]
        ys = [p.cost_per_hour for p in pts]
        ax.step(xs, ys, where="post", color="#4e79a7", alpha=0.5, linewidth=1.2)
        ax.scatter(xs, ys, color="#4e79a7", zorder=3, label="Pareto-optimal plan")
        order = {id(p): i for i, p in enumerate(front.points, 1)}
        for p in pts:
            ax.annotate(str(order[id(p)]), (p.latency_ms, p.cost_per_hour), textcoords="offset points",
                        xytext=(5, 5), fontsize=9)
            if chosen is not None and p.placement == chosen:
                ax.scatter([p.latency_ms], [p.cost_per_hour], s=160, facecolors="none", edgecolors="#e15759",
                           linewidths=2, zorder=4, label="chosen by planner solve")
    if front.slo_ms is not None:
        ax.axvline(front.slo_ms, color="#d62728", linestyle="--", linewidth=1, label=f"SLO {front.slo_ms:g} ms")
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("cost ($/h)")
    ax.set_title(f"{front.app}: latency-cost Pareto front ({len(front.points)} points"
                 + ("" if front.exact else ", not proven exact") + ")")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, format="png")
    fig.savefig(svg, format="svg")
    plt.close(fig)
