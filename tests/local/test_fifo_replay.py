"""The replay of tests/local/fifo_replay.py against hand-computed waits and against the
discrete-event simulation of tests/model/queue_sim.py (its own code, one and two servers)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.local.fifo_replay import fifo_waits, ideal_percentiles, replay_report
from tests.model.queue_sim import poisson_arrivals, serve


def test_waits_by_hand():
    # arrivals 0, 5, 6, 30 ms; services 10, 4, 2, 1: the second waits 5, the third 5 + 4 - 1 = 8
    assert fifo_waits([0, 5, 6, 30], [10, 4, 2, 1]).tolist() == [0, 5, 8, 0]
    assert fifo_waits([0, 1, 2], 3.0).tolist() == [0, 2, 4]


def test_two_servers_waits_by_hand():
    # four at once, 10 ms each: two start, two wait for them; a fifth at 15 takes the first free (20)
    assert fifo_waits([0, 0, 0, 0, 15], 10.0, servers=2).tolist() == [0, 0, 10, 10, 5]
    # the second server takes the second request while the first is busy; nobody waits
    assert fifo_waits([0, 5, 12], [10, 10, 1], servers=2).tolist() == [0, 0, 0]


def test_a_waiting_request_starts_a_handover_after_its_server_frees():
    # 10 ms each: the second waits 10 - 5 + 1, the third 10 + 1 + 10 + 1 - 6; the fourth finds it free
    assert fifo_waits([0, 5, 6, 40], 10.0, handover_ms=1.0).tolist() == [0, 6, 16, 0]
    # two servers: only the third and fourth wait; each takes its server 1 ms after it frees
    assert fifo_waits([0, 0, 0, 0], 10.0, servers=2, handover_ms=1.0).tolist() == [0, 0, 11, 11]


@pytest.mark.parametrize("servers", [1, 2])
def test_constant_service_waits_are_the_simulations(servers):
    arrivals = poisson_arrivals(40 * servers, 5000, random.Random(3))
    simulated = serve(arrivals, servers, 20.0, 0.0, seed=4)
    assert fifo_waits(arrivals, 20.0, servers) == pytest.approx(simulated.wait, abs=1e-9)
    response = np.array(simulated.response)
    ideal = ideal_percentiles(arrivals, 20.0, servers)
    assert ideal == pytest.approx({"p50_ms": np.percentile(response, 50), "p99_ms": np.percentile(response, 99)})


def test_a_report_replayed_keeps_each_requests_hops_and_service():
    """Three requests 10 ms apart, 15 ms of service, 2 ms of hops: the runtime waited 1 ms longer
    than the ideal server for the second (5 ms) and the third (10 ms)."""
    rows = [{"at_ms": 0.0, "late_ms": 0.0, "ms": 17.0, "queue_ms": 0.0, "service_ms": 15.0, "error": None},
            {"at_ms": 10.0, "late_ms": 0.0, "ms": 23.0, "queue_ms": 6.0, "service_ms": 15.0, "error": None},
            {"at_ms": 20.0, "late_ms": 0.0, "ms": 29.0, "queue_ms": 12.0, "service_ms": 15.0, "error": None}]
    r = replay_report({"requests": rows})
    assert r["p50_ms"] == pytest.approx(22.0) and r["measured_p50_ms"] == pytest.approx(23.0)
    assert r["wait_p99_ms"] == pytest.approx(np.percentile([0, 5, 10], 99))
    with pytest.raises(ValueError, match="1 request"):
        replay_report({"requests": rows + [{"at_ms": 30.0, "late_ms": 0.0, "ms": None, "error": "INTERNAL: x"}]})


def test_a_report_replayed_uses_the_mean_handover_of_the_requests_that_waited():
    """The second and third waited, their handovers 1 and 3 ms: the replay's server takes 2 ms to
    hand over; the first, which found it free, reported none and counts for nothing."""
    rows = [{"at_ms": 0.0, "late_ms": 0.0, "ms": 17.0, "queue_ms": 0.0, "service_ms": 15.0, "handover_ms": 0.0,
             "error": None},
            {"at_ms": 10.0, "late_ms": 0.0, "ms": 23.0, "queue_ms": 6.0, "service_ms": 15.0, "handover_ms": 1.0,
             "error": None},
            {"at_ms": 20.0, "late_ms": 0.0, "ms": 32.0, "queue_ms": 15.0, "service_ms": 15.0, "handover_ms": 3.0,
             "error": None}]
    r = replay_report({"requests": rows})
    assert r["handover_ms"] == pytest.approx(2.0)
    # waits 0, 5 + 2, 7 + 15 + 2 - 10 = 14: latencies 17, 24, 31
    assert r["wait_p99_ms"] == pytest.approx(np.percentile([0, 7, 14], 99))
    assert r["p50_ms"] == pytest.approx(24.0)
