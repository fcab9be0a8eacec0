"""Profile one node on its candidate sites: the per-node work of `planner profile`.

ONNX model: every build (planner.profiling.builds: TVM, ONNX Runtime, int8 on CPU targets and
fp16 on GPU targets with max_error) is run once on this host, on the threads a deployment uses,
checked against the fp32 reference (planner.profiling.verify) and timed with the machine's load
(planner.profiling.load). Per site:
  - `rpc`: the site has `rpc: {tracker, key}`: TVM compiled for its target, timed on the device;
  - `measured`: the site's target is this host: the host run of the build;
  - `estimated`: otherwise: the host run scaled by the roofline model (planner.profiling.estimate;
    TVM's build is compiled for the target first, and a compile failure excludes it there).
A build that fails verification is excluded where it was run and where an estimate would scale
it; one recorded as failing on real hardware of a site's kind (planner.profiling.hardware_checks:
rec's TVM build on CUDA) is excluded on such sites, whatever its estimate. Python steps run on the host; elsewhere they are estimated by the ratio of CPU peak compute.
Everything is cached (planner.profiling.cache), as the typed records of planner.profiling.entries;
what was compiled in this run is kept (Profiler.executables) for the bundles to export without
compiling again."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


from planner.app.sites import ResolvedSite
from planner.app.targets import Target, get_target
from planner.profiling import estimate
from planner.profiling.artifacts import Executables
from planner.profiling.cache import ProfileCache, make_key
from planner.profiling.builds import BuildKind, kinds_for
from planner.profiling.calibrated import calibrated
from planner.profiling.entries import HostBuildEntry, HostModelEntry, HostStepEntry, ScaleEntry, SiteModelEntry
from planner.profiling.errors import ProfilingInputError
from planner.profiling.half import fp16_site
from planner.profiling.hardware_checks import Recorded, all_records, recorded_failure
from planner.profiling.table import Exclusion, NodeProfile, NodeSignature
from planner.profiling.load import quietest
from planner.profiling.speed import SpeedReference
from planner.profiling.model_work import ModelWork
from planner.profiling.tune import tuning_digest, tuning_dir, tuning_state
from planner.profiling.verify import failure
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
        # the machine's fastest probe, kept beside the cache: a slow spell is told by it
        self.speed = SpeedReference(cache.dir)
        self.executables: Executables = {}
        self._tvm_version = None
        self._records: list[Recorded] | None = None  # read when first needed

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
        for site in sites:
            for kind in kinds_for(site.target.is_gpu, max_error):
                hb = measured[kind.name]
                timed = measured[kind.times_as] if kind.times_as else hb  # whose host time the estimate scales
                if kind.times_as and hb.error:  # its file cannot be made or run here
                    found = hb.error
                elif kind.engine == "tvm":
                    found = self.tvm_site(work, site, host, host_key, hb, result)
                else:
                    found = ort_site(site, timed, lambda t: self.scale(host_key, host, t))
                if isinstance(found, dict) and found["provenance"] == "estimated":  # with this run's calibrations
                    found = calibrated(found, host.kernels, timed.ms, self.host, site.target, kind.engine,
                                       found.get("tuning"))
                if isinstance(found, dict) and kind.precision == "fp16":
                    found = fp16_site(found, hb, host.kernels, site.target)
                if isinstance(found, str):
                    profile = None
                    reason = found
                else:
                    profile = NodeProfile(node=node, site=site.name, engine=kind.engine, precision=kind.precision,
                                          target=site.target.name, tvm_ms=tvm_ms, ort_ms=ort_ms, **found)
                    reason = self.verdict(hb, kind, max_error, profile) \
                        or self.recorded(base["onnx"], kind, site.target, profile)
                if reason is None:
                    result.entries.append(profile)
                    continue
                result.excluded.append(Exclusion(node=node, site=site.name, build=kind.name, reason=reason,
                                                 profile=profile))
                result.warnings.append(f"'{node}' {kind.name} excluded from site {site.name} ({site.target.name}): "
                                       f"{reason}")
        return result

    def host_build(self, work: ModelWork, kind: BuildKind, host_key: str, result: NodeResult) -> HostBuildEntry:
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

    def tvm_site(self, work: ModelWork, site: ResolvedSite, host: HostModelEntry, host_key: str,
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
        if reason is not None and kind.times_as:  # its arithmetic failed: so would the same file on any device
            profile.verified, profile.max_rel_error = False, hb.max_rel_error
            return f"{reason} (its fp16 arithmetic, emulated on this host's CPU)"
        if reason is not None and profile.provenance == "estimated":
            return f"{reason} (on this host: the build this estimate scales)"
        return None

    def recorded(self, onnx_sha256: str, kind: BuildKind, target: Target, profile: NodeProfile) -> str | None:
        """Why a build not checked here is excluded by a recorded failure on real hardware of the
        site's kind (planner.profiling.hardware_checks); a build this host ran and verified is not."""
        if profile.provenance == "measured":
            return None
        if self._records is None:
            self._records = all_records()
        found = recorded_failure(onnx_sha256, kind.name, target, self._records)
        if found is None:
            return None
        profile.verified = False
        return found.reason

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
                step, load, busy = quietest(lambda: profile_step(fn, inputs, str(file)), self.cores, speed=self.speed)
            self.counters.measures += 1
            host = HostStepEntry(ms=step.timing.median_ms, repeats_ms=step.timing.repeats_ms,
                                 signature=step.signature, memory_mb=step.memory_mb, threads=threads, busy=busy,
                                 load_per_core=load.load_per_core, steal_pct=load.steal_pct,
                                 others_pct=load.others_pct, slow_factor=load.slow_factor)
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
                measured = {"threads": host.threads, "load_per_core": host.load_per_core, "steal_pct": host.steal_pct,
                            "slow_factor": host.slow_factor}
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


def host_numbers(hb: HostBuildEntry) -> dict:
    """What a NodeProfile measured on this host takes from its host run."""
    return {"latency_ms": hb.ms, "threads": hb.threads, "load_per_core": hb.load_per_core,
            "steal_pct": hb.steal_pct, "slow_factor": hb.slow_factor}


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
