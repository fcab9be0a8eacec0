"""Node runners: TVM-compiled libraries, python steps, ONNX models (ONNX Runtime).

Every runner is called as `runner({input name: ndarray}) -> {output name: ndarray}`,
the contract of runtime.executor. `load_runners(bundle, bundle_dir)` builds the runners
of the nodes placed on the bundle's site from their artifacts.

Runners are called from several threads at once, up to the node's `instances` (the executor's gate
bounds them): a TVM node holds one VM per instance (a VM runs one call at a time); an ONNX Runtime
session and a python step are shared (both may be called concurrently).
"""

from __future__ import annotations

import logging
import os
import queue
from pathlib import Path

import numpy as np

from planner_runtime.bundle_format import Bundle, NodeSpec, Tensor
from planner_runtime.ort_options import session_options
from planner_runtime.step_workers import StepWorkers
from planner_runtime.steps import StepLoadError, call_step, load_step
from planner_runtime.tvm_noise import without_scope_warnings
from planner_runtime.tvm_options import quiet_pool


log = logging.getLogger("planner_runtime")
CPU_PROVIDER = "CPUExecutionProvider"


class ArtifactError(RuntimeError):
    """An artifact is missing or cannot be loaded."""


class _Node:
    platform = "?"

    def __init__(self, name: str, inputs: list[Tensor], outputs: list[Tensor]):
        self.name = name
        self.inputs = inputs
        self.outputs = outputs

    def _ordered(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return [feeds[t.name] for t in self.inputs]
        except KeyError as exc:
            raise ValueError(f"missing input {exc.args[0]!r}") from None


class TvmNode(_Node):
    """A library exported by TVM (Relax VM executable), entry `main`, inputs in the node's order; a VM per instance."""

    platform = "tvm"

    def __init__(self, name: str, path: Path, inputs: list[Tensor], outputs: list[Tensor], instances: int = 1):
        super().__init__(name, inputs, outputs)
        import tvm
        from tvm import relax

        self._tvm = tvm
        self._dev = tvm.cpu()
        try:
            with without_scope_warnings():
                lib = tvm.runtime.load_module(str(path))
                vms = [relax.VirtualMachine(lib, self._dev) for _ in range(instances)]
        except Exception as exc:
            raise ArtifactError(f"node {name!r}: cannot load TVM library {path}: {exc}") from exc
        # the `main` of each VM not running a call: a caller takes one (waits, beyond `instances` callers)
        self._vms = vms
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for vm in vms:
            self._free.put(vm["main"])

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [self._tvm.runtime.tensor(np.ascontiguousarray(a), self._dev) for a in self._ordered(feeds)]
        main = self._free.get()
        try:
            result = main(*args)
        finally:
            self._free.put(main)
        values = _flatten_tvm(result)
        if len(values) != len(self.outputs):
            raise ValueError(f"TVM library returned {len(values)} tensor(s), the node has {len(self.outputs)} output(s)")
        return {t.name: v for t, v in zip(self.outputs, values)}


def _flatten_tvm(result) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    out = []
    for item in result:  # a tuple / Array of tensors (possibly nested)
        out.extend(_flatten_tvm(item))
    return out


class PythonNode(_Node):
    """A python step: `function(**inputs)` in a file, numpy in, dict of output name -> array out.

    One instance runs in this process: no copy of its tensors, and one server is what the
    latency model counts. More instances run in worker processes, one each (runtime.step_workers):
    in threads of one process they would take turns on the GIL, one server where the model
    counts `instances`. Either way a step's exception fails the request with the same message."""

    platform = "python"

    def __init__(self, name: str, path: Path, function: str, inputs: list[Tensor], outputs: list[Tensor],
                 instances: int = 1):
        super().__init__(name, inputs, outputs)
        self._path = path
        try:
            if instances > 1:
                self._workers = StepWorkers(name, path, function, instances)
            else:
                self._workers = None
                self._fn = load_step(name, path, function)
        except StepLoadError as exc:
            raise ArtifactError(f"node {name!r}: {exc}") from exc

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._workers is not None:
            return self._workers(feeds)
        return call_step(self._fn, self._path, feeds)

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()


class OrtNode(_Node):
    """An ONNX model run with ONNX Runtime: a bundle's `onnx` node (the build the plan chose), and the
    reference of `planner run --engine onnxruntime`. It runs on `provider` where this machine has it;
    a GPU provider missing here falls back to the CPU with a warning in the log and in `platform` (the
    node's metadata), since its latency is then not the one the plan was made with."""

    def __init__(self, name: str, path: Path, inputs: list[Tensor], outputs: list[Tensor], threads: int | None = None,
                 provider: str = CPU_PROVIDER):
        super().__init__(name, inputs, outputs)
        import onnxruntime as ort

        opts = session_options(threads)  # as the profiler measured it
        providers = [provider] if provider == CPU_PROVIDER else [provider, CPU_PROVIDER]
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ArtifactError(f"node {name!r}: cannot load ONNX model {path}: {exc}") from exc
        used = self._sess.get_providers()[0]
        offered = ", ".join(ort.get_available_providers())
        self.fallback = None if used == provider else (
            f"{provider} is not available on this machine (ONNX Runtime offers {offered}); "
            f"running on {used} instead: slower than the plan assumed")
        self.platform = f"onnxruntime/{used}" + (f" (WARNING: {self.fallback})" if self.fallback else "")
        if self.fallback:
            log.warning("node %s: %s", name, self.fallback)
        self._in_names = [i.name for i in self._sess.get_inputs()]
        self._out_names = [o.name for o in self._sess.get_outputs()]
        spec_in = [t.name for t in inputs]
        # the bundle's tensor names are the model's when they match, else positional
        self._feed_names = spec_in if set(spec_in) == set(self._in_names) else self._in_names

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # arrays viewed straight from a received message may sit at unaligned addresses
        feeds = {k: (v if v.dtype == object or v.flags.aligned else v.copy()) for k, v in feeds.items()}
        ordered = self._ordered(feeds)
        if self._feed_names is self._in_names:
            sess_feeds = dict(zip(self._in_names, ordered))
        else:
            sess_feeds = {t.name: feeds[t.name] for t in self.inputs}
        values = self._sess.run(None, sess_feeds)
        by_name = dict(zip(self._out_names, values))
        if all(t.name in by_name for t in self.outputs):
            return {t.name: by_name[t.name] for t in self.outputs}
        return {t.name: v for t, v in zip(self.outputs, values)}


def make_runner(name: str, spec: NodeSpec, bundle_dir: Path, host_targets: bool = False):
    """The runner of one node from its artifact (the host_fallback one with host_targets)."""
    artifact = spec.host_fallback if host_targets and spec.host_fallback else spec.artifact
    if artifact is None:
        raise ArtifactError(f"node {name!r} (site {spec.site}) has no artifact in this bundle")
    path = Path(bundle_dir) / artifact
    if not path.exists():
        raise ArtifactError(f"node {name!r}: artifact {path} not found")
    if spec.kind == "tvm":
        return TvmNode(name, path, spec.inputs, spec.outputs, spec.instances)
    if spec.kind == "python":
        if not spec.function:
            raise ArtifactError(f"node {name!r}: python step without `function`")
        return PythonNode(name, path, spec.function, spec.inputs, spec.outputs, spec.instances)
    if spec.kind == "onnx":
        return OrtNode(name, path, spec.inputs, spec.outputs, threads=threads_here(spec.threads, host_targets),
                       provider=spec.provider or CPU_PROVIDER)
    raise ArtifactError(f"node {name!r}: unknown kind {spec.kind!r}")


def threads_here(threads: int | None, host_targets: bool) -> int | None:
    """The threads a build runs with: those of its site's target, or, when every site runs on
    this machine (planner up --host-targets), at most this machine's cores: a 16-core site's 16
    spinning ONNX Runtime threads on 2 cores made an OCR run 4-8x slower than predicted."""
    if host_targets and threads:
        return min(threads, os.cpu_count() or 1)
    return threads


def load_runners(bundle: Bundle, bundle_dir: Path, host_targets: bool = False) -> dict:
    specs = [bundle.nodes[n] for n in bundle.local_nodes()]
    tvm_pool([s.model_copy(update={"threads": threads_here(s.threads, host_targets)}) for s in specs])
    runners: dict = {}
    try:
        for n in bundle.local_nodes():
            runners[n] = make_runner(n, bundle.nodes[n], bundle_dir, host_targets)
    except BaseException:  # the worker processes of those already made, not left to the process's exit
        close_runners(runners)
        raise
    return runners


def close_runners(runners: dict) -> None:
    """Release what runners hold beyond memory (a python step's worker processes)."""
    for runner in runners.values():
        close = getattr(runner, "close", None)
        if close is not None:
            close()


def tvm_pool(specs) -> None:
    """Size TVM's thread pool for the most threads a TVM node of this site was profiled with.
    TVM reads TVM_NUM_THREADS once, when its pool starts (else it takes about half the hardware
    threads: one on a 2-vCPU machine, half of what the profiler measured with), and its workers'
    spin count (planner_runtime.tvm_options); a value the operator set is kept."""
    quiet_pool()
    wanted = [s.threads for s in specs if s.kind == "tvm" and s.threads]
    if wanted:
        os.environ.setdefault("TVM_NUM_THREADS", str(max(wanted)))
