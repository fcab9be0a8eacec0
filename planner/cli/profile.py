"""planner profile: every (model, site) profiled with TVM (cached), printed as a table."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from planner.cli.common import AppPath, CacheDir, SetOption, err, out, user_errors
from planner.errors import InputError


@user_errors
def profile(
    path: AppPath,
    as_json: Annotated[bool, typer.Option("--json", help="print the ProfileTable as JSON")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="ignore the cache: compile and measure again")] = False,
    tune_trials: Annotated[int, typer.Option("--tune-trials", help="MetaSchedule trials per model on the host "
                                             "(database kept in the tuning directory: README, Tuning)")] = 0,
    cache_dir: CacheDir = None,
    overrides: SetOption = None,
) -> None:
    """Profile every model on every site it may run on: measured (this host), rpc (a device
    through TVM's RPC tracker), estimated (roofline-scaled) or given."""
    from planner.model.open_app import open_app
    from planner.profiling.app_profiles import profile_app

    if tune_trials < 0:
        raise InputError(f"--tune-trials must be >= 0, got {tune_trials}")
    checked = open_app(path, overrides or ())
    table = profile_app(checked, refresh=refresh, tune_trials=tune_trials, cache_dir=cache_dir,
                        progress=None if not as_json else False).table
    if as_json:
        sys.stdout.write(table.model_dump_json(indent=2) + "\n")
        return
    t = Table(title=f"profiles of {checked.app.name}")
    for col in ("node", "site", "target", "latency ms", "provenance", "tuning", "tvm_ms", "ort_ms", "memory MB"):
        t.add_column(col, no_wrap=True, justify="right" if "ms" in col or "MB" in col else "left")

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3g}" if x < 100 else f"{x:.0f}"

    for e in table.entries:
        t.add_row(e.node, e.site, e.target or "-", num(e.latency_ms), e.provenance, e.tuning or "-",
                  num(e.tvm_ms), num(e.ort_ms), num(e.memory_mb))
    # piped or captured output gets the full table rather than truncated cells
    console = out if out.is_terminal else Console(width=max(out.width, 160), soft_wrap=True)
    console.print(t)
    for x in table.excluded:
        out.print(f"excluded: {x.node} on {x.site}: {x.reason}", highlight=False)
    for w in table.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    out.print("tvm_ms / ort_ms: this host, TVM and ONNX Runtime on the same input; estimated = the roofline "
              "time on the target over its calibrated efficiency, the note names the calibration and its expected "
              "error (README, Profiling; `--json` has every note).", highlight=False)
