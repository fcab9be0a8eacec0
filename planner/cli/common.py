"""What every command shares: the consoles, the options several commands take, and the one
wrapper that turns every error into one line and its documented exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from planner.errors import InfeasibleError, InputError, PlannerError


def _piped_width() -> int | None:
    """Output to a pipe or file (logs, CI, `make demo`) gets wide tables instead of rich's 80
    columns, which cut every cell to a few letters; a terminal or $COLUMNS decides otherwise."""
    return None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160


out = Console(soft_wrap=True, width=_piped_width())
err = Console(stderr=True, soft_wrap=True)

AppPath = Annotated[Path, typer.Argument(help="the application spec (app.yaml)", show_default=False)]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="override an app.yaml value for this run: KEY=VALUE, e.g. links.phone-mec.bandwidth_mbps=10"),
]
OutArg = Annotated[Path, typer.Argument(help="the output directory of `planner solve -o OUT`", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
TimeLimit = Annotated[float, typer.Option("--time-limit", help="seconds for each solve")]
Workers = Annotated[Optional[int], typer.Option(help="CP-SAT workers [default: min(8, cores)]")]
EngineOption = Annotated[str, typer.Option("--engine", help="tvm, onnxruntime or auto: which builds of the ONNX "
                                           "models the solver may use (auto: any verified one)")]
CacheDir = Annotated[Optional[Path], typer.Option("--cache-dir", help="profile cache [default: $PLANNER_CACHE_DIR "
                                                  "or ~/.cache/planner]")]


def user_errors(fn: Callable) -> Callable:
    """One clear line and the documented exit code for every error; never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InfeasibleError as exc:
            err.print(f"[red]infeasible:[/] {escape(str(exc))}", highlight=False)
            for line in exc.explanation:
                err.print(f"  - {line}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except PlannerError as exc:
            # escaped: a message quotes the user's keys and values, which rich would read as markup
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except Exception as exc:  # a bug: still one line, unless asked for the traceback
            if os.environ.get("PLANNER_DEBUG"):
                raise
            err.print(f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
                      "(PLANNER_DEBUG=1 shows the traceback)", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def solver_config(time_limit: float, workers: int | None, objective: str = "cost"):
    """The CP-SAT settings from the command line, checked."""
    from planner.solver.cpsat import SolverConfig  # OR-Tools loads only for the commands that solve

    if objective not in ("cost", "latency"):
        raise InputError(f"--objective must be cost or latency, got {objective!r}")
    if time_limit <= 0:
        raise InputError(f"--time-limit must be > 0, got {time_limit:g}")
    return SolverConfig(objective=objective, time_limit_s=time_limit, **({"workers": workers} if workers else {}))
