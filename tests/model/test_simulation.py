"""The simulation of every site on one machine (planner.model.simulation), against
independent truths: the queueing model's closed forms where nothing shares the cores, and
hand-computed processor sharing where everything does."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from planner.model.simulation import Stage, core_utilization, fair_rates, simulate, slowed
from planner.model.queueing import Queue
from tests.model.queue_sim import poisson_arrivals

ARRIVAL = (("", 0.0),)


@pytest.mark.parametrize("threads, cores, want", [
    ([1, 1], 2, [1, 1]),
    ([2, 2], 2, [1, 1]),
    ([1, 2, 2], 2, [2 / 3, 2 / 3, 2 / 3]),
    ([1, 4], 3, [1, 2]),
    ([4, 1], 3, [2, 1]),
    ([1, 1], 8, [1, 1]),
])
def test_fair_rates_are_max_min_fair_and_capped_at_the_threads(threads, cores, want):
    assert fair_rates(threads, cores) == pytest.approx(want)


def fifo_responses(arrivals: list[float], service: float, servers: int, handover: float = 0.0) -> list[float]:
    """Exact FIFO with constant service on `servers` servers: each request, in arrival order, starts
    on the server free first (Kiefer-Wolfowitz; Lindley's recursion for one server); one that
    found it busy starts `handover` after it frees."""
    free = [0.0] * servers
    out = []
    for a in arrivals:
        k = min(range(servers), key=free.__getitem__)
        free[k] = (free[k] + handover if free[k] > a else a) + service
        out.append(free[k] - a)
    return out


@pytest.mark.parametrize("servers, utilization", [(1, 0.6), (1, 0.9), (2, 0.8), (3, 0.95)])
def test_one_model_with_cores_to_spare_is_a_fifo_queue(servers, utilization):
    """Cores enough for every server: every request's response is the exact FIFO queue's."""
    service = 30.0
    rate = utilization * servers * 1000 / service
    arrivals = poisson_arrivals(rate, 5000, random.Random(5))
    run = simulate([Stage("m", service, 1, servers, ARRIVAL)], [("m", 0.0)], 0, cores=servers, arrivals_ms=arrivals)
    assert run.responses_ms == pytest.approx(fifo_responses(arrivals, service, servers), abs=1e-6)
    assert max(run.responses_ms) > 3 * service  # it did queue


@pytest.mark.parametrize("servers, utilization, handover", [(1, 0.8, 1.0), (2, 0.9, 2.5)])
def test_a_request_that_waited_starts_a_handover_after_its_server_frees(servers, utilization, handover):
    """The runtime's cost of a turn: only a request that found every server busy pays it, each
    time a server is handed on to it, the server held meanwhile (so it lengthens the busy period
    behind it too); every response is the FIFO recursion's with the same rule."""
    service = 30.0
    rate = utilization * servers * 1000 / service
    arrivals = poisson_arrivals(rate, 4000, random.Random(11))
    stage = Stage("m", service, 1, servers, ARRIVAL, handover_ms=handover)
    run = simulate([stage], [("m", 0.0)], 0, cores=servers, arrivals_ms=arrivals)
    assert run.responses_ms == pytest.approx(fifo_responses(arrivals, service, servers, handover), abs=1e-6)
    without = simulate([replace(stage, handover_ms=0.0)], [("m", 0.0)], 0, cores=servers, arrivals_ms=arrivals)
    waited = sum(1 for r in without.responses_ms if r > service + 1e-9)
    # more than handover x the requests that waited: each turn delays everyone queued behind it
    assert sum(run.responses_ms) - sum(without.responses_ms) > handover * waited > 0
    alone = simulate([stage], [("m", 0.0)], 0, cores=servers, arrivals_ms=[0.0, 100.0, 200.0])
    assert alone.responses_ms == pytest.approx([service] * 3)  # nobody waited: no handover


def test_handovers_hold_no_core():
    """While a server is handed on, its model runs nothing. One core, a (10 ms, handover 4 ms) and
    b (6 ms) for each of two requests at 0 and 1 ms, by hand: a0 and b0 share the core, b0 ends at
    12, b1 (no handover) starts; a0 ends at 20; a1 is handed on until 24, so b1 runs its last 2 ms
    alone (ends 22: 10 ms) and a1 runs alone (24-34). Without the handover a1 would share 20-24
    with b1: both runs 12 ms."""
    stages = [Stage("a", 10.0, 1, 1, ARRIVAL, handover_ms=4.0), Stage("b", 6.0, 1, 1, ARRIVAL)]
    sinks = [("a", 0.0), ("b", 0.0)]
    run = simulate(stages, sinks, 0, cores=1, arrivals_ms=[0.0, 1.0])
    assert run.runs_ms["a"] == pytest.approx([20.0, 10.0])
    assert run.runs_ms["b"] == pytest.approx([12.0, 10.0])
    assert run.responses_ms == pytest.approx([20.0, 33.0])
    without = simulate([replace(stages[0], handover_ms=0.0), stages[1]], sinks, 0, cores=1, arrivals_ms=[0.0, 1.0])
    assert without.runs_ms["a"][1] == pytest.approx(12.0) and without.runs_ms["b"][1] == pytest.approx(12.0)


def test_the_long_run_is_the_queueing_model_where_nothing_shares_the_cores():
    """Poisson arrivals drawn by the simulation itself: M/D/2 at 60 %, whose p50 and p99 the
    queueing model gives within its stated error (its simulation-checked few %)."""
    rate = 0.6 * 2 * 1000 / 30
    run = simulate([Stage("m", 30.0, 1, 2, ARRIVAL)], [("m", 0.0)], rate, cores=2, requests=50_000)
    queue = Queue(rate, 30.0, 2)
    for q in (50, 99):
        assert run.percentile(q) == pytest.approx(queue.response_ms(q), rel=0.05), q
    assert run.utilization == pytest.approx(core_utilization([Stage("m", 30.0)], rate, 2), rel=0.02)


def test_models_running_at_once_share_the_cores():
    """One request at a time (arrivals 1000 s apart): two models fed by the arrival, 2 threads
    each, run together. On 2 cores each gets one: 10 ms of work on 2 threads (20 core-ms) at one
    core ends at 20 ms, and the slower one (30 ms alone) has then 40 core-ms left on 2 cores: 20 ms
    more. On 4 cores nothing is shared: 30 ms, the slower one alone."""
    stages = [Stage("a", 10.0, 2, 1, ARRIVAL), Stage("b", 30.0, 2, 1, ARRIVAL)]
    sinks = [("a", 0.0), ("b", 0.0)]
    shared = simulate(stages, sinks, rate_rps=0.001, cores=2, requests=20)
    assert shared.responses_ms == pytest.approx([40.0] * len(shared.responses_ms))
    apart = simulate(stages, sinks, rate_rps=0.001, cores=4, requests=20)
    assert apart.responses_ms == pytest.approx([30.0] * len(apart.responses_ms))


def test_a_chain_alone_takes_its_services_and_hops():
    stages = [Stage("a", 5.0, 2, 1, ARRIVAL), Stage("b", 7.0, 1, 1, (("a", 1.5),)),
              Stage("c", 2.0, 2, 1, (("a", 0.0), ("b", 0.25)))]
    run = simulate(stages, [("c", 0.5), ("a", 0.0)], rate_rps=0.001, cores=2, requests=10)
    assert run.responses_ms == pytest.approx([5 + 1.5 + 7 + 0.25 + 2 + 0.5] * len(run.responses_ms))
    assert {k: sorted(set(round(v, 9) for v in runs)) for k, runs in run.runs_ms.items()} == {
        "a": [5.0], "b": [7.0], "c": [2.0]}  # each run alone: its profile


def stepped(stages: list[Stage], sink: str, arrivals: list[float], cores: int, dt: float) -> list[float]:
    """The same model by fixed time steps (a chain of single-server stages, no hops): every `dt` ms,
    each running stage does its fair share of work; the independent re-implementation."""
    n = len(stages)
    waiting = [[] for _ in stages]  # FIFO of requests per stage
    running: list[list | None] = [None] * n  # [request, core-ms left]
    done, t, nxt = {}, 0.0, 0
    while len(done) < len(arrivals):
        while nxt < len(arrivals) and arrivals[nxt] <= t + 1e-9:
            waiting[0].append(nxt)
            nxt += 1
        for i, s in enumerate(stages):
            if running[i] is None and waiting[i]:
                running[i] = [waiting[i].pop(0), s.service_ms * s.threads]
        active = [i for i in range(n) if running[i] is not None]
        for i, rate in zip(active, fair_rates([stages[i].threads for i in active], cores)):
            running[i][1] -= rate * dt
        t += dt
        for i in active:
            if running[i][1] <= 1e-9:
                request = running[i][0]
                running[i] = None
                if stages[i].name == sink:
                    done[request] = t - arrivals[request]
                else:
                    waiting[i + 1].append(request)
    return [done[i] for i in range(len(arrivals))]


def test_the_simulation_is_a_step_by_step_replay_of_the_same_model():
    """A chain of three models sharing 2 cores, busy (arrivals every 12-40 ms against 26 ms of
    work on 2 cores): each request's response equals a fixed-step re-implementation's to the step."""
    stages = [Stage("a", 6.0, 2, 1, ARRIVAL), Stage("b", 9.0, 1, 1, (("a", 0.0),)),
              Stage("c", 8.0, 2, 1, (("b", 0.0),))]
    gaps = [12, 40, 15, 13, 30, 12, 12, 25, 14, 33, 12, 18, 12, 12, 40, 20, 16, 12, 35, 13] * 5
    arrivals = [float(sum(gaps[:i])) for i in range(len(gaps))]
    dt = 0.01
    want = stepped(stages, "c", arrivals, 2, dt)
    run = simulate(stages, [("c", 0.0)], 0, cores=2, arrivals_ms=arrivals)
    assert max(want) > 2 * (6 + 9 + 8)  # requests did queue and share
    assert run.responses_ms == pytest.approx(want, abs=3 * dt)


def test_the_same_inputs_give_the_same_numbers():
    stages = [Stage("a", 12.0, 2, 1, ARRIVAL)]
    first = simulate(stages, [("a", 0.0)], 40.0, cores=2, requests=2000, seed=3)
    again = simulate(stages, [("a", 0.0)], 40.0, cores=2, requests=2000, seed=3)
    assert first.responses_ms == again.responses_ms


def test_simulate_refuses_what_it_cannot_run():
    with pytest.raises(ValueError):
        simulate([Stage("a", 1.0, 1, 1, ARRIVAL)], [("a", 0.0)], 0.0, cores=2)


def test_models_on_different_sites_do_not_share_cores():
    """The same two models as above, 2 threads each, on two sites of 2 cores each: nothing shared,
    30 ms; on one 2-core site, 40 ms."""
    a, b = Stage("a", 10.0, 2, 1, ARRIVAL, pool="edge"), Stage("b", 30.0, 2, 1, ARRIVAL, pool="mec")
    sinks = [("a", 0.0), ("b", 0.0)]
    apart = simulate([a, b], sinks, rate_rps=0.001, cores={"edge": 2, "mec": 2}, requests=10)
    assert apart.responses_ms == pytest.approx([30.0] * len(apart.responses_ms))
    together = simulate([a, Stage("b", 30.0, 2, 1, ARRIVAL, pool="edge")], sinks, rate_rps=0.001,
                        cores={"edge": 2, "mec": 2}, requests=10)
    assert together.responses_ms == pytest.approx([40.0] * len(together.responses_ms))
    with pytest.raises(ValueError):
        simulate([a, b], sinks, 1.0, cores={"edge": 2})


def test_a_run_that_mostly_waits_keeps_its_time_beside_another_that_takes_every_core():
    """busy_cores: a 2-thread model that keeps 0.5 core busy alone (CPU time / wall time, as the
    served pass measures it) next to a 2-thread model that keeps both cores busy, both started at
    0 on 2 cores. By hand, water-filling: caps 0.5 and 2 on 2 cores -> 0.5 and 1.5. a needs
    40 ms x 0.5 = 20 core-ms at 0.5: done at 40 ms, its time alone; b has 120 core-ms, 60 done by
    40 ms at 1.5, the other 60 at 2 cores: done at 70 ms (alone: 60). Counted as threads x time
    instead (busy_cores None), a would get 1 core and take 80 ms, b 1 core too."""
    a = Stage("a", 40.0, 2, 1, ARRIVAL, busy_cores=0.5)
    b = Stage("b", 60.0, 2, 1, ARRIVAL)
    run = simulate([a, b], [("a", 0.0), ("b", 0.0)], 0, cores=2, arrivals_ms=[0.0])
    assert run.runs_ms["a"] == pytest.approx([40.0]) and run.runs_ms["b"] == pytest.approx([70.0])
    assert run.busy_core_ms == pytest.approx(20.0 + 120.0)
    as_threads = simulate([Stage("a", 40.0, 2, 1, ARRIVAL), b], [("a", 0.0), ("b", 0.0)], 0, cores=2,
                          arrivals_ms=[0.0])
    assert as_threads.runs_ms["a"] == pytest.approx([80.0]) and as_threads.runs_ms["b"] == pytest.approx([100.0])


@pytest.mark.parametrize("busy, want", [(None, 2.0), (0.5, 0.5), (3.0, 2.0), (0.0, 0.01)])
def test_the_cores_a_run_uses_are_its_measured_share_at_most_its_threads(busy, want):
    """And never none: a run of no cores would never end."""
    assert Stage("m", 10.0, 2, busy_cores=busy).cores_alone == pytest.approx(want)
    assert core_utilization([Stage("m", 10.0, 2, busy_cores=busy)], 50.0, 2) == pytest.approx(0.5 * want / 2 * 1)


def test_contention_charges_crowded_work_only():
    """Two 2-thread models of 60 ms from 0 on 2 cores, contention 1.5: crowded all along, each
    holds 1 core and does 1 / 1.5 core-ms of its 120 per ms: both end at 180 ms (at no cost,
    120), the cores busy 360 core-ms, all of it crowded. One model alone is never crowded: 60 ms
    whatever the contention."""
    m = [Stage("a", 60.0, 2, 1, ARRIVAL), Stage("b", 60.0, 2, 1, ARRIVAL)]
    sinks = [("a", 0.0), ("b", 0.0)]
    run = simulate(m, sinks, 0, cores=2, arrivals_ms=[0.0], contention=1.5)
    assert run.responses_ms == pytest.approx([180.0])
    assert run.busy_core_ms == pytest.approx(360.0) and run.crowded_core_ms == pytest.approx(360.0)
    fair = simulate(m, sinks, 0, cores=2, arrivals_ms=[0.0])
    assert fair.responses_ms == pytest.approx([120.0]) and fair.crowded_core_ms == pytest.approx(240.0)
    alone = simulate(m[:1], sinks[:1], 0, cores=2, arrivals_ms=[0.0], contention=3.0)
    assert alone.responses_ms == pytest.approx([60.0]) and alone.crowded_core_ms == 0.0
    with pytest.raises(ValueError, match="contention"):
        simulate(m, sinks, 0, cores=2, arrivals_ms=[0.0], contention=0.5)


def test_runs_of_varying_length_wait_as_pollaczek_khinchine_says():
    """One server, Poisson arrivals, runs of 10, 10 or 70 ms drawn with equal chance (samples; the
    stage's service_ms is their median, 10, as the served pass gives it): an M/G/1 queue, whose
    mean wait is lambda E[S^2] / (2 (1 - rho)) (Pollaczek-Khinchine) with rho from the runs' mean
    (30 ms), not their median: 42.5 ms, against 22.5 ms for runs of 30 ms each (E[S^2] 1700
    against 900 ms^2)."""
    rate = 20.0  # rho = 0.6
    lam = rate / 1000
    varying = [Stage("m", 10.0, 1, 1, ARRIVAL, samples_ms=(10.0, 10.0, 70.0))]
    run = simulate(varying, [("m", 0.0)], rate, cores=1, requests=100_000)
    fixed = simulate([Stage("m", 30.0, 1, 1, ARRIVAL)], [("m", 0.0)], rate, cores=1, requests=100_000)

    def mean_wait(es2: float) -> float:
        return lam * es2 / (2 * (1 - lam * 30.0))

    assert sum(run.responses_ms) / len(run.responses_ms) - 30.0 == pytest.approx(mean_wait(1700.0), rel=0.05)
    assert sum(fixed.responses_ms) / len(fixed.responses_ms) - 30.0 == pytest.approx(mean_wait(900.0), rel=0.05)
    assert core_utilization(varying, rate, 1) == pytest.approx(0.6)
    assert run.utilization == pytest.approx(0.6, abs=0.01)


def test_a_machine_k_times_slower_is_the_same_run_on_a_clock_k_times_slower():
    """Time rescaling: with every run k times longer and every arrival k times later, each response
    is k times longer (shared cores, samples and the contention toll included). `slowed` leaves the
    links' hop delays as they are, so they are 0 here."""
    import random

    rng = random.Random(3)
    arrivals = sorted(rng.uniform(0, 4000) for _ in range(300))
    stages = [Stage("a", 12.0, threads=2, servers=1, inputs=ARRIVAL, samples_ms=(8.0, 12.0, 30.0)),
              Stage("b", 20.0, threads=1, servers=2, inputs=(("a", 0.0),), busy_cores=0.7),
              Stage("c", 5.0, threads=2, servers=1, inputs=(("a", 0.0),), samples_ms=(4.0, 6.0, 5.0))]
    sinks = [("b", 0.0), ("c", 0.0)]
    base = simulate(stages, sinks, 0, 2, arrivals_ms=arrivals, contention=1.3)
    for k in (1.1, 1.5):
        slow = simulate(slowed(stages, k), sinks, 0, 2, arrivals_ms=[k * a for a in arrivals], contention=1.3)
        assert slow.responses_ms == pytest.approx([k * r for r in base.responses_ms], rel=1e-9)
    # on the same schedule, a slower machine only ever answers later
    later = simulate(slowed(stages, 1.25), sinks, 0, 2, arrivals_ms=arrivals, contention=1.3)
    assert all(s >= r - 1e-9 for s, r in zip(later.responses_ms, base.responses_ms))
    assert later.percentile(99) > 1.25 * base.percentile(99)  # the queues grow more than the runs
    assert slowed(stages, 2)[0].inputs == stages[0].inputs and slowed(stages, 2)[1].busy_cores == 0.7
