"""validate, solve, schema: the planning path."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli import AppPath, SetOption, app, err, out, user_errors
from planner.errors import InfeasibleError, InputError, PlannerError

@app.command()
@user_errors
def validate(path: AppPath, overrides: SetOption = None) -> None:
    """Check an app.yaml: keys, types, names, graph, routes. Exit 2 on the first problem."""
    from planner.checks import check_app
    from planner.loader import load_app
    from planner.sites import resolve_sites

    la = load_app(path, check=False, overrides=overrides or ())
    graph = check_app(la)
    resolve_sites(la)
    a = la.app
    out.print(f"{path}: valid: {len(a.models)} models, {len(a.sites)} sites, {len(a.links)} links, "
              f"{len(a.flows)} flows, {graph.count_paths()} source->sink paths", highlight=False)


@app.command()
@user_errors
def solve(
    path: AppPath,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="output dir [default: ./out/<app name>/]")] = None,
    objective: Annotated[Optional[str], typer.Option(help="cost or latency [default: app.yaml's objective]")] = None,
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds for the solver")] = 60.0,
    workers: Annotated[Optional[int], typer.Option(help="CP-SAT workers [default: min(8, cores)]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print plan.json instead of tables")] = False,
    overrides: SetOption = None,
    bundles: Annotated[bool, typer.Option("--bundles/--no-bundles",
                                          help="compile the per-site bundles and deploy manifests into OUT")] = True,
    refresh: Annotated[bool, typer.Option("--refresh", help="profile again instead of reading the cache")] = False,
    tune_trials: Annotated[int, typer.Option("--tune-trials", help="MetaSchedule trials per model on the host "
                                             "before profiling (as `planner profile --tune-trials`)")] = 0,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="profile cache [default: "
                                                      "$PLANNER_CACHE_DIR or profiles/cache/]")] = None,
) -> None:
    """Solve the placement exactly and write OUT/plan.json, the site bundles and deploy manifests."""
    from planner.profiling.cache import sha256_file
    from planner.outdir import staged_dir
    from planner.plan import AppSource
    from planner.report import write_reports
    from planner.pipeline import prepare, solve_prepared
    from planner.render import print_plan
    from planner.solver.cpsat import SolverConfig

    if tune_trials < 0:
        raise InputError(f"--tune-trials must be >= 0, got {tune_trials}")
    prep = prepare(path, overrides=overrides or (), refresh=refresh, tune_trials=tune_trials, cache_dir=cache_dir)
    chosen = objective or prep.la.app.objective
    if chosen not in ("cost", "latency"):
        raise InputError(f"--objective must be cost or latency, got {chosen!r}")
    if time_limit <= 0:
        raise InputError(f"--time-limit must be > 0, got {time_limit:g}")
    config = SolverConfig(objective=chosen, time_limit_s=time_limit, **({"workers": workers} if workers else {}))
    plan = solve_prepared(prep, config)
    plan.source = AppSource(file=str(prep.la.path.resolve()), sha256=sha256_file(prep.la.path),
                            overrides=list(overrides or ()))
    text = plan.model_dump_json(indent=2)
    out_dir = output or Path("out") / plan.app
    if as_json:
        sys.stdout.write(text + "\n")
    else:
        print_plan(plan, out)
    with staged_dir(out_dir) as stage:
        (stage / "plan.json").write_text(text + "\n", encoding="utf-8")
        write_reports(plan, stage)  # report.md, report.html and their SVGs (planner/report)
        written = write_bundles_if_runnable(prep, plan, stage, out_dir) if bundles else []
    for line in [] if as_json else written:
        err.print(line, highlight=False)
    if not as_json:
        out.print(f"wrote {out_dir / 'plan.json'}", highlight=False)
    if plan.status == "INFEASIBLE":
        raise InfeasibleError("no placement meets the constraints", plan.explanation)
    if plan.status == "UNKNOWN":
        raise PlannerError(f"no plan found within --time-limit {time_limit:g} s; allow more time")


def write_bundles_if_runnable(prep, plan, stage: Path, out_dir: Path) -> list[str]:
    """Bundles when the plan is feasible and every model can be compiled or run; else why not."""
    from planner.bundle.emit import write_bundles
    from planner.bundle.wiring import given_only

    if plan.status not in ("OPTIMAL", "FEASIBLE"):
        return []
    given = given_only(prep.la)
    if given:
        return [f"no bundles: {', '.join(given)} have only given profiles (no onnx/python to deploy)"]
    with err.status("compiling site bundles") as status:
        notes = write_bundles(prep, plan, stage, progress=lambda msg: status.update(msg))
    return notes + [f"wrote {out_dir / 'sites'}/ (site bundles) and {out_dir / 'deploy'}/ (manifests)"]


@app.command()
@user_errors
def schema() -> None:
    """Print the JSON Schema of app.yaml (committed as schema/app.schema.json)."""
    from planner.spec import App

    sys.stdout.write(json.dumps(app_schema(App), indent=2) + "\n")


def app_schema(model) -> dict:
    s = model.model_json_schema(by_alias=True)
    s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return s


