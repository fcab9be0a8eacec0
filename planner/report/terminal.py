"""The plan in the terminal: rich tables an architect reads at a glance."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from planner.plan.schema import Plan


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:,.4f}"


def placement_table(plan: Plan) -> Table:
    t = Table(title=f"{plan.app}: placement ({plan.status}, objective {plan.objective})", title_justify="left")
    for col in ("model", "site", "tier", "target", "latency ms", "memory MB", "rate rps", "provenance"):
        t.add_column(col, justify="right" if col.split()[-1] in {"ms", "MB", "rps"} else "left")
    for name, m in plan.models.items():
        prov = m.provenance + (f" ({m.tuning})" if m.tuning else "")
        t.add_row(name, m.site, m.tier, m.target, _ms(m.latency_ms), f"{m.memory_mb:,.1f}", f"{m.rate_rps:g}", prov)
    return t


def sites_table(plan: Plan) -> Table:
    t = Table(title="sites", title_justify="left")
    for col in ("site", "models", "replicas", "load", "memory MB", "cost $/h"):
        t.add_column(col, justify="left" if col in {"site", "models"} else "right")
    for name, s in plan.sites.items():
        t.add_row(name, ", ".join(s.models), f"{s.replicas} / {s.max_replicas}", f"{s.load_replicas:.3f}",
                  f"{s.memory_mb_used:,.1f} / {s.memory_mb:,.0f}", _usd(s.cost_per_hour))
    return t


def paths_table(plan: Plan) -> Table:
    listed = f"{len(plan.paths)} of {plan.paths_total}, the critical ones" if len(plan.paths) < plan.paths_total else ""
    t = Table(title=f"source -> sink paths {listed}".strip(), title_justify="left")
    for col in ("path", "latency ms", "SLO ms", "slack ms"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for p in plan.paths:
        nodes = " -> ".join(p.nodes) if len(p.nodes) <= 8 else " -> ".join(p.nodes[:3] + ["..."] + p.nodes[-3:])
        t.add_row(nodes, _ms(p.latency_ms), _ms(p.slo_ms), _ms(p.slack_ms))
    return t


def baselines_table(plan: Plan) -> Table:
    t = Table(title="optimum vs baselines", title_justify="left")
    for col in ("plan", "latency ms", "cost $/h", "feasible"):
        t.add_column(col, justify="left" if col == "plan" else "right")
    t.add_row(f"[bold]optimum ({plan.status.lower()})", _ms(plan.latency_ms), _usd(plan.cost_per_hour), "yes")
    for b in plan.baselines:
        why = "yes" if b.feasible else "no: " + "; ".join(b.violations)
        t.add_row(b.name, _ms(b.latency_ms), _usd(b.cost_per_hour), why)
    return t


def summary_lines(plan: Plan) -> list[str]:
    lines = []
    c = plan.constraints
    if plan.latency_ms is not None:
        slo = f" (SLO {c['latency_ms']:g} ms)" if c.get("latency_ms") is not None else ""
        cap = f" (cap ${c['cost_per_hour']:g}/h)" if c.get("cost_per_hour") is not None else ""
        lines.append(f"end-to-end latency {plan.latency_ms:,.3f} ms{slo}; cost ${plan.cost_per_hour:,.6f}/h{cap}")
    if plan.cost is not None:
        lines.append(f"cost = compute ${plan.cost.compute_per_hour:,.6f}/h + egress ${plan.cost.egress_per_hour:,.6f}/h")
    s = plan.solver
    if s.primary is not None:
        p = s.primary
        gap = "-" if p.gap is None else f"{p.gap:.2%}"
        lines.append(f"solver: {s.status} in {s.wall_time_s:.2f} s ({s.workers} workers); {p.objective} "
                     f"{p.value if p.value is not None else '-'} bound {p.bound if p.bound is not None else '-'} gap {gap}")
    return lines


def print_plan(plan: Plan, console: Console | None = None) -> None:
    console = console or Console()
    if plan.models:
        console.print(placement_table(plan))
        console.print(sites_table(plan))
        console.print(paths_table(plan))
    console.print(baselines_table(plan))
    for line in summary_lines(plan):
        console.print(line)
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {w}")
