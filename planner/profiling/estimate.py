"""The roofline estimator: a host measurement scaled to another target, kernel by kernel.

For each fused kernel k of the compiled module (a PrimFunc after FuseOps/FuseTIR), with F_k
FLOPs (TVM's TIR FLOP estimate) and B_k bytes (its arguments and results: the least memory
traffic it can do), called c_k times per inference, its roofline time on a target T with peak
compute P_T (FLOP/s) and memory bandwidth W_T (byte/s) is

    r_T(k) = max(F_k / P_T, B_k / W_T)

The host measurement M_host is split over the kernels in proportion to their host roofline
times (the VM of TVM 0.27 has no per-kernel profiler), and each share is scaled by its own
roofline ratio:

    estimate_T = M_host * sum_k c_k r_T(k) / sum_k c_k r_host(k)

so compute-bound kernels scale with peak FLOP/s and memory-bound ones with bandwidth. The
assumption is that the code reaches the same fraction of the roofline on both targets; it does
not (README, Profiling, Calibration), so estimates divide the roofline time by a calibrated
efficiency (planner.profiling.calibrated) and use this host-fraction model only where no
calibration applies.
The profiler uses all-core peaks: the planner's default CPU schedule (cpu_schedule.py) runs the
large loop nests in parallel. (TVM's plain lowering had no parallel loops; for such code
`single_thread=True` takes one core's share of the peak, kept for that comparison.) Known
error (see README, Profiling): it ignores caches (B_k is a lower bound on traffic), SIMD width
and schedule quality differences (an untuned x86 schedule says little about a GPU's DLight
schedule), and VM overhead; benchmarks/profile_ocr.py's cross-check measures the error on one
CPU. A model with no countable kernel scales by the peak-compute ratio.
"""

from __future__ import annotations

from collections.abc import Iterable

from planner.profiling.compile import Kernel
from planner.app.targets import Target


def effective_gflops(target: Target, single_thread: bool = False) -> float:
    """The compute the code can use: the target's peak, or one core's share of it for code
    that runs on one thread (untuned TVM CPU code has no parallel loops; see the cross-check
    in benchmarks/results/profile_ocr.md). GPU code is parallel either way."""
    cores = target.tvm_target.get("num-cores")
    if single_thread and not target.is_gpu and isinstance(cores, int) and cores > 1:
        return target.peak_gflops / cores
    return target.peak_gflops


def roofline_s(kernels: Iterable[Kernel], target: Target, single_thread: bool = False) -> float:
    peak = effective_gflops(target, single_thread) * 1e9
    bw = target.mem_bandwidth_gbs * 1e9
    return sum(k.calls * max(k.flops / peak, k.nbytes / bw) for k in kernels)


def scale_factor(kernels: list[Kernel], host: Target, target: Target, single_thread: bool = False) -> float:
    """How much longer the model takes on `target` than on `host` (< 1: faster)."""
    base = roofline_s(kernels, host, single_thread)
    if base <= 0:
        return effective_gflops(host, single_thread) / effective_gflops(target, single_thread)
    return roofline_s(kernels, target, single_thread) / base


def estimate_ms(host_ms: float, kernels: list[Kernel], host: Target, target: Target,
                single_thread: bool = False) -> float:
    return host_ms * scale_factor(kernels, host, target, single_thread)


def cpu_scale(host: Target, target: Target) -> float:
    """Python steps (numpy/OpenCV on the CPU) scale by the ratio of CPU peak compute. A GPU
    target's peak is its GPU's, not its CPU's: there the host time is used as is."""
    if target.is_gpu:
        return 1.0
    return host.peak_gflops / target.peak_gflops


def bound_of(kernels: list[Kernel], target: Target) -> dict[str, float]:
    """Share of the roofline time that is compute-bound vs memory-bound (for the report)."""
    peak = target.peak_gflops * 1e9
    bw = target.mem_bandwidth_gbs * 1e9
    compute = sum(k.calls * k.flops / peak for k in kernels if k.flops / peak >= k.nbytes / bw)
    memory = sum(k.calls * k.nbytes / bw for k in kernels if k.flops / peak < k.nbytes / bw)
    total = compute + memory or 1.0
    return {"compute": compute / total, "memory": memory / total}
