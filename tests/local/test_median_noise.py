"""median_noise against the truth of many independent pilots: a single-server FIFO queue
(Lindley's recursion: each request waits what the one before it waited and served, less the gap
between them) run afresh many times; the spread of those runs' medians is what one run's
interval must read."""
import numpy as np
import pytest

from planner.local.median_noise import autocorrelation_time, median_one_sigma


def queue_runs(runs: int, requests: int, utilization: float, seed: int = 1) -> np.ndarray:
    """`runs` independent pilots of `requests` each: Poisson arrivals, service 1 +- 0.3 (normal,
    at least 0.05), empty at the start as a pilot is: response times, one row a run."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1 / utilization, (runs, requests))
    service = np.maximum(rng.normal(1.0, 0.3, (runs, requests)), 0.05)
    wait = np.zeros((runs, requests))
    for i in range(1, requests):
        wait[:, i] = np.maximum(0.0, wait[:, i - 1] + service[:, i - 1] - gaps[:, i])
    return wait + service


@pytest.mark.parametrize("utilization, requests, low, high", [
    (0.5, 100, 0.7, 1.25),  # 0.84-0.88 over 3000 runs (seeds 1 and 3)
    (0.85, 2500, 0.75, 1.25),
    # a short pilot near capacity holds ~20 busy periods: its correlation reads short (0.6-0.63
    # over 3000 runs), not by the 5-8x of reading the requests one by one
    (0.85, 455, 0.45, 1.0),
])
def test_the_median_interval_reads_the_spread_of_independent_runs(utilization, requests, low, high):
    runs = queue_runs(300, requests, utilization)
    truth = np.median(runs, axis=1).std()
    half = [(hi - lo) / 2 for lo, hi, _ in map(median_one_sigma, runs)]
    assert low <= np.mean(half) / truth <= high


def test_independent_values_read_as_independent_and_a_queue_near_capacity_does_not():
    """The interval one by one (tau 1) is what resampling requests singly read: near capacity it
    is several times too narrow, which is why the queue's correlation is counted."""
    rng = np.random.default_rng(2)
    taus = [autocorrelation_time(rng.normal(size=400) <= 0) for _ in range(200)]
    assert np.mean(taus) == pytest.approx(1.0, abs=0.15)
    runs = queue_runs(300, 2500, 0.85)
    truth = np.median(runs, axis=1).std()
    one_by_one = [np.diff(np.percentile(r, [50 - 100 / np.sqrt(4 * len(r)), 50 + 100 / np.sqrt(4 * len(r))]))[0] / 2
                  for r in runs]
    assert np.mean(one_by_one) / truth < 0.3
    assert min(median_one_sigma(r)[2] for r in runs) > 5


def test_a_constant_or_tiny_sample_reads_no_correlation():
    assert autocorrelation_time([3.0] * 50) == 1.0
    assert autocorrelation_time([1.0]) == 1.0
    lo, hi, tau = median_one_sigma([5.0, 1.0, 3.0])
    assert lo <= 3.0 <= hi and tau >= 1.0
