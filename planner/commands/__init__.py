"""CLI commands; importing this package registers them on planner.cli.app."""

from planner.commands import core  # noqa: F401
from planner.commands import targets  # noqa: F401
from planner.commands import run  # noqa: F401
from planner.commands import review  # noqa: F401
from planner.commands import profile  # noqa: F401
from planner.commands import runtime_cmds  # noqa: F401
from planner.commands import bench  # noqa: F401
