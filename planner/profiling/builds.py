"""The builds of an ONNX model that the profiler measures, verifies and offers the solver.

A build kind says where it runs (CPU and/or GPU targets), whether it is a reduced-precision
variant (profiled only when the model has `max_error`, and judged against it), and how to load
it on this host as a Runner: its outputs on the profiling inputs and its timing, on the thread
count the deployed build will use. KINDS is the registry the profiler reads; tests put a build
that answers NaN or wrong numbers there to see it excluded.

Memory: a TVM build's is its parameters plus the activations of TVM's static memory plan
(planner.profiling.compile); an ONNX Runtime build's is the initializers of the ONNX file it
runs (the quantized file for int8, the fp16 file for fp16) plus those same planned activations
(the same tensors flow between the same operators; ONNX Runtime's arena may round up; half of
them for fp16). Cheap, and stable from run to run, unlike RSS growth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planner.profiling.measure import Timing


@dataclass
class Runner:
    """One build loaded on this host."""

    run: Callable[[], list[np.ndarray]]  # its outputs on the profiling inputs
    time: Callable[[], Timing]
    threads: int  # what it really runs with
    memory_mb: float


@dataclass(frozen=True)
class BuildKind:
    engine: str
    precision: str
    on_cpu: bool
    on_gpu: bool
    reduced: bool  # a reduced-precision variant: only with `max_error`, and judged against it
    load: Callable[[Any, int], Runner]  # (ModelWork, threads) -> Runner; raises BuildUnavailable
    version: Callable[[], str]  # what else its numbers depend on (part of the cache key)
    # the build whose host time its estimates scale, where its own host run only checks its
    # arithmetic (fp16: a CPU's fp16 time says nothing of a GPU's); None: its own host time
    times_as: str | None = None

    @property
    def name(self) -> str:
        return f"{self.engine}/{self.precision}"


class BuildUnavailable(Exception):
    """The build cannot be made or run here (the message says why)."""


def _version(package: str) -> Callable[[], str]:
    def get() -> str:
        from importlib.metadata import version

        return f"{package} {version(package)}"
    return get


def _tvm_fp32(work, threads: int) -> Runner:
    from planner.profiling.errors import CompileError
    from planner.profiling.measure import set_tvm_threads, time_vm, tvm_outputs, vm_on_host

    try:
        c = work.compiled_host()
    except CompileError as exc:
        raise BuildUnavailable(f"TVM compile failed: {exc}") from None
    used = set_tvm_threads(threads)
    vm, dev, args = vm_on_host(c.executable, work.inputs())

    def timing() -> Timing:
        set_tvm_threads(threads)  # the pool setting belongs to the calling thread: set it again
        return time_vm(vm, dev, args)

    return Runner(run=lambda: tvm_outputs(vm, args), time=timing, threads=used, memory_mb=c.memory_mb)


def initializer_bytes(model_bytes: bytes) -> int:
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(model_bytes)
    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def ort_runner(model_bytes: bytes, work, threads: int, optimize: bool = True, weights: int | None = None) -> Runner:
    """`weights`: the initializer bytes of the file a deployment runs, where it is not `model_bytes`."""
    from planner.profiling.measure import measure_ort, ort_session

    try:
        session = ort_session(model_bytes, threads, optimize)
    except Exception as exc:  # ONNX Runtime may lack an operator TVM has
        raise BuildUnavailable(f"ONNX Runtime cannot load it ({type(exc).__name__}: {str(exc)[:200]})") from None
    feed = work.feed()
    memory = ((initializer_bytes(model_bytes) if weights is None else weights) + work.activation_bytes) / 1e6
    return Runner(run=lambda: session.run(None, feed), time=lambda: measure_ort(session, feed), threads=threads,
                  memory_mb=memory)


def _ort_fp32(work, threads: int) -> Runner:
    return ort_runner(work.path.read_bytes(), work, threads)


def quantized_int8(path: Path) -> bytes:
    """The model with dynamically quantized weights (int8; activations quantized per call): the
    very file a bundle ships for this build (planner.quantize)."""
    from planner.quantize import QuantizationError, quantized_int8 as quantize

    try:
        return quantize(path)
    except QuantizationError as exc:
        raise BuildUnavailable(str(exc)) from None


def _ort_int8(work, threads: int) -> Runner:
    return ort_runner(quantized_int8(work.path), work, threads)


def float16(path: Path) -> bytes:
    """The model converted to fp16 (inputs and outputs stay fp32): the very file a bundle ships
    for this build (planner.quantize)."""
    from planner.quantize import QuantizationError, float16 as convert

    try:
        return convert(path)
    except QuantizationError as exc:
        raise BuildUnavailable(str(exc)) from None


def _ort_fp16(work, threads: int) -> Runner:
    """The fp16 file's arithmetic on this CPU (planner.profiling.fp16_emulation: every fp16 tensor
    rounded to fp16 where it is made), run as written: its outputs are what the checks compare;
    its time is not used. Memory: the fp16 file's initializers, and the planned activations at
    half their fp32 size."""
    from planner.profiling.fp16_emulation import emulated

    shipped = float16(work.path)
    try:
        emulation = emulated(shipped)
    except Exception as exc:  # a graph the rewrite does not handle: no check, so no build
        raise BuildUnavailable(f"its fp16 arithmetic cannot be emulated on this CPU ({type(exc).__name__}: "
                               f"{str(exc)[:200]})") from None
    runner = ort_runner(emulation, work, threads, optimize=False, weights=initializer_bytes(shipped))
    runner.memory_mb -= work.activation_bytes / 2 / 1e6
    return runner


# bump when planner.quantize.float16 or planner.profiling.fp16_emulation change what they make (a cache key part)
FP16_EMULATION = 2


def _versions(*packages: str, also: str = "") -> Callable[[], str]:
    return lambda: ", ".join([*(_version(p)() for p in packages), *([also] if also else [])])


KINDS: dict[str, BuildKind] = {k.name: k for k in (
    BuildKind("tvm", "fp32", on_cpu=True, on_gpu=True, reduced=False, load=_tvm_fp32,
              version=_version("apache-tvm")),
    # on GPU targets: the CUDA execution provider (estimated here: no GPU is reachable to run it)
    BuildKind("onnxruntime", "fp32", on_cpu=True, on_gpu=True, reduced=False, load=_ort_fp32,
              version=_version("onnxruntime")),
    BuildKind("onnxruntime", "int8", on_cpu=True, on_gpu=False, reduced=True, load=_ort_int8,
              version=_version("onnxruntime")),
    # its error is measured on this CPU (the fp16 file's arithmetic emulated); its time on a GPU is
    # the fp32 build's estimate scaled by the target's fp16 roofline (planner.profiling.half)
    BuildKind("onnxruntime", "fp16", on_cpu=False, on_gpu=True, reduced=True, load=_ort_fp16,
              version=_versions("onnxruntime", "onnxconverter-common", also=f"fp16 emulation {FP16_EMULATION}"),
              times_as="onnxruntime/fp32"),
)}


def kinds_for(is_gpu: bool, max_error: float | None) -> list[BuildKind]:
    """The builds to profile on a target, TVM first (where the solver takes one build per
    site, it takes the first)."""
    return [k for k in KINDS.values()
            if (k.on_gpu if is_gpu else k.on_cpu) and (max_error is not None or not k.reduced)]
