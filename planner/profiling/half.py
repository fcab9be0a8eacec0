"""The fp16 build on a GPU target: its error measured on this CPU, its time estimated.

No GPU is reachable from the profiler, and no fp16 build has been timed on one: its latency is
the fp32 build's estimate for the target (calibrated or not, planner.profiling.calibrated)
times the ratio of the target's own rooflines, fp16 over fp32, kernel by kernel:

    fp16_T = fp32_T * sum_k c_k max(F_k / P16_T, B_k / 2 / W_T) / sum_k c_k max(F_k / P_T, B_k / W_T)

with P16_T the target's published fp16 (tensor core) peak (`peak_gflops_fp16`) and half the
bytes. Where the catalog has no fp16 peak, no gain is claimed (ratio 1). Either way its error is
unknown: no calibration measured how close fp16 kernels come to that peak (tensor cores are
harder to feed than the fp32 units), so `expected_error_pct` is None and the note says so.

Its numerical error is a property of the arithmetic, not of the device: it is measured on this
host (the same fp16 file, its fp16 arithmetic emulated on the CPU: planner.profiling.fp16_emulation)
against the fp32 reference, and judged against `max_error`; the GPU build itself stays unverified."""

from __future__ import annotations

from planner.app.targets import Target
from planner.profiling.compile import Kernel
from planner.profiling.entries import HostBuildEntry


def fp16_ratio(kernels: list[Kernel], target: Target) -> float | None:
    """fp16 time over fp32 time on the target by its rooflines; None: no published fp16 peak."""
    p16 = target.peak_gflops_fp16
    if p16 is None:
        return None
    p32, bw = target.peak_gflops * 1e9, target.mem_bandwidth_gbs * 1e9
    fp32 = sum(k.calls * max(k.flops / p32, k.nbytes / bw) for k in kernels)
    if fp32 <= 0:
        return target.peak_gflops / p16
    return sum(k.calls * max(k.flops / (p16 * 1e9), k.nbytes / 2 / bw) for k in kernels) / fp32


def fp16_site(fp32: dict, fp16_host: HostBuildEntry, kernels: list[Kernel], target: Target) -> dict:
    """The fp16 build's numbers on a GPU site from the fp32 build's estimate there (`fp32`)."""
    ratio = fp16_ratio(kernels, target)
    if ratio is None:
        how = f"x 1: no fp16 peak for {target.name} in the catalog, no gain claimed"
        ratio = 1.0
    else:
        how = f"x {ratio:.3g} (fp16 over fp32 roofline on {target.name}: peak {target.peak_gflops_fp16:g} GFLOP/s fp16)"
    error = "not measured (no fp32 reference)" if fp16_host.max_rel_error is None else \
        f"{fp16_host.max_rel_error:.2g} measured on this CPU (the same fp16 file, its arithmetic emulated)"
    return {**fp32, "latency_ms": fp32["latency_ms"] * ratio, "memory_mb": fp16_host.memory_mb,
            "max_rel_error": fp16_host.max_rel_error, "expected_error_pct": None,
            "note": f"fp16: the fp32 estimate {fp32['latency_ms']:.3g} ms {how}; latency error unknown (no fp16 "
                    f"measurement calibrates it); numerical error {error}, "
                    f"the GPU build unverified [fp32: {fp32.get('note')}]"}
