"""An open-loop run replayed through an ideal FIFO single server: what the latencies of that exact
schedule would have been had the site queued its requests exactly as the latency model assumes.

Lindley's recursion: request i arrives at a_i and needs S_i of service; it waits
W_i = max(0, W_{i-1} + S_{i-1} - (a_i - a_{i-1})), W_0 = 0. No queueing formula, no
distribution: the schedule and the service times the runtime measured, nothing else. It is the
independent check that the runtime's queue (one instance, FIFO) is the modeled one, and, fed
with a constant service time, what one schedule's percentiles are worth against the model's
long-run ones (a short run starts empty, and its p99 rests on a handful of busy periods).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fifo_waits(arrivals_ms: Sequence[float], service_ms: Sequence[float] | float) -> np.ndarray:
    """Each request's wait (ms) in one FIFO server, by Lindley's recursion; `arrivals_ms` sorted,
    `service_ms` one per request or one for all."""
    arrivals = np.asarray(arrivals_ms, dtype=float)
    service = np.broadcast_to(np.asarray(service_ms, dtype=float), arrivals.shape)
    waits = np.zeros(len(arrivals))
    for i in range(1, len(arrivals)):
        waits[i] = max(0.0, waits[i - 1] + service[i - 1] - (arrivals[i] - arrivals[i - 1]))
    return waits


def ideal_percentiles(arrivals_ms: Sequence[float], service_ms: float) -> dict[str, float]:
    """p50 and p99 (ms) of the response (wait + service) of a constant-service FIFO server on this schedule."""
    response = fifo_waits(arrivals_ms, service_ms) + service_ms
    return {"p50_ms": float(np.percentile(response, 50)), "p99_ms": float(np.percentile(response, 99))}


def replay_report(report: dict) -> dict[str, float]:
    """The run of a `planner bench --rate --json` report replayed: each answered request left when
    it actually left (its scheduled time plus the sender's lateness) and kept its measured
    service time and the rest of its latency (hops, the client, the server's own work), but
    waited what the ideal FIFO server makes it wait instead of what the runtime's queue did.

    The p50 and p99 (ms) of the replayed and of the measured latencies, and of the two waits.
    Every request of the report must have been answered (a failed one has no service time)."""
    requests = report["requests"]
    failed = [q for q in requests if q["ms"] is None]
    if failed:
        raise ValueError(f"{len(failed)} request(s) failed: nothing to replay ({failed[0]['error']})")
    sent = [q["at_ms"] + q["late_ms"] for q in requests]
    order = np.argsort(sent, kind="stable")  # a late sender may reorder nothing, but be sure
    service = np.array([q["service_ms"] for q in requests])[order]
    measured = np.array([q["ms"] for q in requests])[order]
    queued = np.array([q["queue_ms"] for q in requests])[order]
    waits = fifo_waits(np.array(sent)[order], service)
    replayed = measured - queued + waits
    return {"p50_ms": float(np.percentile(replayed, 50)), "p99_ms": float(np.percentile(replayed, 99)),
            "measured_p50_ms": float(np.percentile(measured, 50)),
            "measured_p99_ms": float(np.percentile(measured, 99)),
            "wait_p50_ms": float(np.percentile(waits, 50)), "wait_p99_ms": float(np.percentile(waits, 99)),
            "measured_wait_p50_ms": float(np.percentile(queued, 50)),
            "measured_wait_p99_ms": float(np.percentile(queued, 99))}
