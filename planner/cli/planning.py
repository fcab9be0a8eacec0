"""validate, solve, schema: the planning path."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli.common import AppPath, CacheDir, EngineOption, SetOption, err, out, solver_config, user_errors
from planner.errors import InfeasibleError, InputError, PlannerError


@user_errors
def validate(path: AppPath, overrides: SetOption = None) -> None:
    """Check an app.yaml: keys, types, names, graph, routes. Exit 2 on the first problem."""
    from planner.model.open_app import open_app

    checked = open_app(path, overrides or ())
    a = checked.app
    out.print(f"{path}: valid: {len(a.models)} models, {len(a.sites)} sites, {len(a.links)} links, "
              f"{len(a.flows)} flows, {checked.graph.count_paths()} source->sink paths", highlight=False)


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
    engine: EngineOption = "auto",
    cache_dir: CacheDir = None,
) -> None:
    """Solve the placement exactly and write OUT/plan.json, the site bundles and deploy manifests."""
    from planner.pipeline import app_source, prepare, solve_prepared, write_solution
    from planner.report.output_dir import check_output_dir
    from planner.report.terminal import print_plan

    if tune_trials < 0:
        raise InputError(f"--tune-trials must be >= 0, got {tune_trials}")
    if output is not None:  # before profiling and solving, which may take long (checked again when writing)
        check_output_dir(output, [path], replace=True)
    prepared = prepare(path, overrides=overrides or (), refresh=refresh, tune_trials=tune_trials, cache_dir=cache_dir,
                       engine=engine)
    config = solver_config(time_limit, workers, objective or prepared.checked.app.objective)
    plan = solve_prepared(prepared, config)
    plan.source = app_source(prepared, overrides or ())
    out_dir = output or Path("out") / plan.app
    if as_json:
        sys.stdout.write(plan.model_dump_json(indent=2) + "\n")
    else:
        print_plan(plan, out)
    with err.status("compiling site bundles") as status:
        written = write_solution(prepared, plan, out_dir, bundles=bundles, progress=lambda msg: status.update(msg))
    for line in [] if as_json and written.plan is not None else written.notes:  # a kept OUT is always said
        err.print(line, highlight=False)
    if not as_json and written.plan is not None:
        out.print(f"wrote {written.plan}", highlight=False)
    if plan.status == "INFEASIBLE":
        raise InfeasibleError("no placement meets the constraints", plan.explanation)
    if plan.status == "UNKNOWN":
        raise PlannerError(f"no plan found within --time-limit {time_limit:g} s; allow more time")


@user_errors
def schema() -> None:
    """Print the JSON Schema of app.yaml (committed as schema/app.schema.json)."""
    from planner.app.spec import app_json_schema

    sys.stdout.write(json.dumps(app_json_schema(), indent=2) + "\n")
