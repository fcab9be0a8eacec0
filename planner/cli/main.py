"""`planner`: validate, solve and explain placements of ML ensembles across edge and cloud.

The Typer app and its commands, in the order `planner --help` lists them; each command lives
in a module of this package and calls one library function."""

from __future__ import annotations

import typer

from planner.cli import bench, calibrate, planning, profile, review, run, targets, up

app = typer.Typer(
    name="planner",
    help="Place an ensemble of ML models across edge, base station and cloud: exactly, and explained.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command in (planning.validate, planning.solve, planning.schema, targets.targets, run.run,
                review.pareto, review.sweep, review.diff, profile.profile, calibrate.calibrate, up.up, bench.bench):
    app.command()(command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
