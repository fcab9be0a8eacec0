"""How far a sample's median is from the truth when the sample's values are not independent.

A pilot's latencies come out of a queue: a request that waited leaves the next one waiting too, so
a hundred requests at 85 % of a machine's capacity hold far fewer than a hundred independent
readings. Resampling them one by one (the bootstrap) reads the median's noise 5-8x too narrow
there (tests/local/test_median_noise.py, against many independent runs of a simulated queue).

The median's noise is that of the share of values below it (Bahadur: the sample median moves by
the error of that share over the density there), and the share's error is that of a mean of
0/1 indicators: sqrt(tau / (4 n)), with tau the indicators' integrated autocorrelation time (1
for independent values). So the values at the percentiles 50 -/+ 100 sqrt(tau / (4 n)) are the
median one standard deviation either side. tau is summed over lags up to Sokal's automatic window
(the first lag at least WINDOW times the running tau): short enough to keep the noise of far lags
out, long enough for the queue's busy periods.
"""
from __future__ import annotations

import numpy as np

WINDOW = 5.0  # Sokal's c; 8 and 12 read the queue's noise narrower in the tests' short pilots


def autocorrelation_time(values) -> float:
    """The integrated autocorrelation time of `values`: how many consecutive values are worth one
    independent value (at least 1)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return 1.0
    x = x - x.mean()
    var = float(x @ x) / n
    if var == 0:
        return 1.0
    spectrum = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:n] / (n * var)
    tau = 1.0
    for lag in range(1, n):
        tau += 2 * float(acf[lag])
        if lag >= WINDOW * tau:
            break
    return max(1.0, tau)


def median_one_sigma(values) -> tuple[float, float, float]:
    """(low, high, tau): the values at the sample's median one standard deviation either side,
    its effective size n / tau (tau from the indicators of values at or below the median)."""
    x = np.asarray(values, dtype=float)
    tau = autocorrelation_time(x <= np.median(x))
    step = 100 * min(0.5, float(np.sqrt(tau / (4 * len(x)))))
    low, high = np.percentile(x, [50 - step, 50 + step])
    return float(low), float(high), tau
