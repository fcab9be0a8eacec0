"""The profiling stage for a whole app: every (node, candidate site) gets numbers with their
provenance. Given numbers (`profile:` in app.yaml) win; ONNX models and python steps are
profiled (planner.profiling.engine), through the cache. TVM is imported only when something
is actually compiled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from planner.domains import candidate_sites
from planner.errors import InputError
from planner.loader import LoadedApp
from planner.profiling.table import NodeProfile, NodeSignature, ProfileTable
from planner.sites import ResolvedSite
from planner.tensors import TensorSpec


def given_profiles(la: LoadedApp, sites: dict[str, ResolvedSite]) -> ProfileTable:
    table = ProfileTable()
    for name, node in la.app.models.items():
        for site, entry in node.profile.items():
            if site in candidate_sites(la.app, name):
                table.entries.append(NodeProfile(
                    node=name, site=site, target=sites[site].target_name, latency_ms=entry.latency_ms,
                    memory_mb=entry.memory_mb, provenance="given",
                ))
    return table


def profile_app(la: LoadedApp, sites: dict[str, ResolvedSite], *, refresh: bool = False, tune_trials: int = 0,
                cache_dir: Path | None = None, progress: bool | None = None, tuning_root: Path | None = None,
                stats: Callable | None = None) -> ProfileTable:
    """Given profiles, plus measured/rpc/estimated ones for every ONNX model and python step on
    each candidate site without a given number. `stats`, when given, receives the run's
    cache and counters (how many compiles and measurements it did)."""
    table = given_profiles(la, sites)
    app = la.app
    todo = {m: [s for s in candidate_sites(app, m) if table.get(m, s) is None] for m in app.models}
    # signatures are needed for flow sizes even where every site has a given number
    needs_work = [m for m, node in app.models.items() if node.kind != "given"]
    if not needs_work:
        return table

    from planner.profiling.cache import ProfileCache
    from planner.profiling.engine import Profiler, Progress

    cache = ProfileCache(cache_dir, refresh=refresh)
    if progress is None:  # auto: bars when a person watches stderr
        import sys

        progress = sys.stderr.isatty()
    with Progress(bool(progress)) as bars:
        prof = Profiler(cache, bars, tuning_root=tuning_root)
        if tune_trials > 0:
            _tune(la, prof, tune_trials)
        for m in needs_work:
            node = app.models[m]
            node_sites = [sites[s] for s in todo[m]]
            try:
                if node.kind == "onnx":
                    result = prof.profile_onnx(m, la.resolve(node.onnx), node.input_shapes, node_sites)
                else:
                    file, _, function = node.python.rpartition(":")
                    result = prof.profile_python(m, la.resolve(file), function, node.input_specs, node_sites)
            except InputError as exc:
                raise model_error(la, m, exc) from None
            table.entries.extend(result.entries)
            table.excluded.extend(result.excluded)
            table.warnings.extend(result.warnings)
            if result.signature is not None:
                table.signatures[m] = result.signature
    if stats is not None:
        stats(cache, prof.counters)
    check_flows(la, table)
    return table


def model_error(la: LoadedApp, m: str, exc: InputError) -> InputError:
    node = la.app.models[m]
    what = "onnx" if node.kind == "onnx" else "python"
    file = f" ({exc.file})" if exc.file else ""
    return la.error(f"model '{m}'{file}: {exc.message}", ("models", m, what))


def _tune(la: LoadedApp, prof, trials: int) -> None:
    """MetaSchedule on the host for every ONNX model, `trials` trials each."""
    from planner.profiling.engine import _ModelWork
    from planner.profiling.tune import tune

    for m, node in la.app.models.items():
        if node.kind != "onnx":
            continue
        try:
            mod = _ModelWork(prof, m, la.resolve(node.onnx), node.input_shapes).module()
        except InputError as exc:
            raise model_error(la, m, exc) from None
        d, _, _ = prof.tuning(prof.host)
        with prof.progress.step("compile", f"tune {m} on host ({trials} trials)"):
            tune(mod, prof.host, d, trials)
        prof.counters.tunes += 1


def _pick(tensors: list[TensorSpec], name: str | None) -> TensorSpec | None:
    if name is None:
        return tensors[0] if len(tensors) == 1 else None
    return next((t for t in tensors if t.name == name), None)


def check_flows(la: LoadedApp, table: ProfileTable) -> None:
    """Each flow between two nodes carries one tensor: the producer's output and the consumer's
    input must agree in shape and dtype. A BYTES tensor's size is not its shape: its flow needs
    an explicit `bytes:`."""
    app = la.app
    for i, flow in enumerate(app.flows):
        out = None
        if flow.from_ in app.models and flow.from_ in table.signatures:
            out = _pick(table.signatures[flow.from_].outputs, flow.output)
        inp = None
        if flow.to in app.models:
            sig: NodeSignature | None = table.signatures.get(flow.to)
            inp = _pick(sig.inputs if sig else app.models[flow.to].input_specs, flow.input)
        if out is not None and out.is_variable and flow.bytes is None:
            raise la.error(f"flow {flow.from_} -> {flow.to}: '{flow.from_}' output {out.name} is bytes "
                           "(variable size): give `bytes:` per request", ("flows", i))
        if out is not None and inp is not None and (out.shape != inp.shape or out.dtype != inp.dtype):
            raise la.error(f"flow {flow.from_} -> {flow.to}: '{flow.from_}' gives {out.describe()} but "
                           f"'{flow.to}' takes {inp.describe()}", ("flows", i))
