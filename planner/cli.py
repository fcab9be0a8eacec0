"""`planner`: validate, solve and explain placements of ML ensembles across edge and cloud."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from planner.errors import InfeasibleError, PlannerError

app = typer.Typer(
    name="planner",
    help="Place an ensemble of ML models across edge, base station and cloud: exactly, and explained.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


def user_errors(fn: Callable) -> Callable:
    """One clear line and the documented exit code for every error; never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InfeasibleError as exc:
            err.print(f"[red]infeasible:[/] {exc}", highlight=False)
            for line in exc.explanation:
                err.print(f"  - {line}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except PlannerError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except Exception as exc:  # a bug: still one line, unless asked for the traceback
            if os.environ.get("PLANNER_DEBUG"):
                raise
            err.print(f"[red]internal error:[/] {type(exc).__name__}: {exc} (PLANNER_DEBUG=1 shows the traceback)",
                      highlight=False)
            raise typer.Exit(1) from None

    return wrapper


# Each command lives in a module of planner.commands and registers itself on `app`.
from planner import commands  # noqa: E402,F401  (registers the commands)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
