"""Run a whole ensemble in one process: every ONNX model compiled by TVM for this host (or run
by ONNX Runtime, the reference), every python step as is, through the site runtime's executor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from planner.errors import InputError, PlannerError

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


def host_profiles(la, refresh: bool = False):
    """Profiles with every site on this machine: the signatures the executor needs, and each
    model compiled for the host once (kept for `compiled_library`), not for the sites' targets."""
    from dataclasses import replace

    from planner.profile_app import profile_app
    from planner.sites import resolve_sites
    from planner.targets import get_target

    host = get_target("host")
    sites = {name: replace(site, target=host, target_name=host.name, rpc=None)
             for name, site in resolve_sites(la).items()}
    return profile_app(la, sites, refresh=refresh)


def reference_signatures(la):
    """Only the tensors (no TVM): ONNX signatures after shape folding, python steps run once."""
    from planner.profile_app import check_flows, model_error
    from planner.profiling.onnx_import import fold_static, io_signature, load_checked
    from planner.profiling.python_steps import load_function, profile_step
    from planner.profiling.table import ProfileTable

    table = ProfileTable()
    for name, node in la.app.models.items():
        try:
            if node.onnx:
                sig = io_signature(fold_static(load_checked(la.resolve(node.onnx)), node.input_shapes))
            else:
                file, function = node.python.rsplit(":", 1)
                sig = profile_step(load_function(la.resolve(file), function), node.input_specs, file).signature
        except InputError as exc:
            raise model_error(la, name, exc) from None
        table.signatures[name] = sig
    check_flows(la, table)
    return table


def local_bundle(la, profiles, engine: str, progress: Callable[[str], None]):
    """The ensemble as one bundle whose every node runs here; artifacts are absolute paths."""
    from planner.bundle.wiring import wire
    from planner.profiling.artifacts import compiled_library
    from planner.targets import get_target
    from runtime.bundle_format import Bundle, RuntimeSettings, SiteEndpoint

    here = "local"
    sources, sinks, nodes, flows = wire(la, profiles, {m: here for m in la.app.models})
    host = get_target("host")
    for name, spec in nodes.items():
        node = la.app.models[name]
        if node.python:
            file, function = node.python.rsplit(":", 1)
            update = {"artifact": str(la.resolve(file)), "function": function}
        elif engine == "onnxruntime":
            update = {"kind": "onnx", "artifact": str(la.resolve(node.onnx))}
        else:
            progress(f"compiling {name} for this host")
            lib, _ = compiled_library(la.resolve(node.onnx), node.input_shapes, host)
            update = {"artifact": str(lib), "compiled_for": "host"}
        nodes[name] = spec.model_copy(update=update)
    for spec in [*sources.values(), *sinks.values()]:
        spec.site = here
    return Bundle(app=la.app.name, site=here, sites={here: SiteEndpoint(address="in-process", tier="edge", target="host")},
                  sources=sources, sinks=sinks, nodes=nodes, flows=flows,
                  runtime=RuntimeSettings(max_message_bytes=1 << 30, default_deadline_ms=60000))


def run_app(path: Path, given: dict[str, tuple[str, Path]], *, engine: str = "tvm", overrides: Sequence[str] = (),
            progress: Callable[[str], None] = lambda msg: None) -> dict[str, np.ndarray]:
    from planner.checks import check_app
    from planner.loader import load_app
    from runtime.executor import Executor, Graph, NodeError
    from runtime.nodes import load_runners

    la = load_app(path, check=False, overrides=overrides)
    check_app(la)
    profiles = reference_signatures(la) if engine == "onnxruntime" else host_profiles(la)
    bundle = local_bundle(la, profiles, engine, progress)
    graph = Graph(bundle)
    arrays = match_inputs(given, graph)
    progress("loading")
    executor = Executor(graph, load_runners(bundle, Path("/")))
    progress("running")
    try:
        return executor.run(arrays)
    except NodeError as exc:
        raise PlannerError(f"{la.path}: {exc}") from None


def show(result: dict[str, np.ndarray], console) -> None:
    for name, value in result.items():
        if value.dtype == object:
            lines = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value.ravel()]
            console.print(f"[bold]{name}[/] (bytes[{value.size}]):", highlight=False)
            for line in lines:
                if line:
                    console.print(f"  {line}", highlight=False, markup=False)
        else:
            head = f"[bold]{name}[/] {value.dtype}{list(value.shape)}"
            if value.size <= 16:
                console.print(f"{head} = {np.array2string(value, precision=4)}", highlight=False)
            else:
                console.print(f"{head}: min {value.min():.4g}, max {value.max():.4g}, mean {value.mean():.4g}",
                              highlight=False)
