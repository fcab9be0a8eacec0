"""A discrete-event simulation of a FIFO queue with c identical servers: the independent truth
that planner.model.queueing is checked against (it uses no queueing formula at all).

Requests are served in the order they arrive; a request starts on the server that frees first
(a heap of the servers' free times), at its arrival or when that server frees, whichever is
later. Arrivals: Poisson at a rate, or any sorted list of times (a later stage's arrivals are
an earlier stage's departures). Service: deterministic, exponential or gamma with a given
squared coefficient of variation. Every draw comes from a `random.Random(seed)`: a run is the
same on every machine.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Served:
    arrival: list[float]  # ms, in the order requests arrived
    wait: list[float]  # ms in the queue, same order
    departure: list[float]  # ms, same order

    @property
    def response(self) -> list[float]:
        return [d - a for a, d in zip(self.arrival, self.departure)]


def poisson_arrivals(rate_rps: float, n: int, rng: random.Random) -> list[float]:
    """n arrival times in ms, exponential gaps of mean 1000 / rate_rps."""
    t, out = 0.0, []
    mean_gap = 1000.0 / rate_rps
    for _ in range(n):
        t += rng.expovariate(1.0) * mean_gap
        out.append(t)
    return out


def service_sampler(service_ms: float, cv2: float, rng: random.Random):
    """Draws of the service time in ms: constant (cv2 0), exponential (1), gamma otherwise."""
    if cv2 == 0:
        return lambda: service_ms
    if cv2 == 1:
        return lambda: rng.expovariate(1.0) * service_ms
    shape = 1.0 / cv2
    scale = service_ms / shape
    return lambda: rng.gammavariate(shape, scale)


def serve(arrivals: Sequence[float], servers: int, service_ms: float, cv2: float, seed: int) -> Served:
    """Run the requests arriving at `arrivals` (sorted, ms) through `servers` FIFO servers."""
    rng = random.Random(seed)
    draw = service_sampler(service_ms, cv2, rng)
    free_at = [0.0] * servers  # a heap: when each server is next idle
    waits, departures = [], []
    for a in arrivals:
        free = heapq.heappop(free_at)
        start = a if a > free else free
        end = start + draw()
        heapq.heappush(free_at, end)
        waits.append(start - a)
        departures.append(end)
    return Served(list(arrivals), waits, departures)


def simulate(rate_rps: float, service_ms: float, servers: int, cv2: float, n: int, seed: int,
             warmup: int = 0) -> Served:
    """An M/G/c queue: n Poisson arrivals; the first `warmup` requests (the queue filling up from
    empty) are dropped from the result."""
    rng = random.Random(seed)
    served = serve(poisson_arrivals(rate_rps, n + warmup, rng), servers, service_ms, cv2, seed + 1)
    return Served(served.arrival[warmup:], served.wait[warmup:], served.departure[warmup:])


def tandem(rate_rps: float, stages: Sequence[tuple[float, int, float]], n: int, seed: int,
           warmup: int = 0) -> list[float]:
    """End-to-end response times (ms) through FIFO stages in series, each (service_ms, servers,
    cv2): a request joins the next stage when it leaves the previous one."""
    rng = random.Random(seed)
    first = poisson_arrivals(rate_rps, n + warmup, rng)
    times = first
    for k, (service_ms, servers, cv2) in enumerate(stages):
        order = sorted(range(len(times)), key=times.__getitem__)  # with c > 1 requests overtake
        served = serve([times[i] for i in order], servers, service_ms, cv2, seed + 1 + k)
        leave = [0.0] * len(times)
        for pos, i in enumerate(order):
            leave[i] = served.departure[pos]
        times = leave
    return [d - a for a, d in zip(first[warmup:], times[warmup:])]


def quantile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 < p < 100) by the nearest rank: the smallest value that at least
    p % of the values do not exceed."""
    ordered = sorted(values)
    k = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[k - 1]


def standard_error(values: Sequence[float], stat, batches: int = 20) -> float:
    """The standard error of stat(values) by batch means: the values cut into `batches`
    consecutive runs, stat of each, their standard deviation / sqrt(batches). Consecutive
    waits are correlated (a long busy period spans many requests), so batches of thousands of
    requests are what makes them roughly independent; the simple standard error would be far
    too small."""
    size = len(values) // batches
    per_batch = [stat(values[i * size:(i + 1) * size]) for i in range(batches)]
    return statistics.stdev(per_batch) / math.sqrt(batches)
