"""An open-loop run replayed through an ideal FIFO queue of c servers (one by default): what the
latencies of that exact schedule would have been had the site queued its requests exactly as the
latency model assumes.

Request i arrives at a_i and needs S_i of service; it starts when it has arrived and the
earliest-free server frees (FIFO: requests start in arrival order), W_i = max(0, F_i - a_i). With
one server that is Lindley's recursion, W_i = max(0, W_{i-1} + S_{i-1} - (a_i - a_{i-1})). No
queueing formula, no distribution: the schedule and the service times the runtime measured,
nothing else. It is the independent check that the runtime's queue (FIFO over a model's
instances) is the modeled one, and, fed
with a constant service time, what one schedule's percentiles are worth against the model's
long-run ones (a short run starts empty, and its p99 rests on a handful of busy periods).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np


def fifo_waits(arrivals_ms: Sequence[float], service_ms: Sequence[float] | float, servers: int = 1,
               handover_ms: float = 0.0) -> np.ndarray:
    """Each request's wait (ms) in a FIFO queue of `servers`; `arrivals_ms` sorted, `service_ms`
    one per request or one for all; a request that waited starts `handover_ms` after its server
    freed (the server held meanwhile)."""
    arrivals = np.asarray(arrivals_ms, dtype=float)
    service = np.broadcast_to(np.asarray(service_ms, dtype=float), arrivals.shape)
    waits = np.zeros(len(arrivals))
    free = [float("-inf")] * servers  # when each server frees, a heap
    for i, at in enumerate(arrivals):
        freed = heapq.heappop(free)
        start = freed + handover_ms if freed > at else at
        waits[i] = start - at
        heapq.heappush(free, start + service[i])
    return waits


def ideal_percentiles(arrivals_ms: Sequence[float], service_ms: float, servers: int = 1) -> dict[str, float]:
    """p50 and p99 (ms) of the response (wait + service) of a constant-service FIFO queue of
    `servers` on this schedule."""
    response = fifo_waits(arrivals_ms, service_ms, servers) + service_ms
    return {"p50_ms": float(np.percentile(response, 50)), "p99_ms": float(np.percentile(response, 99))}


def replay_report(report: dict, servers: int = 1) -> dict[str, float]:
    """The run of a `planner bench --rate --json` report replayed: each answered request left when
    it actually left (its scheduled time plus the sender's lateness) and kept its measured
    service time and the rest of its latency (hops, the client, the server's own work), but
    waited what the ideal FIFO queue of `servers` makes it wait instead of what the runtime's did.

    That queue hands a freed server to the next waiting request in the mean handover the run
    measured (`handover_mean`: one number for the whole run, the runtime's cost of a turn, as a
    server's speed is; a request's own handover is in its measured wait, which the replay drops).

    The p50 and p99 (ms) of the replayed and of the measured latencies, of the two waits, and the
    handover used. Every request of the report must have been answered (a failed one has no
    service time)."""
    requests = report["requests"]
    failed = [q for q in requests if q["ms"] is None]
    if failed:
        raise ValueError(f"{len(failed)} request(s) failed: nothing to replay ({failed[0]['error']})")
    sent = [q["at_ms"] + q["late_ms"] for q in requests]
    order = np.argsort(sent, kind="stable")  # a late sender may reorder nothing, but be sure
    service = np.array([q["service_ms"] for q in requests])[order]
    measured = np.array([q["ms"] for q in requests])[order]
    queued = np.array([q["queue_ms"] for q in requests])[order]
    handover = handover_mean(requests)
    waits = fifo_waits(np.array(sent)[order], service, servers, handover)
    replayed = measured - queued + waits
    return {"p50_ms": float(np.percentile(replayed, 50)), "p99_ms": float(np.percentile(replayed, 99)),
            "handover_ms": handover,
            "measured_p50_ms": float(np.percentile(measured, 50)),
            "measured_p99_ms": float(np.percentile(measured, 99)),
            "wait_p50_ms": float(np.percentile(waits, 50)), "wait_p99_ms": float(np.percentile(waits, 99)),
            "measured_wait_p50_ms": float(np.percentile(queued, 50)),
            "measured_wait_p99_ms": float(np.percentile(queued, 99))}


def handover_mean(requests: list[dict]) -> float:
    """The mean handover (ms) of the report's requests that waited (0 where none did, or where the
    runtime did not report handovers)."""
    handed = [q["handover_ms"] for q in requests if q.get("queue_ms") and q.get("handover_ms") is not None]
    return float(np.mean(handed)) if handed else 0.0
