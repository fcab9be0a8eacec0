"""The expensive half of profiling one ONNX model, done lazily (only what the cache lacks):
fold and import it, compile it per target, run the fp32 reference, load, check and time each
build on this host, and compile the TVM build for each site."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from planner.app.sites import ResolvedSite
from planner.app.targets import Target
from planner.profiling import estimate
from planner.profiling.artifacts import artifact_key
from planner.profiling.builds import BuildKind, BuildUnavailable
from planner.profiling.compile import compile_analyzed
from planner.profiling.entries import HostBuildEntry, HostModelEntry, SiteModelEntry
from planner.profiling.errors import CompileError, ProfilingInputError
from planner.profiling.load import quietest
from planner.profiling.verify import max_rel_error

class ModelWork:
    """The expensive half for one ONNX model, done lazily: only what the cache lacks. `prof` is
    the run's planner.profiling.engine.Profiler (not imported here: it imports this module)."""

    def __init__(self, prof, node: str, path: Path, shapes: dict[str, list[int]]):
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
        if nonfinite or error == float("inf") or kind.times_as:  # times_as: its own time is not used
            return entry
        with prof.progress.step("measure", f"{self.node} {kind.name} on host"):
            prof.counters.measures += 1
            timing, load, entry.busy = quietest(runner.time, prof.cores, speed=prof.speed)
        entry.ms, entry.repeats_ms = timing.median_ms, timing.repeats_ms
        entry.load_per_core, entry.steal_pct, entry.others_pct = load.load_per_core, load.steal_pct, load.others_pct
        entry.slow_factor = load.slow_factor
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
