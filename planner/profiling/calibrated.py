"""Estimates for a target the planner cannot run on: the roofline time there divided by the
efficiency a calibration measured (planner.profiling.calibration), with its stated error.

    estimate_T = roofline_T(kernels) / efficiency(T, engine, tuning state)

Where no calibration applies, the host-fraction model (planner.profiling.estimate: the host
measurement scaled by the roofline ratio, which assumes this model reaches the same fraction
of the roofline on T as on the host), with a wider error derived from what the calibrations
know: the largest factor between the efficiencies fitted on any two calibrated machines for
the engine (how far "the same fraction everywhere" has been off), never less than the largest
error a calibration of that engine states. With fewer than two calibrations of the engine the
error is unknown (None) and the note says so."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from planner.app.targets import Target
from planner.profiling import estimate
from planner.profiling.calibration import Found, all_calibrations, find, tuning_class
from planner.profiling.calibration_fit import spread_pct
from planner.profiling.compile import Kernel


@dataclass(frozen=True)
class Estimate:
    latency_ms: float
    note: str
    expected_error_pct: float | None
    calibration: str | None = None  # the file it used; None: the host-fraction model
    basis: str = ""  # the part of the note that says which model and error (not how the number was made)


def _pct(p: float | None) -> str:
    return "unknown" if p is None else f"{p:.0f} %"


def _fallback_pct(p: float | None, engine: str) -> str:
    if p is None:
        return f"unknown (fewer than two calibrations of {engine} to derive it from)"
    return f"{p:.0f} % (the spread of the calibrated efficiencies of {engine}, or a stated error if larger)"


def fallback_error_pct(engine: str, calibrations: list[Found]) -> float | None:
    fits = [f for c in calibrations for f in c.calibration.fits if f.engine == engine]
    spread = spread_pct([f.efficiency for f in fits])
    if spread is None:
        return None
    return max([spread, *(f.expected_error_pct for f in fits if f.expected_error_pct is not None)])


def estimate_for(kernels: list[Kernel], host_ms: float, host: Target, target: Target, engine: str,
                 tuning: str | None, calibrations: list[Found] | None = None) -> Estimate:
    """The estimate of a model on `target` for one engine, from its kernels and its host time."""
    calibrations = all_calibrations() if calibrations is None else calibrations
    look = find(target, engine, tuning, calibrations)
    roofline_ms = estimate.roofline_s(kernels, target) * 1e3
    if look.fit is not None and roofline_ms > 0:
        fit = look.fit
        return Estimate(
            latency_ms=roofline_ms / fit.efficiency, expected_error_pct=fit.expected_error_pct,
            calibration=look.found.path,
            note=(f"roofline {roofline_ms:.3g} ms / efficiency {fit.efficiency:.3g} ({engine} {fit.tuning}, "
                  f"calibration {look.found.path}, median of {len(fit.models)} models), expected error "
                  f"{_pct(fit.expected_error_pct)}"))
    scale = estimate.scale_factor(kernels, host, target)
    error = fallback_error_pct(engine, calibrations)
    skipped = f"; {', '.join(look.skipped)} measured other figures, not used" if look.skipped else ""
    basis = (f"no calibration for {target.name} ({engine} {tuning_class(tuning)}){skipped}: host-fraction model, "
             f"expected error {_fallback_pct(error, engine)}")
    return Estimate(latency_ms=host_ms * scale, expected_error_pct=error, basis=basis,
                    note=f"host {engine} {host_ms:.3g} ms x {scale:.3g} (roofline, {len(kernels)} kernels); {basis}")


def calibrated(found: dict, kernels: list[Kernel], host_ms: float, host_target: Target, target: Target, engine: str,
               tuning: str | None, user_dir: Path | None = None) -> dict:
    """An estimated build's numbers (`found`: the host-fraction model's, as the profiler made
    them) made again with the calibrations of this run (a cached estimate would keep the
    calibration of the run that stored it). Without one, the host-fraction number stays (made
    again it would move with the detected host's clock and bandwidth, which change from run to
    run) and its note and error say which model it is."""
    est = estimate_for(kernels, host_ms, host_target, target, engine, tuning, all_calibrations(user_dir))
    if est.calibration is None:
        return {**found, "note": f"{found.get('note') or ''}; {est.basis}", "expected_error_pct": est.expected_error_pct}
    return {**found, "latency_ms": est.latency_ms, "note": f"{est.note}; unverified",
            "expected_error_pct": est.expected_error_pct}
