"""pareto, sweep, diff: reviewing a plan's trade-offs and its changes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from planner.cli.common import (AppPath, EngineOption, JsonOption, SetOption, TimeLimit, Workers, out, solver_config,
                                 user_errors)
from planner.errors import InfeasibleError, InputError


def _existing_plan(out_dir: Path):
    """OUT/plan.json from `planner solve`, if there is one this planner reads."""
    from planner.plan.load import load_plan

    if not (out_dir / "plan.json").is_file():
        return None
    try:
        return load_plan(out_dir / "plan.json")
    except InputError:
        return None


@user_errors
def pareto(
    path: AppPath,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="output dir [default: ./out/<app name>/]")] = None,
    as_json: JsonOption = False,
    time_limit: TimeLimit = 30.0,
    workers: Workers = None,
    overrides: SetOption = None,
) -> None:
    """The exact latency-cost Pareto front (epsilon-constraint sweep with CP-SAT): writes
    OUT/pareto.{png,svg,md,json} and links them from OUT/report.md when `solve` wrote one there."""
    from planner.pipeline import prepare
    from planner.report import pareto as pareto_report
    from planner.report import write_reports
    from planner.report.files import publish
    from planner.report.output_dir import check_output_dir
    from planner.solver.explain import explain_infeasible
    from planner.solver.pareto import pareto_front

    config = solver_config(time_limit, workers)
    if output is not None:  # before solving (checked again when writing)
        check_output_dir(output, [path], replace=False)
    prepared = prepare(path, overrides=overrides or ())
    front = pareto_front(prepared.instance, app=prepared.checked.app.name, time_limit_s=config.time_limit_s,
                         workers=config.workers)
    if not front.points:
        explanation = explain_infeasible(prepared.instance, time_limit_s=min(10.0, time_limit), workers=config.workers)
        raise InfeasibleError("no placement meets the constraints, so the front is empty", explanation.lines())
    out_dir = output or Path("out") / front.app
    plan = _existing_plan(out_dir)
    chosen = plan.placement if plan is not None and plan.app == front.app else None
    payload = {"points": [p.model_dump(include={"latency_ms", "cost_per_hour", "placement", "replicas"})
                          for p in front.points]}
    written = publish(out_dir, {
        "pareto.json": json.dumps({**front.model_dump(), **payload}, indent=2) + "\n",
        "pareto.md": pareto_report.markdown(front, chosen),
        "pareto.png": lambda p: pareto_report.plot(front, p, p.with_suffix(".tmp.svg"), chosen),
        "pareto.svg": lambda p: pareto_report.plot(front, p.with_suffix(".tmp.png"), p, chosen),
    }, prepared.checked.input_files())
    if chosen is not None:  # refresh the report so it links the front
        written += write_reports(plan, out_dir)
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    t = Table(title=f"{front.app}: latency-cost Pareto front ({'exact' if front.exact else 'not proven exact'})",
              title_justify="left")
    for col in ("#", "latency ms", "cost $/h", "placement", "replicas", ""):
        t.add_column(col, justify="right" if col in ("#", "latency ms", "cost $/h") else "left")
    for i, p in enumerate(front.points, 1):
        t.add_row(str(i), f"{p.latency_ms:,.3f}", f"{p.cost_per_hour:.6f}", pareto_report.placement_label(p.placement),
                  " ".join(f"{s}={n}" for s, n in p.replicas.items()), "<- plan.json" if chosen == p.placement else "")
    out.print(t)
    if front.note:
        out.print(f"[yellow]note:[/] {front.note}")
    out.print(f"wrote {', '.join(str(p) for p in written if p.name.startswith('pareto'))}", highlight=False)


@user_errors
def sweep(
    path: AppPath,
    overrides: Annotated[Optional[list[str]], typer.Option(
        "--set", help="the swept parameter KEY=V1,V2,... (e.g. links.phone-mec.bandwidth_mbps=5,20,100); "
                      "other --set KEY=VALUE hold for every run")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="output dir [default: ./out/<app name>-sweep/]")] = None,
    as_json: JsonOption = False,
    objective: Annotated[Optional[str], typer.Option(help="cost or latency [default: app.yaml's objective]")] = None,
    time_limit: TimeLimit = 30.0,
    workers: Workers = None,
    engine: EngineOption = "auto",
) -> None:
    """Solve once per value of one app.yaml parameter; table and plot (OUT/sweep.{png,svg,md,json})
    of how the placement, latency and cost move. Exit 0 when some value is feasible, 3 when none is."""
    from planner.app.loader import load_app
    from planner.app.overrides import parse_sweep
    from planner.pipeline import run_sweep
    from planner.report import sweep as sweep_report
    from planner.report.files import publish
    from planner.report.output_dir import check_output_dir

    key, values, fixed = parse_sweep(overrides or [])
    if output is not None:  # before the solves (checked again when writing)
        check_output_dir(output, [path], replace=False)
    # every value through the schema's checks first: a bad last value fails before any solve
    loaded = [load_app(path, overrides=[*fixed, f"{key}={value}"]) for value in values]
    chosen = objective or loaded[0].app.objective
    result = run_sweep(path, key, values, fixed, solver_config(time_limit, workers, chosen), engine=engine)
    out_dir = output or Path("out") / f"{result.app}-sweep"
    written = publish(out_dir, {
        "sweep.json": result.model_dump_json(indent=2) + "\n",
        "sweep.md": sweep_report.markdown(result),
        "sweep.png": lambda p: sweep_report.plot(result, p, p.with_suffix(".tmp.svg")),
        "sweep.svg": lambda p: sweep_report.plot(result, p.with_suffix(".tmp.png"), p),
    }, [path])
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        models = list(dict.fromkeys(m for p in result.points for m in p.placement))
        t = Table(title=f"{result.app}: sweep of {key}", title_justify="left")
        for col in ("value", "status", "latency ms", "cost $/h", "margin %", *models, "replicas", "moved"):
            t.add_column(col, justify="right" if col in ("value", "latency ms", "cost $/h", "margin %") else "left",
                         no_wrap=col == "status")  # a status cut short says nothing
        for p in result.points:
            t.add_row(p.value, p.status, "-" if p.latency_ms is None else f"{p.latency_ms:,.3f}",
                      "-" if p.cost_per_hour is None else f"{p.cost_per_hour:.6f}",
                      "-" if p.margin_pct is None else f"{p.margin_pct:g}",
                      *[p.placement.get(m, "-") for m in models],
                      " ".join(f"{s}={n}" for s, n in p.replicas.items()) or "-", ", ".join(p.moved))
        out.print(t)
        out.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False)
    if all(not p.placement for p in result.points):
        raise InfeasibleError(f"no value of {key} gives a feasible placement")


@user_errors
def diff(
    old: Annotated[Path, typer.Argument(help="the old plan.json (or its directory)", show_default=False)],
    new: Annotated[Path, typer.Argument(help="the new plan.json (or its directory)", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """What moved between two plans, latency change per path, cost change.
    Exit 0: nothing changed; 1: placement, status, latency or cost changed; 2: bad input."""
    from planner.plan.diff import diff_plans
    from planner.plan.load import load_plan
    from planner.report.diff import diff_lines

    d = diff_plans(load_plan(old), load_plan(new))
    if as_json:
        sys.stdout.write(d.model_dump_json(indent=2) + "\n")
    else:
        for line in diff_lines(d):
            out.print(line, highlight=False)
        changed_paths = [p for p in d.paths if p.delta_ms is None or abs(p.delta_ms) > 1e-9]
        if changed_paths:
            t = Table(title="latency per path", title_justify="left")
            for col in ("path", "old ms", "new ms", "change ms"):
                t.add_column(col, justify="left" if col == "path" else "right")
            for p in changed_paths:
                t.add_row(p.path, "-" if p.old_ms is None else f"{p.old_ms:,.3f}",
                          "-" if p.new_ms is None else f"{p.new_ms:,.3f}",
                          "-" if p.delta_ms is None else f"{p.delta_ms:+,.3f}")
            out.print(t)
    if d.changed:
        raise typer.Exit(1)
