"""CheckedApp: an app that passed every check, with its sites resolved and its graph and
network built once (planner.model.open_app makes it); what every later stage reads."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from planner.app.loader import LoadedApp
from planner.app.sites import ResolvedSite
from planner.app.spec import App, Link
from planner.errors import InputError, KeyPath
from planner.model.graph import EnsembleGraph
from planner.model.network import Network


@dataclass(frozen=True)
class CheckedApp:
    """An app that passed every check, with what the later stages read from it."""

    loaded: LoadedApp
    sites: dict[str, ResolvedSite]
    graph: EnsembleGraph
    network: Network

    @property
    def app(self) -> App:
        return self.loaded.app

    @property
    def path(self) -> Path:
        return self.loaded.path

    def error(self, message: str, key: KeyPath = ()) -> InputError:
        """An InputError at a key of app.yaml (its line, or the --set that set it)."""
        return self.loaded.error(message, key)

    def resolve(self, relative: str) -> Path:
        """A path written in app.yaml, relative to the file."""
        return self.loaded.resolve(relative)

    def input_files(self) -> list[Path]:
        """The files the app is made of: app.yaml, its ONNX models, python steps and their data
        files (an output directory must never hold them)."""
        files = [self.path]
        for node in self.app.models.values():
            named = [node.onnx] if node.onnx else [node.python_step.file, *node.files] if node.python else []
            files += [self.resolve(f) for f in named]
        return files

    def with_links(self, links: list[Link]) -> CheckedApp:
        """The same app over other links (the graph and the sites stay; the network is rebuilt)."""
        app = self.app.model_copy(update={"links": links})
        return replace(self, loaded=replace(self.loaded, app=app), network=Network(app))

    def with_sites(self, sites: dict[str, ResolvedSite]) -> CheckedApp:
        return replace(self, sites=sites)
