"""Is a build's answer the model's answer? Its outputs on the profiling inputs against the fp32
ONNX Runtime reference (the graph run as written, no fusions: planner.profiling.measure.ort_session).

The error is max over outputs of max |out - ref| / max(1, max |ref|): absolute for outputs
within [-1, 1] (probabilities, normalized maps), relative to the output's largest magnitude
beyond. An fp32 build fails above AGREEMENT_TOL (float32 reassociation across fused kernels and
threads stays orders of magnitude below it on the OCR models); a reduced-precision build (fp16,
int8) fails above the model's `max_error`. NaN or Inf where the reference is finite always fails."""

from __future__ import annotations

import numpy as np

AGREEMENT_TOL = 1e-4


def max_rel_error(got: list[np.ndarray], want: list[np.ndarray]) -> tuple[float, bool]:
    """(the error above, whether `got` has NaN or Inf where `want` is finite); a missing output
    or a shape that differs is an infinite error."""
    if len(got) != len(want):
        return float("inf"), False
    worst, nonfinite = 0.0, False
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return float("inf"), nonfinite
        if not g.size or g.dtype.kind not in "fiub":
            continue
        g, w = g.astype(np.float64), w.astype(np.float64)
        finite = np.isfinite(w)
        if not np.all(np.isfinite(g[finite])):
            nonfinite = True
            continue
        if finite.any():
            d = float(np.max(np.abs(g[finite] - w[finite])))
            worst = max(worst, d / max(1.0, float(np.max(np.abs(w[finite])))))
    return worst, nonfinite


def failure(error: float | None, nonfinite: bool, budget: float | None) -> str | None:
    """Why a build with this error fails verification (None: it passes, or there was no
    reference to check against). `budget`: the reduced-precision budget (max_error), None for fp32."""
    if nonfinite:
        return "verification failed: its outputs contain NaN or Inf where the fp32 reference's are finite"
    if error is None:
        return None
    limit, what = (AGREEMENT_TOL, "the fp32 tolerance") if budget is None else (budget, "max_error")
    if not error <= limit:
        return f"verification failed: outputs differ from the fp32 ONNX Runtime reference by {error:.3g} " \
               f"(relative), above {what} {limit:g}"
    return None
