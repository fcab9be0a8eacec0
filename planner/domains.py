"""Where each node may run, before and after profiling."""

from __future__ import annotations

from planner.spec import App


def candidate_sites(app: App, model: str) -> list[str]:
    """`sites:` if given, else every site; a node with nothing to profile (no onnx, no
    python) can only use the sites it has given numbers for."""
    node = app.models[model]
    sites = list(node.sites) if node.sites else list(app.sites)
    if node.kind == "given":
        sites = [s for s in sites if s in node.profile]
    return sites
