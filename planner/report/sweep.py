"""A sweep for people: its Markdown table and its plot (the sweep itself: planner.pipeline)."""

from __future__ import annotations

from planner.plan.sweep import Sweep


def _numeric(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def markdown(sw: Sweep) -> str:
    models = list(dict.fromkeys(m for p in sw.points for m in p.placement))
    lines = [f"# Sweep of `{sw.key}`: {sw.app}", "",
             "margin %: how much slower every model may run than its profile before the plan misses its SLO "
             "at its rates (plan.json's service_margin).", ""]
    if sw.fixed:
        lines += ["Fixed for every run: " + ", ".join(f"`{f}`" for f in sw.fixed), ""]
    lines += ["![sweep](sweep.svg)", "",
              "| " + " | ".join([sw.key, "status", "latency ms", "cost $/h", "margin %", *models, "replicas", "moved"])
              + " |",
              "|" + "|".join(["---:", "---", "---:", "---:", "---:", *["---"] * len(models), "---", "---"]) + "|"]
    for p in sw.points:
        lat = "-" if p.latency_ms is None else f"{p.latency_ms:g}"
        cost = "-" if p.cost_per_hour is None else f"{p.cost_per_hour:.6f}"
        replicas = ", ".join(f"{s} {n}" for s, n in p.replicas.items()) or "-"
        margin = "-" if p.margin_pct is None else f"{p.margin_pct:g}"
        lines.append("| " + " | ".join([p.value, p.status, lat, cost, margin, *[p.placement.get(m, "-") for m in models],
                                         replicas, ", ".join(p.moved)]) + " |")
    return "\n".join(lines) + "\n"


def plot(sw: Sweep, png, svg) -> None:
    """Latency and cost against the value, and a strip per model colored by its site."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from planner.report.svg import PALETTE

    values = [p.value for p in sw.points]
    nums = _numeric(values)
    xs = nums if nums is not None else list(range(len(values)))
    log = nums is not None and min(nums) > 0 and max(nums) / min(nums) >= 20
    models = list(dict.fromkeys(m for p in sw.points for m in p.placement))
    sites = list(dict.fromkeys(s for p in sw.points for s in p.placement.values()))
    color = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sites)}
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 7 + 0.3 * len(models)), dpi=110, sharex=True,
                                        gridspec_kw={"height_ratios": [2, 2, max(1.2, 0.35 * len(models))]})
    ok = [(x, p) for x, p in zip(xs, sw.points) if p.latency_ms is not None]
    ax1.plot([x for x, _ in ok], [p.latency_ms for _, p in ok], "o-", color="#4e79a7")
    ax1.set_ylabel("latency (ms)")
    ax2.plot([x for x, _ in ok], [p.cost_per_hour for _, p in ok], "o-", color="#f28e2b")
    ax2.set_ylabel("cost ($/h)")
    for x, p in zip(xs, sw.points):
        if p.latency_ms is None:
            for ax in (ax1, ax2):
                ax.axvline(x, color="#d62728", alpha=0.3, linewidth=6)
        if p.moved:
            for ax in (ax1, ax2):
                ax.axvline(x, color="#888", linestyle=":", linewidth=1)
    for i, m in enumerate(models):
        for x, p in zip(xs, sw.points):
            s = p.placement.get(m)
            ax3.scatter([x], [i], s=140, marker="s", color=color.get(s, "#ddd") if s else "#eee",
                        edgecolors="#333" if s else "#bbb", linewidths=0.5)
    ax3.set_yticks(range(len(models)), models)
    ax3.set_ylim(-0.7, len(models) - 0.3)
    ax3.set_ylabel("site")
    ax3.legend(handles=[Patch(color=c, label=s) for s, c in color.items()] + [Patch(color="#eee", label="infeasible")],
               loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(color) + 1, fontsize=9, frameon=False)
    if log:
        ax3.set_xscale("log")
    if nums is None:
        ax3.set_xticks(xs, values)
    else:
        ax3.set_xticks(xs, values)
        ax3.minorticks_off()
    ax3.set_xlabel(sw.key)
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    ax1.set_title(f"{sw.app}: sweep of {sw.key}")
    fig.tight_layout()
    fig.savefig(png, format="png")
    fig.savefig(svg, format="svg")
    plt.close(fig)
