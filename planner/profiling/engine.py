"""Profile one node on its candidate sites: the per-node work of `planner profile`.

ONNX model: every build (planner.profiling.builds: TVM, ONNX Runtime, int8 with max_error) is
run once on this host, on the threads a deployment uses, checked against the fp32 reference
(planner.profiling.verify) and timed with the machine's load (planner.profiling.load). Per site:
  - `rpc`: the site has `rpc: {tracker, key}`: TVM compiled for its target, timed on the device;
  - `measured`: the site's target is this host: the host run of the build;
  - `estimated`: otherwise: the host run scaled by the roofline model (planner.profiling.estimate;
    TVM's build is compiled for the target first, and a compile failure excludes it there).
A build that fails verification is excluded where it was run and where an estimate would scale
it. Python steps run on the host; elsewhere they are estimated by the ratio of CPU peak compute.
Everything is cached (planner.profiling.cache), as the typed records of planner.profiling.entries;
what was compiled in this run is kept (Profiler.executables) for the bundles to export without
compiling again."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.app.sites import ResolvedSite
from planner.app.targets import Target, get_target
from planner.profiling import estimate
from planner.profiling.artifacts import Executables, artifact_key
from planner.profiling.cache import ProfileCache, make_key
from planner.profiling.compile import compile_analyzed
from planner.profiling.builds import BuildKind, BuildUnavailable, kinds_for
from planner.profiling.entries import HostBuildEntry, HostModelEntry, HostStepEntry, ScaleEntry, SiteModelEntry
from planner.profiling.errors import CompileError, ProfilingInputError
from planner.profiling.table import Exclusion, NodeProfile, NodeSignature
from planner.profiling.load import quietest
from planner.profiling.tune import tuning_digest, tuning_dir, tuning_state
from planner.profiling.verify import failure, max_rel_error
from planner_runtime.digest import sha256_file


@dataclass
class NodeResult:
    entries: list[NodeProfile] = field(default_factory=list)
    signature: NodeSignature | None = None
    excluded: list[Exclusion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Counters:
    """What a run did (a warm run does none of it)."""

    compiles: int = 0
    measures: int = 0
    tunes: int = 0


class Progress:
    """Rich progress bars for compile and measure, or nothing."""

    def __init__(self, enabled: bool):
        self._p = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RP, TextColumn, TimeElapsedColumn

            self._p = RP(TextColumn("{task.fields[what]:<8}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TextColumn("{task.description}"),
                         console=Console(stderr=True), transient=False)
            self._tasks = {w: self._p.add_task("", total=0, what=w) for w in ("compile", "measure")}

    def __enter__(self):
        if self._p:
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.__exit__(*exc)

    @contextlib.contextmanager
    def step(self, what: str, description: str):
        if not self._p:
            yield
            return
        task = self._tasks[what]
        total = self._p.tasks[task].total or 0
        self._p.update(task, total=total + 1, description=description)
        try:
            yield
        finally:
            self._p.advance(task)


def target_json(target: Target) -> dict:
    """Everything about a target that its numbers depend on: its TVM target and figures; for
    the detected host also its CPU (its `mcpu` is filled from this CPU at compile time). No
    TVM import here: a warm run must not pay for it."""
    if target.is_host:
        # the detected figures move from run to run (clock speed, a measured copy bandwidth):
        # key on the CPU model and core count instead, or no cache entry would ever be hit again
        return {"tvm": target.tvm_target, "name": target.name,
                "cpu": re.sub(r" @ [\d.]+ MHz", "", target.description)}
    return {"tvm": target.tvm_target, "peak_gflops": target.peak_gflops,
            "mem_bandwidth_gbs": target.mem_bandwidth_gbs, "name": target.name}


def _tvm_version() -> str:
    from importlib.metadata import version

    return version("apache-tvm")


class Profiler:
    """Shared state of one profiling run: cache, host target, tuning root, counters, and the
    executables compiled in it (by artifact key)."""

    def __init__(self, cache: ProfileCache, progress: Progress, tuning_root: Path | None = None,
                 host: Target | None = None, threads: int | None = None):
        self.cache = cache
        self.progress = progress
        self.tuning_root = tuning_root
        self.host = host or get_target("host")
        self.cores = self.host.tvm_target.get("num-cores") or os.cpu_count() or 1
        # every host measurement runs on the threads the deployed build uses: the host's cores
        self.threads = threads or self.cores
        self.counters = Counters()
        self.executables: Executables = {}
        self._tvm_version = None

    @property
    def tvm_version(self) -> str:
        if self._tvm_version is None:
            self._tvm_version = _tvm_version()
        return self._tvm_version

    def tuning(self, target: Target) -> tuple[Path, str, str]:
        d = tuning_dir(target, self.tuning_root)
        return d, tuning_state(d), tuning_digest(d)

    # ------------------------------------------------------------------ ONNX models

    def profile_onnx(self, node: str, path: Path, shapes: dict[str, list[int]],
                     sites: list[ResolvedSite], max_error: float | None = None) -> NodeResult:
        if not path.is_file():
            raise ProfilingInputError("ONNX file not found", file=str(path))
        base = {"onnx": sha256_file(path), "shapes": {k: list(v) for k, v in sorted(shapes.items())},
                "tvm": self.tvm_version}
        work = ModelWork(self, node, path, shapes)
        host_dir, host_state, host_digest = self.tuning(self.host)
        host_key = make_key(kind="onnx-host", **base, target=target_json(self.host), tuning=host_digest)
        host = self.cache.get(host_key, HostModelEntry)
        if host is None:
            host = work.host_entry(host_dir, host_state)
            self.cache.put(host_key, host)
        work.activation_bytes = host.activation_bytes or 0
        result = NodeResult(signature=host.signature)
        if host.warning:
            result.warnings.append(f"'{node}': {host.warning}")
        measured = {}
        for kind in dict.fromkeys(k for site in sites for k in kinds_for(site.target.is_gpu, max_error)):
            measured[kind.name] = self.host_build(work, kind, host_key, result)
        tvm_ms = measured.get("tvm/fp32", HostBuildEntry()).ms
        ort_ms = measured.get("onnxruntime/fp32", HostBuildEntry()).ms
        if max_error is not None and any(s.target.is_gpu for s in sites):
            result.warnings.append(f"'{node}': fp16 builds not profiled: no GPU is reachable from this host to "
                                   "measure and verify them")
        for site in sites:
            for kind in kinds_for(site.target.is_gpu, max_error):
                hb = measured[kind.name]
                if kind.engine == "tvm":
                    found = self.tvm_site(work, site, host, host_key, hb, result)
                else:
                    found = ort_site(site, hb, lambda t: self.scale(host_key, host, t))
                if isinstance(found, str):
                    profile = None
                    reason = found
                else:
                    profile = NodeProfile(node=node, site=site.name, engine=kind.engine, precision=kind.precision,
                                          target=site.target.name, tvm_ms=tvm_ms, ort_ms=ort_ms, **found)
                    reason = self.verdict(hb, kind, max_error, profile)
                if reason is None:
                    result.entries.append(profile)
                    continue
                result.excluded.append(Exclusion(node=node, site=site.name, build=kind.name, reason=reason,
                                                 profile=profile))
                result.warnings.append(f"'{node}' {kind.name} excluded from site {site.name} ({site.target.name}): "
                                       f"{reason}")
        return result

    def host_build(self, work: "ModelWork", kind: BuildKind, host_key: str, result: NodeResult) -> HostBuildEntry:
        """The build run and timed on this host (cached), on the threads a deployment uses."""
        key = make_key(kind="onnx-host-build", host=host_key, build=kind.name, version=kind.version(),
                       threads=self.threads)
        entry = self.cache.get(key, HostBuildEntry)
        if entry is None:
            entry = work.measure_build(kind, self.threads)
            self.cache.put(key, entry)
        if entry.busy:
            result.warnings.append(f"'{work.node}' {kind.name}: measured on a busy machine ({entry.busy}); its "
                                   "time may be too long (`planner profile --refresh` measures again)")
        return entry

    def tvm_site(self, work: "ModelWork", site: ResolvedSite, host: HostModelEntry, host_key: str,
                 hb: HostBuildEntry, result: NodeResult) -> dict | str:
        """The TVM build's numbers on a site (compiled for its target), or why it has none."""
        target = site.target
        t_dir, t_state, t_digest = self.tuning(target)
        rpc = site.rpc.model_dump() if site.rpc else None
        key = make_key(kind="onnx-site", host=host_key, target=target_json(target), tuning=t_digest, rpc=rpc)
        entry = self.cache.get(key, SiteModelEntry)
        if entry is None:
            entry = work.site_entry(site, host, t_dir, t_state)
            if not entry.retry_next_run:
                self.cache.put(key, entry)
        if entry.excluded is not None:
            return entry.excluded
        found = {"memory_mb": entry.memory_mb, "provenance": entry.provenance, "tuning": entry.tuning,
                 "note": entry.note}
        if entry.warning:
            result.warnings.append(f"'{work.node}' on {site.name}: {entry.warning}")
        if entry.provenance == "rpc":
            return {**found, "latency_ms": entry.latency_ms, "threads": target.tvm_target.get("num-cores")}
        if hb.ms is None:
            return unmeasured(hb)
        if entry.provenance == "measured":
            return {**found, **host_numbers(hb)}
        return {**found, "latency_ms": hb.ms * entry.scale, "threads": site_threads(target),
                "note": f"host TVM {hb.ms:.3g} ms x {entry.scale:.3g} ({entry.note}); unverified"}

    def scale(self, host_key: str, host: HostModelEntry, target: Target) -> ScaleEntry:
        """The host-to-target factor of an ONNX Runtime estimate (cached): the roofline over TVM's
        kernel analysis of the model (the same operators on the same tensors), else peak compute."""
        key = make_key(kind="onnx-scale", host=host_key, target=target_json(target))
        entry = self.cache.get(key, ScaleEntry)
        if entry is None:
            if host.kernels:
                entry = ScaleEntry(scale=estimate.scale_factor(host.kernels, self.host, target),
                                   how=f"roofline, {len(host.kernels)} kernels")
            else:
                entry = ScaleEntry(scale=self.host.peak_gflops / target.peak_gflops,
                                   how="peak compute ratio: no TVM kernel analysis")
            self.cache.put(key, entry)
        return entry

    def verdict(self, hb: HostBuildEntry, kind: BuildKind, max_error: float | None, profile: NodeProfile) -> str | None:
        """Why the build may not be used on this site (None: it may). A build whose host run failed
        verification gives no estimate either: the estimate would scale a wrong computation."""
        reason = failure(hb.max_rel_error, hb.nonfinite, max_error if kind.reduced else None)
        if profile.provenance == "measured":
            profile.verified = None if hb.max_rel_error is None and not hb.nonfinite else reason is None
            profile.max_rel_error = hb.max_rel_error
            return reason
        if reason is not None and profile.provenance == "estimated":
            return f"{reason} (on this host: the build this estimate scales)"
        return None

    # ------------------------------------------------------------------ python steps

    def profile_python(self, node: str, file: Path, function: str, inputs: list, sites: list[ResolvedSite]) \
            -> NodeResult:
        from planner.profiling.python_steps import load_function, profile_step

        if not file.is_file():
            raise ProfilingInputError("python step file not found", file=str(file))
        # a step runs with whatever threads its libraries take: at most the CPUs this process may use
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else self.cores
        key = make_key(kind="python-host", threads=threads, file=sha256_file(file), function=function,
                       inputs=[t.model_dump() for t in inputs], target=target_json(self.host))
        host = self.cache.get(key, HostStepEntry)
        if host is None:
            fn = load_function(file, function)
            with self.progress.step("measure", f"{node} (python) on host"):
                step, load, busy = quietest(lambda: profile_step(fn, inputs, str(file)), self.cores)
            self.counters.measures += 1
            host = HostStepEntry(ms=step.timing.median_ms, repeats_ms=step.timing.repeats_ms,
                                 signature=step.signature, memory_mb=step.memory_mb, threads=threads, busy=busy,
                                 load_per_core=load.load_per_core, steal_pct=load.steal_pct,
                                 others_pct=load.others_pct)
            self.cache.put(key, host)
        result = NodeResult(signature=host.signature)
        if host.busy:
            result.warnings.append(f"'{node}' (python): measured on a busy machine ({host.busy}); its time may be "
                                   "too long (`planner profile --refresh` measures again)")
        for site in sites:
            target = site.target
            measured = {}
            if target.is_host and site.rpc is None:
                latency, prov, note = host.ms, "measured", None
                measured = {"threads": host.threads, "load_per_core": host.load_per_core, "steal_pct": host.steal_pct}
            else:
                scale = estimate.cpu_scale(self.host, target)
                latency, prov = host.ms * scale, "estimated"
                note = f"host time x {scale:.3g} (CPU peak ratio)" + \
                    (" ; python steps are not run over TVM RPC" if site.rpc else "")
            result.entries.append(NodeProfile(
                node=node, site=site.name, engine="python", target=target.name, latency_ms=max(latency, 1e-3),
                memory_mb=host.memory_mb, provenance=prov, tuning=None, note=note, **measured,
            ))
        return result


class ModelWork:
    """The expensive half for one ONNX model, done lazily: only what the cache lacks."""

    def __init__(self, prof: Profiler, node: str, path: Path, shapes: dict[str, list[int]]):
        self.prof, self.node, self.path, self.shapes = prof, node, path, shapes
        self._folded = None
        self._mod = None
        self._inputs: list[np.ndarray] | None = None
        self._compiled: dict[str, Any] = {}
        self._reference: list[np.ndarray] | Exception | None = None
        self.compile_s: dict[str, float] = {}
        self.activation_bytes = 0  # of the host build's memory plan (ONNX Runtime builds count them too)

    def folded(self):
        if self._folded is None:
            from planner.profiling.onnx_import import fold_static, load_checked

            model = load_checked(self.path)
            try:
                self._folded = fold_static(model, self.shapes)
            except ProfilingInputError as exc:
                exc.file = exc.file or str(self.path)
                raise
        return self._folded

    def module(self):
        if self._mod is None:
            from planner.profiling.onnx_import import import_folded

            self._mod = import_folded(self.folded(), file=str(self.path))
        return self._mod

    def inputs(self) -> list[np.ndarray]:
        if self._inputs is None:
            from planner.profiling.measure import sample_inputs
            from planner.profiling.onnx_import import io_signature

            sig = io_signature(self.folded())
            self._inputs = list(sample_inputs(sig.inputs).values())
        return self._inputs

    def compiled(self, target: Target, t_dir: Path):
        name = target.name
        if name not in self._compiled:
            mod = self.module()
            try:
                with self.prof.progress.step("compile", f"{self.node} for {name}"):
                    self.prof.counters.compiles += 1
                    start = time.perf_counter()
                    self._compiled[name] = compile_analyzed(mod, target, t_dir)
                    self.compile_s[name] = time.perf_counter() - start
                key = artifact_key(self.path, self.shapes, target, t_dir)
                self.prof.executables[key] = self._compiled[name].executable
            except CompileError as exc:
                self._compiled[name] = exc
        value = self._compiled[name]
        if isinstance(value, CompileError):
            raise value
        return value

    def compiled_host(self):
        return self.compiled(self.prof.host, self.prof.tuning(self.prof.host)[0])

    def feed(self) -> dict[str, np.ndarray]:
        from planner.profiling.onnx_import import io_signature

        return dict(zip([t.name for t in io_signature(self.folded()).inputs], self.inputs()))

    def reference(self) -> list[np.ndarray] | None:
        """The fp32 ONNX Runtime outputs, graph run as written; None: ONNX Runtime cannot run it."""
        if self._reference is None:
            from planner.profiling.measure import ort_session

            try:
                self._reference = ort_session(self.path.read_bytes(), self.prof.threads, optimize=False) \
                    .run(None, self.feed())
            except Exception as exc:  # ORT may lack an operator TVM has: the builds stay unverified
                self._reference = exc
        return None if isinstance(self._reference, Exception) else self._reference

    def host_entry(self, host_dir: Path, host_state: str) -> HostModelEntry:
        """The tensors, and TVM's analysis of the host build (compiled here)."""
        from planner.profiling.onnx_import import io_signature

        entry = HostModelEntry(signature=io_signature(self.folded()), tuning=host_state)
        if self.reference() is None:
            entry.warning = f"ONNX Runtime cannot run it ({type(self._reference).__name__}): no fp32 reference, " \
                            "its builds are unverified"
        try:
            c = self.compiled(self.prof.host, host_dir)
        except CompileError as exc:
            entry.error = str(exc)
            entry.warning = f"does not compile for this host, so no TVM analysis to estimate from: {exc}"
            return entry
        entry.tuning = model_tuning(host_state, c)
        entry.compile_s = round(self.compile_s.get(self.prof.host.name, 0.0), 2)
        entry.kernels = list(c.kernels)
        entry.params_bytes, entry.activation_bytes = c.params_bytes, c.activation_bytes
        return entry

    def measure_build(self, kind: BuildKind, threads: int) -> HostBuildEntry:
        """Load the build, check its outputs against the reference, time it (unless its outputs
        cannot be right), with the machine's load; retried once on a busy machine (planner.profiling.load)."""
        prof = self.prof
        try:
            runner = kind.load(self, threads)
            outputs = [np.asarray(o) for o in runner.run()]
        except BuildUnavailable as exc:
            return HostBuildEntry(error=str(exc), threads=threads)
        except Exception as exc:
            return HostBuildEntry(error=f"it failed on the profiling inputs ({type(exc).__name__}: {str(exc)[:200]})",
                                  threads=threads)
        reference = self.reference()
        if reference is not None:
            error, nonfinite = max_rel_error(outputs, reference)
        else:
            error, nonfinite = None, not all(np.all(np.isfinite(o)) for o in outputs if o.dtype.kind == "f")
        entry = HostBuildEntry(threads=runner.threads, memory_mb=runner.memory_mb, max_rel_error=error,
                               nonfinite=nonfinite)
        if nonfinite or error == float("inf"):
            return entry
        with prof.progress.step("measure", f"{self.node} {kind.name} on host"):
            prof.counters.measures += 1
            timing, load, entry.busy = quietest(runner.time, prof.cores)
        entry.ms, entry.repeats_ms = timing.median_ms, timing.repeats_ms
        entry.load_per_core, entry.steal_pct, entry.others_pct = load.load_per_core, load.steal_pct, load.others_pct
        return entry

    def site_entry(self, site: ResolvedSite, host: HostModelEntry, t_dir: Path, t_state: str) -> SiteModelEntry:
        """The TVM build for the site's target: compiled; timed over RPC, or how the host time scales."""
        target = site.target
        try:
            c = self.compiled(target, t_dir)
        except CompileError as exc:
            return SiteModelEntry(excluded=f"TVM compile failed: {exc}")
        base = {"memory_mb": c.memory_mb, "tuning": model_tuning(t_state, c),
                "compile_s": round(self.compile_s.get(target.name, 0.0), 2)}
        warning = None
        if site.rpc is not None:
            from planner.profiling.rpc import RpcUnavailable, measure_rpc

            try:
                with self.prof.progress.step("measure", f"{self.node} on {site.name} over RPC"):
                    self.prof.counters.measures += 1
                    t = measure_rpc(c.executable, target, site.rpc.tracker, site.rpc.key, self.inputs())
                return SiteModelEntry(**base, latency_ms=t.median_ms, provenance="rpc",
                                      note=f"RPC {site.rpc.tracker} key {site.rpc.key}")
            except RpcUnavailable as exc:
                warning = f"RPC measurement failed, estimated instead: {exc}"
        if target.is_host and warning is None:
            if host.error is not None:
                return SiteModelEntry(excluded=f"no host measurement: {host.error}")
            return SiteModelEntry(**{**base, "tuning": host.tuning}, provenance="measured")
        if host.error is not None:
            return SiteModelEntry(excluded=f"nothing to estimate from (host compile failed: {host.error})")
        # all-core peaks: the default CPU schedule runs the big loop nests in parallel
        scale = estimate.scale_factor(host.kernels, self.prof.host, target)
        return SiteModelEntry(
            **{**base, "tuning": host.tuning}, scale=scale, provenance="estimated",
            note=f"roofline, {len(host.kernels)} kernels", warning=warning, retry_next_run=warning is not None)


def model_tuning(state: str, c) -> str:
    """`tuned:<K>/<N>`: the database had a record for K of this model's N kernels (the others keep
    the default schedule); `untuned` when it had none (a database tuned for other models)."""
    return f"tuned:{c.tuned_kernels}/{len(c.kernels)}" if state != "untuned" and c.tuned_kernels else "untuned"


def host_numbers(hb: HostBuildEntry) -> dict:
    """What a NodeProfile measured on this host takes from its host run."""
    return {"latency_ms": hb.ms, "threads": hb.threads, "load_per_core": hb.load_per_core,
            "steal_pct": hb.steal_pct}


def unmeasured(hb: HostBuildEntry) -> str:
    """Why a build has no host time: it cannot be built or run here, or its outputs failed."""
    return hb.error or failure(hb.max_rel_error, hb.nonfinite, None) or "it was not timed on this host"


def site_threads(target: Target) -> int | None:
    """The threads a deployment on the target uses: its cores (None on a GPU, whose kernels are
    not run on a CPU thread pool)."""
    return None if target.is_gpu else target.tvm_target.get("num-cores")


def ort_site(site: ResolvedSite, hb: HostBuildEntry, scale_to: Callable[[Target], ScaleEntry]) -> dict | str:
    """An ONNX Runtime build's numbers on a site, or why it has none: its host run where the
    site is this host, else the host time scaled (Profiler.scale). No ONNX Runtime build runs
    over TVM RPC or on a GPU here."""
    target = site.target
    if hb.ms is None:
        return unmeasured(hb)
    if target.is_host and site.rpc is None:
        return {**host_numbers(hb), "memory_mb": hb.memory_mb, "provenance": "measured"}
    s = scale_to(target)
    note = f"host ONNX Runtime {hb.ms:.3g} ms x {s.scale:.3g} ({s.how}); unverified"
    if target.is_gpu:
        note += "; CUDA execution provider: no GPU is reachable from this host to run it"
    if site.rpc is not None:
        note += "; ONNX Runtime builds are not run over TVM RPC"
    return {"latency_ms": hb.ms * s.scale, "memory_mb": hb.memory_mb, "provenance": "estimated",
            "threads": site_threads(target), "note": note}
