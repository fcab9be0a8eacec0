"""Profile one node on its candidate sites: the per-node work of `planner profile`.

ONNX model, per site:
  - `rpc`: the site has `rpc: {tracker, key}`: compiled for its target, timed on the device;
  - `measured`: the site's target is this host: compiled for it, timed with the VM here;
  - `estimated`: otherwise: compiled for its target (a failure excludes the pair), and the
    host measurement scaled by the roofline model (planner.profiling.estimate).
The host numbers (TVM and ONNX Runtime, same inputs) are measured once per model and shown
beside every site's number. Python steps run on the host; elsewhere they are estimated by the
ratio of CPU peak compute. Everything is cached (planner.profiling.cache), as the typed records
of planner.profiling.entries; what was compiled in this run is kept (Profiler.executables) for
the bundles to export without compiling again."""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.app.sites import ResolvedSite
from planner.app.targets import Target, get_target
from planner.profiling import estimate
from planner.profiling.artifacts import Executables, artifact_key
from planner.profiling.cache import ProfileCache, make_key
from planner.profiling.calibrated import calibrated_entry
from planner.profiling.compile import compile_analyzed
from planner.profiling.entries import HostModelEntry, HostStepEntry, SiteModelEntry
from planner.profiling.errors import CompileError, ProfilingInputError
from planner.profiling.table import Exclusion, NodeProfile, NodeSignature
from planner.profiling.tune import tuning_digest, tuning_dir, tuning_state
from planner_runtime.digest import sha256_file

AGREEMENT_TOL = 1e-4  # TVM vs ONNX Runtime, max abs difference scaled by max(1, max |ORT|)


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
                 host: Target | None = None):
        self.cache = cache
        self.progress = progress
        self.tuning_root = tuning_root
        self.host = host or get_target("host")
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
                     sites: list[ResolvedSite]) -> NodeResult:
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
        result = NodeResult(signature=host.signature)
        if host.warning:
            result.warnings.append(f"'{node}': {host.warning}")
        for site in sites:
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
                result.excluded.append(Exclusion(node=node, site=site.name, reason=entry.excluded))
                result.warnings.append(f"'{node}' excluded from site {site.name} ({target.name}): {entry.excluded}")
                continue
            if entry.warning:
                result.warnings.append(f"'{node}' on {site.name}: {entry.warning}")
            if entry.provenance == "estimated":  # with this run's calibrations, not those of the cached run
                entry = calibrated_entry(entry, host, self.host, target)
            result.entries.append(NodeProfile(
                node=node, site=site.name, engine="tvm", target=target.name, latency_ms=entry.latency_ms,
                memory_mb=entry.memory_mb, provenance=entry.provenance, tuning=entry.tuning,
                tvm_ms=host.tvm_ms, ort_ms=host.ort_ms, note=entry.note, expected_error_pct=entry.expected_error_pct,
            ))
        return result

    # ------------------------------------------------------------------ python steps

    def profile_python(self, node: str, file: Path, function: str, inputs: list, sites: list[ResolvedSite]) \
            -> NodeResult:
        from planner.profiling.python_steps import load_function, profile_step

        if not file.is_file():
            raise ProfilingInputError("python step file not found", file=str(file))
        key = make_key(kind="python-host", file=sha256_file(file), function=function,
                       inputs=[t.model_dump() for t in inputs], target=target_json(self.host))
        host = self.cache.get(key, HostStepEntry)
        if host is None:
            fn = load_function(file, function)
            with self.progress.step("measure", f"{node} (python) on host"):
                step = profile_step(fn, inputs, str(file))
            self.counters.measures += 1
            host = HostStepEntry(ms=step.timing.median_ms, repeats_ms=step.timing.repeats_ms,
                                 signature=step.signature, memory_mb=step.memory_mb)
            self.cache.put(key, host)
        result = NodeResult(signature=host.signature)
        for site in sites:
            target = site.target
            if target.is_host and site.rpc is None:
                latency, prov, note = host.ms, "measured", None
            else:
                scale = estimate.cpu_scale(self.host, target)
                latency, prov = host.ms * scale, "estimated"
                note = f"host time x {scale:.3g} (CPU peak ratio)" + \
                    (" ; python steps are not run over TVM RPC" if site.rpc else "")
            result.entries.append(NodeProfile(
                node=node, site=site.name, engine="python", target=target.name, latency_ms=max(latency, 1e-3),
                memory_mb=host.memory_mb, provenance=prov, tuning=None, note=note,
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
        self.compile_s: dict[str, float] = {}

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

    def host_entry(self, host_dir: Path, host_state: str) -> HostModelEntry:
        from planner.profiling.measure import measure_ort, measure_tvm, ort_session, run_ort
        from planner.profiling.onnx_import import io_signature

        prof, host = self.prof, self.prof.host
        sig = io_signature(self.folded())
        entry = HostModelEntry(signature=sig, tuning=host_state)
        inputs = self.inputs()
        feed = dict(zip([t.name for t in sig.inputs], inputs))
        try:
            session = ort_session(self.path.read_bytes())
            with prof.progress.step("measure", f"{self.node} ONNX Runtime on host"):
                prof.counters.measures += 1
                entry.ort_ms = measure_ort(session, feed).median_ms
        except Exception as exc:  # the reference is optional: ORT may lack an operator TVM has
            session = None
            entry.warning = f"ONNX Runtime cannot run it ({type(exc).__name__}), no ort_ms"
        try:
            c = self.compiled(host, host_dir)
        except CompileError as exc:
            entry.error = str(exc)
            entry.warning = f"does not compile for this host, so no host measurement to estimate from: {exc}"
            return entry
        entry.tuning = model_tuning(host_state, c)
        with prof.progress.step("measure", f"{self.node} TVM on host"):
            prof.counters.measures += 1
            timing = measure_tvm(c.executable, inputs, keep_outputs=True)
            entry.tvm_ms = timing.median_ms
        # numerical agreement on the same input (TVM's outputs from the warm-up call)
        if session is not None:
            diff = max_rel_diff(timing.outputs, run_ort(session, feed))
            entry.max_rel_diff_vs_ort = diff
            if diff > AGREEMENT_TOL:
                entry.warning = f"TVM's output differs from ONNX Runtime's by {diff:.2e} (relative)"
        entry.compile_s = round(self.compile_s.get(host.name, 0.0), 2)
        entry.kernels = list(c.kernels)
        entry.params_bytes, entry.activation_bytes = c.params_bytes, c.activation_bytes
        return entry

    def site_entry(self, site: ResolvedSite, host: HostModelEntry, t_dir: Path, t_state: str) -> SiteModelEntry:
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
            if host.tvm_ms is None:
                return SiteModelEntry(excluded=f"no host measurement: {host.error}")
            return SiteModelEntry(**{**base, "tuning": host.tuning}, latency_ms=host.tvm_ms, provenance="measured")
        if host.tvm_ms is None:
            return SiteModelEntry(excluded=f"nothing to estimate from (host compile failed: {host.error})")
        # all-core peaks: the default CPU schedule runs the big loop nests in parallel
        scale = estimate.scale_factor(host.kernels, self.prof.host, target)
        return SiteModelEntry(
            **{**base, "tuning": host.tuning}, latency_ms=host.tvm_ms * scale, provenance="estimated",
            note=f"host TVM {host.tvm_ms:.3g} ms x {scale:.3g} (roofline, {len(host.kernels)} kernels)",
            warning=warning, retry_next_run=warning is not None)


def model_tuning(state: str, c) -> str:
    """`tuned:<K>/<N>`: the database had a record for K of this model's N kernels (the others keep
    the default schedule); `untuned` when it had none (a database tuned for other models)."""
    return f"tuned:{c.tuned_kernels}/{len(c.kernels)}" if state != "untuned" and c.tuned_kernels else "untuned"


def max_rel_diff(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """Largest |TVM - ORT| over all outputs, relative to max(1, the output's largest |value|)."""
    if len(got) != len(want):
        return float("inf")
    worst = 0.0
    for g, w in zip(got, want):
        if g.shape != w.shape:
            return float("inf")
        if g.size and g.dtype.kind in "fiub":
            d = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64))))
            worst = max(worst, d / max(1.0, float(np.max(np.abs(w)))))
    return worst

