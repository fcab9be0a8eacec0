"""The one entry to a checked app: `open_app(path, overrides) -> CheckedApp`.

app.yaml is read and validated (planner.app), its names, sites and flows checked, its sites
resolved to hardware targets, then the ensemble graph and the link network are built and
checked. Each is built once here and handed on; every command starts from this.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from planner.app.checks import check_app
from planner.app.loader import load_app
from planner.model.checked_app import CheckedApp
from planner.model.graph import EnsembleGraph
from planner.model.graph_checks import check_graph, check_routes
from planner.model.network import Network


def open_app(path: str | Path, overrides: Sequence[str] = ()) -> CheckedApp:
    """app.yaml (with --set overrides) read, validated and checked; the first problem is an
    InputError naming the file, the key and the line."""
    loaded = load_app(path, overrides)
    sites = check_app(loaded)
    checked = CheckedApp(loaded=loaded, sites=sites, graph=EnsembleGraph(loaded.app), network=Network(loaded.app))
    check_graph(checked)
    check_routes(checked)
    return checked
