"""Time a compiled model on this host (TVM's VM time_evaluator) and under ONNX Runtime, on the
same inputs; run both for numerical comparison. Latencies are the median over repeats."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.app.tensors import ALL_DTYPES, TensorSpec
from planner_runtime.ort_options import session_options
from planner_runtime.tvm_options import quiet_pool

# One repeat lasts at least MIN_REPEAT_MS (several calls when a call is short); REPEAT repeats.
REPEAT = 5
MIN_REPEAT_MS = 100


@dataclass
class Timing:
    median_ms: float
    repeats_ms: list[float]
    outputs: list[np.ndarray] | None = None  # of the warm-up call, when asked for


# a call slower than this gets fewer repeats (untuned TVM on a real model can take seconds)
SLOW_CALL_S = 0.5
SLOW_REPEAT = 3


def sample_inputs(specs: list[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the declared shapes: floats uniform in [0, 1), integers small, uint8 any byte."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for t in specs:
        dtype = ALL_DTYPES[t.dtype]
        if dtype.kind == "f":
            out[t.name] = rng.random(t.shape, dtype=np.float64).astype(dtype)
        elif t.dtype == "uint8":
            out[t.name] = rng.integers(0, 256, t.shape, dtype=np.uint8)
        elif dtype.kind in "iu":
            out[t.name] = rng.integers(0, 2, t.shape).astype(dtype)
        elif dtype.kind == "b":
            out[t.name] = np.zeros(t.shape, bool)
        else:
            out[t.name] = np.full(t.shape, b"", dtype=object)
    return out


def _vm(ex, dev):
    from tvm import relax

    return relax.VirtualMachine(ex, dev)


def _to_numpy(value) -> list[np.ndarray]:
    if isinstance(value, (list, tuple)) or type(value).__name__ in ("Array", "Tuple"):
        return [a for v in value for a in _to_numpy(v)]
    return [value.numpy()]


def set_tvm_threads(threads: int) -> int:
    """Run TVM's CPU code on `threads` threads; returns how many its pool really uses.

    TVM 0.27 sizes its thread pool once, when the first parallel loop runs in a thread, from
    TVM_NUM_THREADS (else about half the hardware threads: 1 on a 2-vCPU machine);
    `runtime.config_threadpool(1, n)` then selects n of those workers and can never add any. So
    the variable is set (when the user has not) to every core before the pool starts, and each
    measurement selects its own count. A pool started earlier with fewer workers gives fewer:
    the count returned is the one recorded."""
    import os

    os.environ.setdefault("TVM_NUM_THREADS", str(max(threads, os.cpu_count() or 1)))
    quiet_pool()  # timed as served: the workers sleep when idle (planner_runtime.tvm_options)
    import tvm

    tvm.get_global_func("runtime.config_threadpool")(1, threads)
    return int(tvm.runtime.num_threads())


def run_tvm(ex, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of `main` on this host's CPU, flattened to a list of arrays."""
    import tvm

    dev = tvm.cpu()
    vm = _vm(ex, dev)
    return _to_numpy(vm["main"](*[tvm.runtime.tensor(a, dev) for a in inputs]))


def vm_on_host(ex, inputs: list[np.ndarray]):
    """(VM, device, input tensors) for `main` on this host's CPU."""
    import tvm

    dev = tvm.cpu()
    return _vm(ex, dev), dev, [tvm.runtime.tensor(a, dev) for a in inputs]


def tvm_outputs(vm, args: list) -> list[np.ndarray]:
    return _to_numpy(vm["main"](*args))


def time_vm(vm, dev, args: list, repeat: int = REPEAT, min_repeat_ms: int = MIN_REPEAT_MS,
            keep_outputs: bool = False) -> Timing:
    """Median of `repeat` repeats of `main`, each at least `min_repeat_ms` long, after one
    warm-up call (whose outputs are kept when asked). A call slower than SLOW_CALL_S gets
    SLOW_REPEAT repeats."""
    vm.set_input("main", *args)
    start = time.perf_counter()
    vm.invoke_stateful("main")  # warm up (first call allocates)
    dev.sync()
    first = time.perf_counter() - start
    outputs = _to_numpy(vm.get_outputs("main")) if keep_outputs else None
    if first > SLOW_CALL_S:
        repeat = min(repeat, SLOW_REPEAT)
    f = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    result = f("main")
    reps = [float(r) * 1e3 for r in result.results]
    return Timing(median_ms=statistics.median(reps), repeats_ms=reps, outputs=outputs)


def measure_tvm(ex, inputs: list[np.ndarray], repeat: int = REPEAT, keep_outputs: bool = False) -> Timing:
    import tvm

    dev = tvm.cpu()
    vm = _vm(ex, dev)
    return time_vm(vm, dev, [tvm.runtime.tensor(a, dev) for a in inputs], repeat=repeat, keep_outputs=keep_outputs)


def ort_session(model_bytes: bytes, threads: int = 0, optimize: bool = True):
    """A CPU session on `threads` intra-op threads (0: ONNX Runtime's default, one per core);
    `optimize=False` runs the graph as written (no fusions): the reference the builds are checked against."""
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, session_options(threads, optimize), providers=["CPUExecutionProvider"])


def run_ort(session, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session.run(None, inputs)


def measure_ort(session, inputs: dict[str, np.ndarray], repeat: int = REPEAT,
                min_repeat_ms: int = MIN_REPEAT_MS) -> Timing:
    """ONNX Runtime CPU, same protocol as measure_tvm: a warm-up, then repeats of >= min_repeat_ms."""
    return time_callable(lambda: session.run(None, inputs), repeat, min_repeat_ms)


def time_callable(fn: Any, repeat: int = REPEAT, min_repeat_ms: int = MIN_REPEAT_MS) -> Timing:
    """Median over `repeat` repeats of a python callable (a warm-up call first); each repeat
    calls it as often as needed to last `min_repeat_ms`, and reports the mean per call."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > SLOW_CALL_S:
        repeat = min(repeat, SLOW_REPEAT)
    number = max(1, int(np.ceil(min_repeat_ms / 1e3 / max(first, 1e-6))))
    reps = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        reps.append((time.perf_counter() - start) / number * 1e3)
    return Timing(median_ms=statistics.median(reps), repeats_ms=reps)
