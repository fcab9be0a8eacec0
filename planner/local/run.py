"""Run a whole ensemble in one process: every ONNX model compiled by TVM for this host, or run by
ONNX Runtime (the reference), or each as the build a plan chose (`--plan OUT`), every python step as
is, through the site runtime's executor."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from planner.app.targets import get_target
from planner.bundle.builds import chosen_build, ort_node
from planner.bundle.wiring import wire
from planner.errors import InputError, PlannerError
from planner.model.checked_app import CheckedApp
from planner.model.open_app import open_app
from planner.plan.load import load_plan
from planner.profiling.app_profiles import AppProfiles, profile_app, reference_signatures
from planner.profiling.artifacts import compiled_library
from planner.profiling.table import ProfileTable
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


def on_host(checked: CheckedApp) -> CheckedApp:
    """The same app with every site on this machine (its target the host, no RPC)."""
    host = get_target("host")
    return checked.with_sites({name: replace(site, target=host, target_name=host.name, rpc=None)
                               for name, site in checked.sites.items()})


def host_profiles(checked: CheckedApp, refresh: bool = False) -> AppProfiles:
    """Profiles with every site on this machine: the signatures the executor needs, and each
    model compiled for the host once (its executable kept for the local bundle), not for the
    sites' targets."""
    return profile_app(on_host(checked), refresh=refresh)


def model_builds(checked: CheckedApp, engine: str | None, plan_path: Path | None) -> dict[str, str]:
    """Each ONNX model's build: `engine`'s fp32 build for every one when given, else the build the
    plan at `plan_path` chose (what its bundles ship), else TVM's."""
    onnx = [m for m, node in checked.app.models.items() if node.onnx]
    if engine is not None or plan_path is None:
        return {m: f"{engine or 'tvm'}/fp32" for m in onnx}
    plan = load_plan(plan_path)
    missing = [m for m in onnx if m not in plan.placement]
    if plan.app != checked.app.name or missing:
        why = f"no placement for {', '.join(missing)}" if missing else f"it is the plan of app '{plan.app}'"
        raise InputError(f"--plan {plan_path}: not a plan of {checked.path} ({why}); re-run `planner solve`")
    return {m: chosen_build(plan, m) for m in onnx}


def local_bundle(checked: CheckedApp, profiles: AppProfiles, builds: dict[str, str], progress: Callable[[str], None],
                 workdir: Path) -> Bundle:
    """The ensemble as one bundle whose every node runs here; artifacts are absolute paths (quantized
    files under `workdir`)."""
    here = "local"
    sources, sinks, nodes, flows = wire(checked, profiles.table, {m: here for m in checked.app.models})
    host = get_target("host")
    for name, spec in nodes.items():
        node = checked.app.models[name]
        if node.python:
            step = node.python_step
            update = {"artifact": str(checked.resolve(step.file)), "function": step.function}
        elif builds[name].startswith("onnxruntime/"):  # on ONNX Runtime's default threads: this machine's cores
            update = ort_node(checked, ProfileTable(), name, here, builds[name], False, workdir)
            update["artifact"] = str(workdir / update["artifact"])
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


def run_app(path: Path, given: dict[str, tuple[str, Path]], *, engine: str | None = None, plan: Path | None = None,
            overrides: Sequence[str] = (), progress: Callable[[str], None] = lambda msg: None) -> dict[str, np.ndarray]:
    """The ensemble run once on these inputs; what reaches each sink, by its tensor's key. Each ONNX
    model runs on `engine` (tvm, onnxruntime), else as the plan at `plan` chose, else on TVM."""
    from planner_runtime.executor import Executor, Graph, NodeError
    from planner_runtime.nodes import ArtifactError, load_runners

    checked = open_app(path, overrides)
    builds = model_builds(checked, engine, plan)
    # nothing to compile: the tensors alone (a python-only app keeps the host profiles' cache, as before)
    only_ort = engine == "onnxruntime" or (builds and all(b.startswith("onnxruntime/") for b in builds.values()))
    profiles = AppProfiles(reference_signatures(checked)) if only_ort else host_profiles(checked)
    with tempfile.TemporaryDirectory(prefix="planner-run-") as workdir:
        bundle = local_bundle(checked, profiles, builds, progress, Path(workdir))
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
