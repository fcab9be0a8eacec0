"""The arithmetic of a calibration: one efficiency per (target, engine, tuning state), fitted
from measured models, and the error it carries.

A model's efficiency on a target is its roofline time there (estimate.roofline_s over its
compiled kernels) divided by its measured time: the fraction of the roofline the code reaches.
The fit is the median over the calibration's models; a model's residual is the error of its
time predicted from the fitted efficiency; the stated expected error is the largest
leave-one-out residual (each model predicted from the median of the *other* models), which is
what a model the calibration never saw can expect, not the in-sample fit.

Errors are symmetric factors in percent: an error of p % says the truth lies within a factor
(1 + p/100) of the estimate either way (50 %: between estimate / 1.5 and estimate x 1.5), so
that a 9x underestimate and a 9x overestimate both read 800 %."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def efficiency(roofline_ms: float, measured_ms: float) -> float:
    return roofline_ms / measured_ms


def error_pct(predicted: float, actual: float) -> float:
    """How far `predicted` is from `actual`, as a symmetric factor in percent (see above)."""
    ratio = predicted / actual
    return (max(ratio, 1 / ratio) - 1) * 100


def fitted(efficiencies: Sequence[float]) -> float:
    return statistics.median(efficiencies)


def residuals_pct(efficiencies: Sequence[float]) -> list[float]:
    """Each model's error when its time is predicted from the fitted efficiency: the predicted
    time is roofline / fit, the measured roofline / e, so the ratio is e / fit."""
    fit = fitted(efficiencies)
    return [error_pct(e, fit) for e in efficiencies]


def leave_one_out_pct(efficiencies: Sequence[float]) -> list[float]:
    """Each model's error when predicted from the median efficiency of the others (empty with
    fewer than two models: nothing to predict from)."""
    if len(efficiencies) < 2:
        return []
    return [error_pct(e, fitted([*efficiencies[:i], *efficiencies[i + 1:]])) for i, e in enumerate(efficiencies)]


def expected_error_pct(efficiencies: Sequence[float]) -> float | None:
    """The error a calibration states: its largest leave-one-out residual (None: too few models)."""
    loo = leave_one_out_pct(efficiencies)
    return max(loo) if loo else None


def spread_pct(efficiencies: Sequence[float]) -> float | None:
    """The largest factor between two efficiencies, in percent (None with fewer than two)."""
    if len(efficiencies) < 2:
        return None
    return error_pct(max(efficiencies), min(efficiencies))
