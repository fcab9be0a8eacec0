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
    wait = f"wait p{plan.percentile:g} ms"
    for col in ("model", "site", "tier", "target", "build", "latency ms", wait, "busy", "memory MB", "rate rps",
                "provenance"):
        t.add_column(col, justify="right" if col.split()[-1] in {"ms", "MB", "rps", "busy"} else "left")
    for name, m in plan.models.items():
        prov = m.provenance + (f" ({m.tuning})" if m.tuning else "")
        t.add_row(name, m.site, m.tier, m.target, f"{m.engine}/{m.precision}", _ms(m.latency_ms), _ms(m.wait_ms),
                  f"{m.utilization:.0%}", f"{m.memory_mb:,.1f}", f"{m.rate_rps:g}", prov)
    return t


def sites_table(plan: Plan) -> Table:
    t = Table(title="sites", title_justify="left")
    for col in ("site", "models", "replicas", "load", "busy", "memory MB", "cost $/h"):
        t.add_column(col, justify="left" if col in {"site", "models"} else "right")
    for name, s in plan.sites.items():
        t.add_row(name, ", ".join(s.models), f"{s.replicas} / {s.max_replicas}", f"{s.load_replicas:.3f}",
                  f"{s.utilization:.0%}",
                  f"{s.memory_mb_used:,.1f} / {s.memory_mb:,.0f}", _usd(s.cost_per_hour))
    return t


def paths_table(plan: Plan) -> Table:
    listed = f"{len(plan.paths)} of {plan.paths_total}, the critical ones" if len(plan.paths) < plan.paths_total else ""
    t = Table(title=f"source -> sink paths {listed}".strip(), title_justify="left")
    for col in ("path", f"p{plan.percentile:g} ms", "of it queueing", "p50 ms", "SLO ms", "slack ms"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for p in plan.paths:
        nodes = " -> ".join(p.nodes) if len(p.nodes) <= 8 else " -> ".join(p.nodes[:3] + ["..."] + p.nodes[-3:])
        t.add_row(nodes, _ms(p.latency_ms), _ms(p.queueing_ms), _ms(p.p50_ms), _ms(p.slo_ms), _ms(p.slack_ms))
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
        lines.append(f"end-to-end p{plan.percentile:g} latency {plan.latency_ms:,.3f} ms under the planned load{slo}; "
                     f"cost ${plan.cost_per_hour:,.6f}/h{cap}")
    knee = knee_line(plan)
    if knee:
        lines.append(knee)
    margin = margin_line(plan)
    if margin:
        lines.append(margin)
    simulated = simulated_line(plan)
    if simulated:
        lines.append(simulated)
    if plan.cost is not None:
        lines.append(f"cost = compute ${plan.cost.compute_per_hour:,.6f}/h + egress ${plan.cost.egress_per_hour:,.6f}/h")
    s = plan.solver
    if s.primary is not None:
        p = s.primary
        gap = "-" if p.gap is None else f"{p.gap:.2%}"
        lines.append(f"solver: {s.status} in {s.wall_time_s:.2f} s ({s.workers} workers); {p.objective} "
                     f"{p.value if p.value is not None else '-'} bound {p.bound if p.bound is not None else '-'} gap {gap}")
    return lines


def knee_line(plan: Plan) -> str | None:
    """Where the plan's latency bends against its load (plan.load_curve)."""
    within = [p for p in plan.load_curve if p.within_knee]
    if not plan.load_curve:
        return None
    unstable = next((p for p in plan.load_curve if not p.stable), None)
    last = within[-1] if within else None
    text = (f"load: p{plan.percentile:g} stays within 1.5x of its value at light load up to "
            f"{last.rate_scale:g}x the planned rate ({last.rate_rps:g} rps)" if last else
            f"load: p{plan.percentile:g} is over 1.5x its light-load value even at {plan.load_curve[0].rate_scale:g}x "
            "the planned rate")
    if unstable is not None:
        text += f"; at {unstable.rate_scale:g}x ({unstable.rate_rps:g} rps) a queue no longer keeps up"
    return text


def margin_line(plan: Plan) -> str | None:
    """How much slower the models may run before the plan misses its SLO (plan.service_margin)."""
    m = plan.service_margin
    if m is None or not m.points:
        return None
    q = f"p{plan.percentile:g}"
    at = ", ".join(f"+{100 * (p.slower - 1):.0f} %: " + (f"{p.tail_ms:,.1f} ms" if p.stable else "unbounded")
                   for p in m.points)
    if m.slower_pct is None:
        text = f"margin: {q} with every model slower than its profile: {at}"
    elif m.slower_pct == 0:
        text = f"margin: none, {q} misses the SLO at the profiles' own times ({q} at {at})"
    else:
        text = (f"margin: the SLO holds with every model {'at least ' if m.at_least else 'up to '}"
                f"{m.slower_pct:g} % slower than its profile ({q} at {at})")
    s = m.at_stated_errors
    if s is not None:
        errors = ", ".join(f"{name} +{pct:g} %" for name, pct in s.errors_pct.items())
        text += (f"; at the estimates' stated errors ({errors}): {q} "
                 + (f"{s.tail_ms:,.1f} ms" if s.stable else "unbounded")
                 + ("" if s.within_slo is None else ", within the SLO" if s.within_slo else ", over the SLO"))
    if m.unknown_errors:
        text += f"; estimated with no stated error: {', '.join(m.unknown_errors)}"
    return text


def simulated_line(plan: Plan) -> str | None:
    """The plan simulated at its rate, each site's models sharing its cores (plan.simulated)."""
    s = plan.simulated
    if s is None:
        return None
    if s.status != "ok":
        return f"simulated: not simulated, {s.why}"
    busiest = max(s.cores_utilization, key=s.cores_utilization.get, default=None)
    cores = f"; busiest cores {busiest} {s.cores_utilization[busiest]:.0%}" if busiest else ""
    refused = [r for r in s.rounds if r.placement and not r.met]
    before = ""
    if refused and plan.simulated.tail_ms <= (plan.constraints.get("latency_ms") or float("inf")):
        before = (f"; {len(refused)} plan{'s' * (len(refused) != 1)} the objective prefers refused by it first (the first: "
                  f"p{plan.percentile:g} {refused[0].latency_ms:,.1f} ms by the model, {refused[0].simulated_ms:,.1f} "
                  "ms simulated)")
    return (f"simulated ({s.requests} requests, each site's models sharing its cores): p50 {s.p50_ms:,.1f} ms, "
            f"p{plan.percentile:g} {s.tail_ms:,.1f} ms{cores}{before}")


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
