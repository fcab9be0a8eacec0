"""The Pareto front for people: its Markdown table and its plot (planner.solver.pareto finds it)."""

from __future__ import annotations

from planner.solver.pareto import ParetoFront


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
