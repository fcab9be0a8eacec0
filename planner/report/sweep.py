"""`planner sweep APP --set KEY=V1,V2,...`: solve once per value of one app.yaml parameter and
show how the optimal placement, latency and cost move (the classic: a link's bandwidth, and
where the split between edge and cloud moves)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from planner.errors import InputError
from planner.solver.cpsat import SolverConfig


class SweepPoint(BaseModel):
    value: str
    status: str
    placement: dict[str, str]
    latency_ms: float | None
    cost_per_hour: float | None
    moved: list[str]  # models whose site differs from the previous feasible value's


class Sweep(BaseModel):
    app: str
    key: str
    fixed: list[str]  # the other --set overrides, applied to every run
    points: list[SweepPoint]


def split_values(raw: str) -> list[str]:
    """`10,50,[a,b]` -> ['10', '50', '[a,b]']: commas inside [] or {} belong to the value."""
    values, depth, cur = [], 0, ""
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            values.append(cur.strip())
            cur = ""
        else:
            cur += ch
    values.append(cur.strip())
    return values


def parse_sweep(sets: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """The one --set with several values is swept; the others are fixed for every run."""
    swept, fixed = [], []
    for s in sets:
        key, sep, raw = s.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE or KEY=V1,V2,..., got {s!r}")
        values = split_values(raw)
        (swept if len(values) > 1 else fixed).append((key.strip(), values, s))
    if len(swept) != 1:
        which = "none has" if not swept else f"{len(swept)} have ({', '.join(k for k, _, _ in swept)})"
        raise InputError(f"sweep needs exactly one --set KEY=V1,V2,... with several values; {which}")
    key, values, _ = swept[0]
    if any(v == "" for v in values):
        raise InputError(f"--set {key}: empty value in {','.join(values)!r}")
    return key, values, [raw for _, _, raw in fixed]


def run_sweep(path: Path, key: str, values: list[str], fixed: list[str], config: SolverConfig) -> Sweep:
    from planner.pipeline import prepare, solve_prepared

    points: list[SweepPoint] = []
    app = ""
    previous: dict[str, str] | None = None
    for v in values:
        prep = prepare(path, overrides=[*fixed, f"{key}={v}"])
        app = prep.la.app.name
        plan = solve_prepared(prep, config)
        moved = []
        if plan.placement and previous is not None:
            moved = [m for m, s in plan.placement.items() if previous.get(m) != s]
        points.append(SweepPoint(value=v, status=plan.status, placement=dict(plan.placement),
                                 latency_ms=plan.latency_ms, cost_per_hour=plan.cost_per_hour, moved=moved))
        if plan.placement:
            previous = plan.placement
    return Sweep(app=app, key=key, fixed=list(fixed), points=points)


def _numeric(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def markdown(sw: Sweep) -> str:
    models = list(dict.fromkeys(m for p in sw.points for m in p.placement))
    lines = [f"# Sweep of `{sw.key}`: {sw.app}", ""]
    if sw.fixed:
        lines += ["Fixed for every run: " + ", ".join(f"`{f}`" for f in sw.fixed), ""]
    lines += ["![sweep](sweep.svg)", "",
              "| " + " | ".join([sw.key, "status", "latency ms", "cost $/h", *models, "moved"]) + " |",
              "|" + "|".join(["---:", "---", "---:", "---:", *["---"] * len(models), "---"]) + "|"]
    for p in sw.points:
        lat = "-" if p.latency_ms is None else f"{p.latency_ms:g}"
        cost = "-" if p.cost_per_hour is None else f"{p.cost_per_hour:.6f}"
        lines.append("| " + " | ".join([p.value, p.status, lat, cost, *[p.placement.get(m, "-") for m in models],
                                         ", ".join(p.moved)]) + " |")
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
