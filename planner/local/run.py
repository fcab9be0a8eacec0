"""Run a whole ensemble in one process: every ONNX model compiled by TVM for this host (or run
by ONNX Runtime, the reference), every python step as is, through the site runtime's executor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from planner.app.targets import get_target
from planner.bundle.wiring import wire
from planner.errors import InputError, PlannerError
from planner.model.checked_app import CheckedApp
from planner.model.open_app import open_app
from planner.profiling.app_profiles import AppProfiles, profile_app, reference_signatures
from planner.profiling.artifacts import compiled_library
from planner_runtime.bundle_format import Bundle, RuntimeSettings, SiteEndpoint

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def load_inputs(items: Sequence[str]) -> dict[str, tuple[str, Path]]:
    """`SOURCE=FILE` or `SOURCE.TENSOR=FILE` -> {name: (option text, file)}."""
    out: dict[str, tuple[str, Path]] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--input {item!r}: expected SOURCE=FILE")
        path = Path(file)
        if not path.is_file():
            raise InputError(f"--input {item}: file not found: {path}")
        out[name] = (item, path)
    return out


def _read(option: str, path: Path, tensor) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            from PIL import Image

            with Image.open(path) as img:
                array = np.asarray(img.convert("RGB"))
        else:
            raise InputError(f"--input {option}: unsupported file type {path.suffix!r} (.npy or an image)")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"--input {option}: cannot read {path}: {exc}") from None
    if list(array.shape) != list(tensor.shape) or str(array.dtype) != tensor.dtype:
        raise InputError(f"--input {option}: {path} holds {array.dtype}{list(array.shape)}, the ensemble input "
                         f"'{tensor.name}' is {tensor.dtype}{list(tensor.shape)}")
    return array


def match_inputs(given: dict[str, tuple[str, Path]], graph) -> dict[str, np.ndarray]:
    """The user's names (source, source.tensor or the input key) -> ensemble inputs."""
    by_name = {}
    for t in graph.inputs:
        by_name[t.key] = t
        by_name[f"{t.owner}.{t.tensor.name}"] = t
        if sum(1 for u in graph.inputs if u.owner == t.owner) == 1:
            by_name[t.owner] = t
    arrays: dict[str, np.ndarray] = {}
    for name, (option, path) in given.items():
        if name not in by_name:
            raise InputError(f"--input {option}: unknown input '{name}'; inputs: "
                             f"{', '.join(f'{t.owner}.{t.tensor.name}' for t in graph.inputs)}")
        t = by_name[name]
        arrays[t.key] = _read(option, path, t.tensor)
    missing = [f"{t.owner}.{t.tensor.name} ({t.tensor.dtype}{t.tensor.shape})" for t in graph.inputs
               if t.key not in arrays]
    if missing:
        raise InputError(f"missing --input for {', '.join(missing)}")
    return arrays


def host_profiles(checked: CheckedApp, refresh: bool = False) -> AppProfiles:
    """Profiles with every site on this machine: the signatures the executor needs, and each
    model compiled for the host once (its executable kept for the local bundle), not for the
    sites' targets."""
    host = get_target("host")
    sites = {name: replace(site, target=host, target_name=host.name, rpc=None)
             for name, site in checked.sites.items()}
    return profile_app(checked.with_sites(sites), refresh=refresh)


def local_bundle(checked: CheckedApp, profiles: AppProfiles, engine: str, progress: Callable[[str], None]) -> Bundle:
    """The ensemble as one bundle whose every node runs here; artifacts are absolute paths."""
    here = "local"
    sources, sinks, nodes, flows = wire(checked, profiles.table, {m: here for m in checked.app.models})
    host = get_target("host")
    for name, spec in nodes.items():
        node = checked.app.models[name]
        if node.python:
            step = node.python_step
            update = {"artifact": str(checked.resolve(step.file)), "function": step.function}
        elif engine == "onnxruntime":
            update = {"kind": "onnx", "artifact": str(checked.resolve(node.onnx))}
        else:
            progress(f"compiling {name} for this host")
            lib, _ = compiled_library(checked.resolve(node.onnx), node.input_shapes, host, profiles.executables)
            update = {"artifact": str(lib), "compiled_for": "host"}
        nodes[name] = spec.model_copy(update=update)
    for spec in [*sources.values(), *sinks.values()]:
        spec.site = here
    return Bundle(app=checked.app.name, site=here,
                  sites={here: SiteEndpoint(address="in-process", tier="edge", target="host")},
                  sources=sources, sinks=sinks, nodes=nodes, flows=flows,
                  runtime=RuntimeSettings(max_message_bytes=1 << 30, default_deadline_ms=60000))


def run_app(path: Path, given: dict[str, tuple[str, Path]], *, engine: str = "tvm", overrides: Sequence[str] = (),
            progress: Callable[[str], None] = lambda msg: None) -> dict[str, np.ndarray]:
    """The ensemble run once on these inputs; what reaches each sink, by its tensor's key."""
    from planner_runtime.executor import Executor, Graph, NodeError
    from planner_runtime.nodes import ArtifactError, load_runners

    checked = open_app(path, overrides)
    profiles = (AppProfiles(reference_signatures(checked)) if engine == "onnxruntime"
                else host_profiles(checked))
    bundle = local_bundle(checked, profiles, engine, progress)
    graph = Graph(bundle)
    arrays = match_inputs(given, graph)
    progress("loading")
    try:  # a python step that fails (or exits) as it is imported
        runners = load_runners(bundle, Path("/"))
    except ArtifactError as exc:
        raise PlannerError(f"{checked.path}: {exc}") from None
    executor = Executor(graph, runners)
    progress("running")
    try:
        return executor.run(arrays)
    except NodeError as exc:
        raise PlannerError(f"{checked.path}: {exc}") from None

