"""The profiling stage for a whole app: every (node, candidate site) gets numbers with their
provenance. Given numbers (`profile:` in app.yaml) win; ONNX models and python steps are
profiled (planner.profiling.engine), through the cache. TVM is imported only when something
is actually compiled."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import InputError
from planner.model.checked_app import CheckedApp
from planner.profiling.artifacts import Executables
from planner.profiling.flows import check_flows
from planner.profiling.table import Exclusion, NodeProfile, ProfileTable


@dataclass
class AppProfiles:
    """The stage's result: the numbers (`table`, what `planner profile --json` prints) and the
    executables compiled on the way, for the bundles to export (`executables`)."""

    table: ProfileTable
    executables: Executables = field(default_factory=dict)


def given_profiles(checked: CheckedApp) -> ProfileTable:
    table = ProfileTable()
    for name, node in checked.app.models.items():
        for site, entry in node.profile.items():
            if site in checked.app.candidate_sites(name):
                table.entries.append(NodeProfile(
                    node=name, site=site, target=checked.sites[site].target_name, latency_ms=entry.latency_ms,
                    memory_mb=entry.memory_mb, provenance="given",
                ))
    return table


ENGINES = ("auto", "tvm", "onnxruntime")


def profile_app(checked: CheckedApp, *, refresh: bool = False, tune_trials: int = 0, cache_dir: Path | None = None,
                progress: bool | None = None, tuning_root: Path | None = None, engine: str = "auto",
                threads: int | None = None, stats: Callable | None = None) -> AppProfiles:
    """Given profiles, plus measured/rpc/estimated ones for every build of every ONNX model and
    python step on each candidate site without a given number. `engine` other than auto leaves
    the solver only that engine's builds of ONNX models (the others are listed as excluded, with
    their numbers). `threads`: for the host measurements [default: the host's cores]. `stats`, when
    given, receives the run's cache and counters (how many compiles and measurements it did)."""
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    table = given_profiles(checked)
    app = checked.app
    todo = {m: [s for s in app.candidate_sites(m) if table.get(m, s) is None] for m in app.models}
    # signatures are needed for flow sizes even where every site has a given number
    needs_work = [m for m, node in app.models.items() if node.kind != "given"]
    if not needs_work:
        return AppProfiles(table)

    from planner.profiling.cache import ProfileCache
    from planner.profiling.engine import Profiler, Progress

    cache = ProfileCache(cache_dir, refresh=refresh)
    if progress is None:  # auto: bars when a person watches stderr
        progress = sys.stderr.isatty()
    with Progress(bool(progress)) as bars:
        profiler = Profiler(cache, bars, tuning_root=tuning_root, threads=threads)
        if tune_trials > 0:
            _tune(checked, profiler, tune_trials)
        for m in needs_work:
            node = app.models[m]
            node_sites = [checked.sites[s] for s in todo[m]]
            try:
                if node.kind == "onnx":
                    result = profiler.profile_onnx(m, checked.resolve(node.onnx), node.input_shapes, node_sites,
                                                   max_error=node.max_error)
                else:
                    step = node.python_step
                    result = profiler.profile_python(m, checked.resolve(step.file), step.function, node.input_specs,
                                                     node_sites)
            except InputError as exc:
                raise model_error(checked, m, exc) from None
            table.entries.extend(result.entries)
            table.excluded.extend(result.excluded)
            table.warnings.extend(result.warnings)
            if result.signature is not None:
                table.signatures[m] = result.signature
    if stats is not None:
        stats(cache, profiler.counters)
    if engine != "auto":
        keep_engine(table, engine)
    check_flows(checked, table)
    return AppProfiles(table, profiler.executables)


def keep_engine(table: ProfileTable, engine: str) -> None:
    """Only `engine`'s builds of ONNX models stay usable; python steps and given numbers are not
    builds of an engine and stay as they are."""
    kept = []
    for e in table.entries:
        if e.engine in ("tvm", "onnxruntime") and e.engine != engine:
            table.excluded.append(Exclusion(node=e.node, site=e.site, build=e.build, reason=f"--engine {engine}",
                                            profile=e))
        else:
            kept.append(e)
    table.entries = kept


def model_error(checked: CheckedApp, m: str, exc: InputError) -> InputError:
    node = checked.app.models[m]
    what = "onnx" if node.kind == "onnx" else "python"
    file = f" ({exc.file})" if exc.file else ""
    return checked.error(f"model '{m}'{file}: {exc.message}", ("models", m, what))


def _tune(checked: CheckedApp, profiler, trials: int) -> None:
    """MetaSchedule on the host for every ONNX model, `trials` trials each."""
    from planner.profiling.model_work import ModelWork
    from planner.profiling.tune import tune

    for m, node in checked.app.models.items():
        if node.kind != "onnx":
            continue
        try:
            mod = ModelWork(profiler, m, checked.resolve(node.onnx), node.input_shapes).module()
        except InputError as exc:
            raise model_error(checked, m, exc) from None
        directory, _, _ = profiler.tuning(profiler.host)
        with profiler.progress.step("compile", f"tune {m} on host ({trials} trials)"):
            tune(mod, profiler.host, directory, trials)
        profiler.counters.tunes += 1


def reference_signatures(checked: CheckedApp) -> ProfileTable:
    """Only the tensors (no TVM): ONNX signatures after shape folding, python steps run once."""
    from planner.profiling.onnx_import import fold_static, io_signature, load_checked
    from planner.profiling.python_steps import load_function, profile_step

    table = ProfileTable()
    for name, node in checked.app.models.items():
        try:
            if node.onnx:
                sig = io_signature(fold_static(load_checked(checked.resolve(node.onnx)), node.input_shapes))
            else:
                step = node.python_step
                fn = load_function(checked.resolve(step.file), step.function)
                sig = profile_step(fn, node.input_specs, step.file).signature
        except InputError as exc:
            raise model_error(checked, name, exc) from None
        table.signatures[name] = sig
    check_flows(checked, table)
    return table
