"""The served pass of `planner bench --rate` (planner.local.served): its medians from the runtime's
timings, and the stages the prediction simulates from them, checked by hand and, end to end,
through the simulation."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from planner.local.served import CLIENT, OUTSIDE, Served, contention, served_stages, summarize_pass
from planner.model.simulation import Stage, simulate
from tests.model.queue_sim import poisson_arrivals


def timing(kind: str, name: str, site: str, ms: float, cpu_ms: float | None = None) -> list:
    """One entry of the runtime's `timings`, as planner_runtime.executor.Timing.as_list writes it."""
    return [kind, name, site, ms, 0, "", cpu_ms]


def test_the_pass_takes_each_models_and_hops_median_and_the_rest_is_the_clients():
    answers = [
        (30.0, [timing("queue", "a", "edge", 0.0), timing("model", "a", "edge", 10.0, 19.0),
                timing("hop", "edge->mec", "edge", 2.0), timing("model", "b", "mec", 12.0, 1.0)]),
        (40.0, [timing("queue", "a", "edge", 1.0), timing("model", "a", "edge", 14.0, 27.0),
                timing("hop", "edge->mec", "edge", 4.0), timing("model", "b", "mec", 12.0, 2.0)]),
        (33.0, [timing("queue", "a", "edge", 0.0), timing("model", "a", "edge", 12.0, 23.0),
                timing("hop", "edge->mec", "edge", 3.0), timing("model", "b", "mec", 13.0, 3.0)]),
    ]
    served = summarize_pass(answers, 0.25)
    assert served.requests == 3 and served.every_s == 0.25
    assert served.models == {"a": 12.0, "b": 12.0} and served.models_cpu == {"a": 23.0, "b": 2.0}
    assert served.hops == {("edge", "mec"): 3.0}
    # outside the runs, waits and hops: 30-24 = 6, 40-31 = 9, 33-28 = 5 -> median 6
    assert served.client_ms == 6.0 and served.e2e_ms == 33.0


def test_the_pass_keeps_each_requests_own_times_and_the_stages_carry_them_in_order():
    """Beside the medians, each answered request's times: the stages get them as samples, aligned
    request by request (sample i of every stage is request i's), a model or hop a request did
    not time taking the stage's median."""
    answers = [
        (30.0, [timing("model", "a", "edge", 10.0, 16.0), timing("hop", "edge->mec", "edge", 2.0),
                timing("model", "b", "mec", 12.0)]),
        (90.0, [timing("model", "a", "edge", 40.0, 64.0), timing("hop", "edge->mec", "edge", 4.0),
                timing("model", "b", "mec", 36.0)]),
        (20.0, [timing("model", "a", "edge", 12.0, 19.0)]),
    ]
    served = summarize_pass(answers, 0.25)
    assert [r["client_ms"] for r in served.runs] == [6.0, 10.0, 8.0]
    stages, sinks, sites = two_sites()
    out, _ = served_stages(stages, sinks, sites, "edge", served)
    by = {st.name: st for st in out}
    assert by["a"].samples_ms == (10.0, 40.0, 12.0) and by["a"].service_ms == 12.0
    assert by["b"].samples_ms == (12.0, 36.0, 24.0)  # the third request never reached b: b's median
    assert by[CLIENT].samples_ms == (6.0, 10.0, 8.0)
    hop = by[by["b"].inputs[0][0]]
    assert hop.samples_ms == (2.0, 4.0, 3.0)
    # the cores' load is the runs' mean, not their median: a at 1.6 cores, (10 + 40 + 12) / 3 ms
    assert by["a"].mean_ms == pytest.approx(62 / 3)


def test_a_request_of_the_pass_that_was_slow_everywhere_is_drawn_whole():
    """One request alone at a time, far apart: each simulated request takes one pass request's
    times for every stage, so its response is one of the pass's requests' (here 20 + 30 or
    60 + 90 ms, with no hops or client share), never a fast a with a slow b; both are drawn."""
    stages = [Stage("a", 20.0, 1, 1, (("", 0.0),), samples_ms=(20.0, 60.0)),
              Stage("b", 30.0, 1, 1, (("a", 0.0),), samples_ms=(30.0, 90.0))]
    run = simulate(stages, [("b", 0.0)], 0, cores=2, arrivals_ms=[1000.0 * k for k in range(200)])
    assert set(round(r, 6) for r in run.responses_ms) == {50.0, 150.0}


def test_timings_of_an_older_runtime_without_cpu_times_leave_the_threads_to_count():
    served = summarize_pass([(10.0, [["model", "a", "edge", 8.0, 0, ""]])], 0.1)
    assert served.models == {"a": 8.0} and served.models_cpu == {}
    [_, a], _ = served_stages([Stage("a", 5.0, 2, 1, (("", 0.0),))], [("a", 0.0)], {"a": "edge"}, "edge", served)
    assert a.service_ms == 8.0 and a.busy_cores is None and a.cores_alone == 2.0


def two_sites() -> tuple[list[Stage], list[tuple[str, float]], dict[str, str]]:
    """source -> a (edge, 2 threads) -> b (mec) -> sink (edge), and the source -> b too; hops as
    the prediction's loopback delays (1.0 ms)."""
    stages = [Stage("a", 20.0, 2, 1, (("", 0.0),)), Stage("b", 30.0, 1, 1, (("a", 1.0), ("", 1.0)))]
    return stages, [("b", 1.0)], {"a": "edge", "b": "mec"}


def test_served_stages_put_the_served_times_and_the_hops_on_the_cores():
    stages, sinks, sites = two_sites()
    served = Served(requests=5, every_s=0.2, models={"a": 25.0, "b": 30.0}, models_cpu={"a": 40.0},
                    hops={("edge", "mec"): 2.0, ("mec", "edge"): 1.5}, client_ms=4.0)
    out, out_sinks = served_stages(stages, sinks, sites, "edge", served)
    by = {s.name: s for s in out}
    assert by[CLIENT].service_ms == 4.0 and by[CLIENT].inputs == (("", 0.0),)
    assert by["a"].service_ms == 25.0 and by["a"].busy_cores == pytest.approx(1.6) and by["a"].inputs == ((CLIENT, 0.0),)
    assert by["b"].service_ms == 30.0 and by["b"].busy_cores is None
    # each crossing a hop stage of the served hop's time, one core, no queue
    assert [delay for _, delay in by["b"].inputs] == [0.0, 0.0]
    hop_a, hop_src = (by[name] for name, _ in by["b"].inputs)
    assert (hop_a.service_ms, hop_a.inputs, hop_a.threads) == (2.0, (("a", 0.0),), 1)
    assert (hop_src.service_ms, hop_src.inputs) == (2.0, ((CLIENT, 0.0),))
    [(back, delay)] = out_sinks
    assert delay == 0.0 and by[back].service_ms == 1.5 and by[back].inputs == (("b", 0.0),)
    assert all(s.servers >= 1 << 20 for s in out if s.name not in ("a", "b"))


def test_one_request_alone_takes_the_served_pass_end_to_end_with_its_hops_on_the_cores():
    """One request on 2 cores, by hand: the client's share 0-4 ms; then a (1.6 cores) and the
    source's hop to mec (1 core) start together, 2.6 cores wanted: water-filling gives the hop 1
    and a 1, so the hop ends at 6 ms, a has done 2 of its 40 core-ms and does the other 38 at 1.6
    cores: 29.75 ms; its hop to mec 2 ms, b 30 ms, the hop back 1.5 ms: 63.25 ms, where the
    served times one after another add up to 62.5 (a hop is CPU that the models wait for)."""
    stages, sinks, sites = two_sites()
    served = Served(requests=5, every_s=0.2, models={"a": 25.0, "b": 30.0}, models_cpu={"a": 40.0, "b": 29.0},
                    hops={("edge", "mec"): 2.0, ("mec", "edge"): 1.5}, client_ms=4.0)
    out, out_sinks = served_stages(stages, sinks, sites, "edge", served)
    run = simulate(out, out_sinks, 0, cores=2, arrivals_ms=[0.0])
    assert run.responses_ms == pytest.approx([63.25])


def test_the_machines_cpu_no_stage_carries_runs_after_the_answer():
    """The pass used 100 core-ms of the machine per request; the stages need, by hand, the
    client's share 4 + a 40 + b 29 + the hops 2 + 2 + 1.5 = 78.5; idle, the machine kept 0.05
    cores busy, 10 core-ms over each request's 0.2 s. The other 11.5 core-ms are one more stage
    on one core after the answer: one request alone still ends at 63.25 ms (above) while the
    machine does 90 core-ms, and a request sent as the first is answered shares the cores with it
    and ends later. Without the machine's CPU figures there is no such stage."""
    stages, sinks, sites = two_sites()
    served = Served(requests=5, every_s=0.2, models={"a": 25.0, "b": 30.0}, models_cpu={"a": 40.0, "b": 29.0},
                    hops={("edge", "mec"): 2.0, ("mec", "edge"): 1.5}, client_ms=4.0, cpu_per_request_ms=100.0,
                    idle_cores=0.05, wall_s=1.0)
    assert served.idle_per_request_ms == pytest.approx(10.0)
    out, out_sinks = served_stages(stages, sinks, sites, "edge", served)
    by = {s.name: s for s in out}
    assert by[OUTSIDE].service_ms == pytest.approx(11.5) and by[OUTSIDE].cores_alone == 1.0
    assert by[OUTSIDE].inputs == tuple(out_sinks) and by[OUTSIDE].servers >= 1 << 20
    alone = simulate(out, out_sinks, 0, cores=2, arrivals_ms=[0.0])
    assert alone.responses_ms == pytest.approx([63.25]) and alone.busy_core_ms == pytest.approx(90.0)
    after = simulate(out, out_sinks, 0, cores=2, arrivals_ms=[0.0, 63.25])
    assert after.responses_ms[1] > 63.25 + 0.5
    without = Served(**{**served.__dict__, "cpu_per_request_ms": None})
    assert OUTSIDE not in {s.name for s in served_stages(stages, sinks, sites, "edge", without)[0]}


def test_a_hop_the_pass_never_made_keeps_its_predicted_delay():
    stages, sinks, sites = two_sites()
    served = Served(requests=1, every_s=0.2, models={"a": 25.0, "b": 30.0}, client_ms=0.0)
    out, out_sinks = served_stages(stages, sinks, sites, "edge", served)
    b = next(s for s in out if s.name == "b")
    assert b.inputs == (("a", 1.0), (CLIENT, 1.0)) and out_sinks == [("b", 1.0)]


def apart(pattern: list[float], times: int = 5) -> list[float]:
    """`pattern` of arrivals (ms) repeated `times` times, each 1 s after the last: a pilot long
    enough to read a toll off (MIN_PILOT_REQUESTS), whose repeats never meet."""
    return [1000.0 * k + t for k in range(times) for t in pattern]


def test_the_toll_is_what_makes_the_simulated_pilot_use_the_cpu_it_measured():
    """One 2-thread model of 50 ms on two servers and 2 cores, a pilot of two requests at once:
    crowded for all of its 200 core-ms (100 per request), so a pilot that used 130 core-ms per
    request puts the toll at 1 + 30 / 100 = 1.3 (by hand); the simulation with that toll gives
    back the pilot's CPU. (On one server the second request would wait: nothing crowded.)"""
    stages = [Stage("m", 50.0, 2, 2, (("", 0.0),))]
    served = Served(requests=10, every_s=0.1, models={"m": 50.0}, e2e_ms=50.0, cpu_per_request_ms=100.0,
                    pilot_arrivals_ms=apart([0.0, 0.0]), pilot_cpu_per_request_ms=130.0)
    toll = contention(stages, [("m", 0.0)], served, 2)
    assert toll == pytest.approx(1.3, abs=0.005)
    pilot = simulate(stages, [("m", 0.0)], 0, cores=2, arrivals_ms=apart([0.0, 0.0]), contention=toll)
    assert pilot.busy_core_ms / 10 == pytest.approx(130.0, rel=0.005)


def test_the_toll_of_a_pilot_that_overlaps_only_in_part():
    """The same model, requests 25 ms apart: crowded from 25 to 50 ms only. With toll c, by
    hand: request 1 alone 0-25 ms does 50 core-ms; from 25 both hold 1 core at 1/c useful: the
    first needs 50 more (50c ms), the second does 50c / c = 50 in that time, then runs alone at
    2 cores for its last 50 (25 ms). CPU: 50 + 2 x 50c + 50 = 100 + 100c, per request 50 + 50c:
    a pilot of 110 core-ms per request gives c = 1.2."""
    stages = [Stage("m", 50.0, 2, 2, (("", 0.0),))]
    served = Served(requests=10, every_s=0.1, models={"m": 50.0}, e2e_ms=50.0, cpu_per_request_ms=100.0,
                    pilot_arrivals_ms=apart([0.0, 25.0]), pilot_cpu_per_request_ms=110.0)
    assert contention(stages, [("m", 0.0)], served, 2) == pytest.approx(1.2, abs=0.005)


@pytest.mark.parametrize("pilot_cpu, arrivals, want", [(90.0, apart([0.0, 0.0]), 1.0), (130.0, [], 1.0),
                                                       (None, apart([0.0, 0.0]), 1.0), (900.0, apart([0.0, 0.0]), 3.0),
                                                       (130.0, [0.0, 0.0], 1.0), (130.0, apart([0.0, 47.0]), 1.0)])
def test_no_toll_where_the_pilot_cost_nothing_more_or_was_not_run_or_too_short_and_a_cap(pilot_cpu, arrivals, want):
    """Too short: a pilot of 2 requests. Too little crowded: requests 47 ms apart, by hand at no
    cost: the first runs alone on 2 cores to 47 ms (94 of its 100 core-ms), then both hold a core
    until it ends at 53: 12 of the pair's 200 core-ms crowded, a share of 0.06 (0.1 needed)."""
    stages = [Stage("m", 50.0, 2, 2, (("", 0.0),))]
    served = Served(requests=10, every_s=0.1, models={"m": 50.0}, e2e_ms=50.0, cpu_per_request_ms=100.0,
                    pilot_arrivals_ms=arrivals, pilot_cpu_per_request_ms=pilot_cpu)
    assert contention(stages, [("m", 0.0)], served, 2) == want


def test_a_pilot_over_fair_sharing_by_no_more_than_its_noise_reads_no_toll():
    """The by-hand pairs again (fair sharing: 100 core-ms a request). Ten pairs 1 s apart span
    4.44 s (10 gaps of 0.444 s), so the pilot's CPU per request is known to 4 % x sqrt(10 /
    4.44) = 6 %: 104 core-ms is within it (no toll, and why), 110 is not (toll 1.1, as by hand
    1 + 10 / 100). Fifty pairs span 49.5 s, 1.8 %: there 104 reads a toll of 1.04."""
    from planner.local.served import pilot_cpu_noise_ms, toll_reading

    stages, sinks = [Stage("m", 50.0, 2, 2, (("", 0.0),))], [("m", 0.0)]
    served = Served(requests=10, every_s=0.1, models={"m": 50.0}, e2e_ms=50.0, cpu_per_request_ms=100.0,
                    pilot_arrivals_ms=apart([0.0, 0.0]), pilot_cpu_per_request_ms=104.0)
    assert pilot_cpu_noise_ms(served) == pytest.approx(0.04 * (10 / (4 * 10 / 9)) ** 0.5 * 104.0)
    toll, why = toll_reading(stages, sinks, served, 2)
    assert toll == 1.0 and "within its own noise" in why and "4.0 core-ms" in why
    assert toll_reading(stages, sinks, replace(served, pilot_cpu_per_request_ms=110.0), 2) == (
        pytest.approx(1.1, abs=0.005), None)
    long = replace(served, pilot_arrivals_ms=apart([0.0, 0.0], times=50))
    assert pilot_cpu_noise_ms(long) == pytest.approx(0.04 * (10 / (49 * 100 / 99)) ** 0.5 * 104.0)
    assert toll_reading(stages, sinks, long, 2) == (pytest.approx(1.04, abs=0.005), None)


def test_a_model_that_fits_the_cores_beside_another_request_is_never_crowded():
    """A 1-thread model on two servers and 2 cores: two requests at once run side by side
    uncrowded, so whatever the pilot cost, no toll is derived from it (the toll never applies)."""
    stages = [Stage("m", 50.0, 1, 2, (("", 0.0),))]
    served = Served(requests=10, every_s=0.1, models={"m": 50.0}, e2e_ms=50.0, cpu_per_request_ms=50.0,
                    pilot_arrivals_ms=apart([0.0, 0.0]), pilot_cpu_per_request_ms=70.0)
    assert contention(stages, [("m", 0.0)], served, 2) == 1.0


def test_cpu_the_machine_spent_beside_the_requests_one_at_a_time_is_no_toll():
    """The pass used 110 core-ms per request where its stages need 100: 10 went to something
    else (another process, the kernel) and the pilot carries as much, so a pilot of 140 is 130
    of the requests' own: toll 1.3, as a pilot of 130 with a pass that used exactly 100."""
    stages = [Stage("m", 50.0, 2, 2, (("", 0.0),))]
    served = Served(requests=10, every_s=0.1, models={"m": 50.0}, e2e_ms=50.0, cpu_per_request_ms=110.0,
                    pilot_arrivals_ms=apart([0.0, 0.0]), pilot_cpu_per_request_ms=140.0)
    assert contention(stages, [("m", 0.0)], served, 2) == pytest.approx(1.3, abs=0.005)


def test_a_disturbed_served_pass_is_taken_again_and_the_quieter_one_kept(monkeypatch):
    """measure_served: a prediction that calls its pass disturbed (the machine slower than its
    profiles) gets one more pass; the one that used less CPU per request is kept, and the notes
    say so. An undisturbed first pass is the only one."""
    from planner.local import open_loop

    passes = iter([500.0, 300.0, 999.0])
    taken = []

    def fake_pass(clients, request, n, every_s, timeout_s):
        taken.append(every_s)
        return Served(requests=n, every_s=every_s, models={"m": 1.0}, cpu_per_request_ms=next(passes))

    monkeypatch.setattr(open_loop, "served_pass", fake_pass)
    monkeypatch.setattr(open_loop, "send_on_schedule", lambda clients, request, times, timeout_s: [])
    monkeypatch.setattr(open_loop, "REPASS_WAIT_S", 0.0)

    def predict(served):
        return {"cpu": served.cpu_per_request_ms, "disturbed": served.cpu_per_request_ms > 400, "notes": []}

    kept, got = open_loop.measure_served([], None, 5, 4.0, 10.0, "poisson", 0, 1.0, predict)
    assert got["cpu"] == 300.0 and len(taken) == 2 and "taken twice" in got["notes"][0]
    assert kept.cpu_per_request_ms == 300.0
    passes = iter([350.0])
    kept, got = open_loop.measure_served([], None, 5, 4.0, 10.0, "poisson", 0, 1.0, predict)
    assert got["cpu"] == 350.0 and got["notes"] == [] and len(taken) == 3


def test_a_pass_whose_pilot_cost_less_is_taken_again(monkeypatch):
    """measure_served: a pilot at the rate that cost the machine 0.05 or more of its busy share
    less than the one-at-a-time pass (here 400 -> 350 core-ms at 4 rps on 2 cores: 0.1) means the
    machine moved between them; the pass is taken again and the cheaper one kept, saying why. A
    pilot that cost more (crowding, the toll) does not."""
    from planner.local import open_loop

    passes, pilots = iter([400.0, 330.0]), iter([350.0, 345.0])
    taken = []

    def fake_pass(clients, request, n, every_s, timeout_s):
        taken.append(every_s)
        return Served(requests=n, every_s=every_s, models={"m": 1.0}, cpu_per_request_ms=next(passes))

    def fake_pilot(clients, request, times, timeout_s):
        return [], next(pilots) * len(times)

    monkeypatch.setattr(open_loop, "served_pass", fake_pass)
    monkeypatch.setattr(open_loop, "send_measured", fake_pilot)
    monkeypatch.setattr(open_loop, "REPASS_WAIT_S", 0.0)
    monkeypatch.setattr(open_loop.os, "cpu_count", lambda: 2)

    def predict(served):
        return {"cpu": served.cpu_per_request_ms, "disturbed": False, "notes": []}

    kept, got = open_loop.measure_served([], None, 5, 4.0, 10.0, "poisson", 0, 1.0, predict)
    assert len(taken) == 2 and got["cpu"] == 330.0 and kept.pilot_cpu_per_request_ms == pytest.approx(345.0)
    assert got["notes"] == ["the served pass was taken twice (0 s apart), the first one disturbed (its pilot cost "
                            "less CPU per request than the pass, which crowding does not do); the one using less of the "
                            "machine's CPU per request is kept"]
    assert not open_loop.pilot_cheaper(kept, 4.0, 2)  # 330 -> 345: the toll's crowding
    assert open_loop.pilot_cheaper(replace(kept, cpu_per_request_ms=400.0), 4.0, 2)
    assert not open_loop.pilot_cheaper(replace(kept, cpu_per_request_ms=400.0), 4.0, 16)  # 0.0125 of 16 cores


def test_after_the_load_the_toll_is_fitted_to_the_cpu_the_load_used():
    """at_load_cpu takes the load as the pilot: the load's own schedule (pairs at once, as the
    by-hand toll test: 1 + 30 / 100) and the CPU it used, 130 core-ms per request, give the
    toll 1.3 and, by hand, each of a pair holds one core at 1 / 1.3 of its use for its 100
    core-ms of work: both end at 130 ms; a measured p50 of 156 ms is +20 % off it. Without a served pass, or without the load's CPU (off Linux), no check."""
    from planner.local.open_loop import at_load_cpu

    stages, sinks = [Stage("m", 50.0, 2, 2, (("", 0.0),))], [("m", 0.0)]
    served = Served(requests=10, every_s=0.1, models={"m": 50.0}, e2e_ms=50.0, cpu_per_request_ms=100.0)
    times = [t / 1000 for t in apart([0.0, 0.0])]

    def predict(s: Served) -> dict:
        toll = contention(stages, sinks, s, 2)
        run = simulate(stages, sinks, 0, cores=2, arrivals_ms=s.pilot_arrivals_ms, contention=toll)
        return {"p50_ms": run.percentile(50), "p99_ms": run.percentile(99), "contention": toll}

    check = at_load_cpu(served, times, 130.0 * len(times), predict, 156.0, 130.0)
    assert check["contention"] == pytest.approx(1.3, abs=0.005)
    assert check["p50_ms"] == pytest.approx(130.0, abs=0.7) and check["p99_ms"] == pytest.approx(130.0, abs=0.7)
    assert check["error_pct"]["p50"] == pytest.approx(20.0, abs=1.0) and check["error_pct"]["p99"] == pytest.approx(0.0, abs=1.0)
    assert at_load_cpu(None, times, 1300.0, predict, 78.0, 65.0) is None
    assert at_load_cpu(served, times, None, predict, 78.0, 65.0) is None


def test_the_report_holds_what_the_prediction_was_simulated_from():
    """as_dict's report has each request of the pass and the pilot's schedule: the prediction's
    stages and its toll come out the same from the report as from the pass (its figures rounded
    to the microsecond)."""
    answers = [(30.0 + k, [timing("model", "a", "edge", 10.0 + k, 16.0 + k), timing("hop", "edge->mec", "edge", 2.0),
                           timing("model", "b", "mec", 12.0 + 3 * k, 11.0)]) for k in range(7)]
    served = summarize_pass(answers, 0.25)
    served.cpu_per_request_ms, served.idle_cores, served.wall_s = 70.0, 0.01, 1.75
    served.pilot_arrivals_ms, served.pilot_cpu_per_request_ms = apart([0.0, 5.0, 10.0]), 95.0
    served.pilot_ms = [40.0 + k for k in range(len(served.pilot_arrivals_ms))]
    again = Served.from_dict(json.loads(json.dumps(served.as_dict())))
    assert again.pilot_ms == served.pilot_ms
    stages, sinks, sites = two_sites()
    assert served_stages(stages, sinks, sites, "edge", again) == served_stages(stages, sinks, sites, "edge", served)
    out, out_sinks = served_stages(stages, sinks, sites, "edge", served)
    toll = contention(out, out_sinks, served, 2)
    assert toll > 1.0 and contention(out, out_sinks, again, 2) == pytest.approx(toll)


def round_trip_pass() -> Served:
    """Seven requests through two_sites, each hop timed both ways, the machine's CPU beyond the
    stages' (an OUTSIDE stage): every stage of the prediction a measured one, no fixed delay left."""
    answers = [(30.0 + k, [timing("model", "a", "edge", 10.0 + k, 16.0 + k), timing("hop", "edge->mec", "edge", 2.0),
                           timing("model", "b", "mec", 12.0 + 3 * k, 11.0), timing("hop", "mec->edge", "mec", 1.0)])
               for k in range(7)]
    served = summarize_pass(answers, 0.25)
    served.cpu_per_request_ms, served.idle_cores, served.wall_s = 90.0, 0.01, 1.75
    return served


def test_the_slower_machine_is_the_served_prediction_on_a_slower_clock():
    """planner.local.prediction.slower_machine: every stage of the served pass (models, hops, the
    client's share, the CPU outside them) k times slower on the load's schedule. Checked by time
    rescaling: on a schedule k times longer it must answer each request exactly k times later
    than the served prediction on the schedule itself (the hops are the pass's measured stages,
    so no fixed delay is left), with the same toll."""
    import os

    from planner.local.prediction import slower_machine
    from planner.plan.margin import SLOWER

    served = round_trip_pass()
    stages, sinks, sites = two_sites()
    out, out_sinks = served_stages(stages, sinks, sites, "edge", served)
    assert OUTSIDE in {s.name for s in out} and all(d == 0 for s in out for _, d in s.inputs)
    schedule_s = [0.013 * i + 0.004 * (i % 3) for i in range(150)]
    base = simulate(out, out_sinks, 0, os.cpu_count() or 1, arrivals_ms=[1000 * t for t in schedule_s],
                    contention=1.2)
    points = slower_machine(out, out_sinks, schedule_s, 1.2)
    assert [p["slower"] for p in points] == list(SLOWER) and points[0]["p99_ms"] > base.percentile(99)
    assert [p["p99_ms"] for p in points] == sorted(p["p99_ms"] for p in points)
    for k in SLOWER:
        [p] = [p for p in slower_machine(out, out_sinks, [k * t for t in schedule_s], 1.2) if p["slower"] == k]
        assert p["p50_ms"] == pytest.approx(k * base.percentile(50), abs=2e-3)
        assert p["p99_ms"] == pytest.approx(k * base.percentile(99), abs=2e-3)
    assert slower_machine(out, out_sinks, None, 1.2) == []


@pytest.mark.parametrize("profiled_scale, a_ms, b_ms, cpu_per_request_ms, disturbed", [
    (1, 20.0, 30.0, 60.0, False),      # as profiled (a 20 ms, b 30 ms)
    (1, 22.0, 33.0, 400.0, False),     # the models as profiled, the sites' gRPC and python costly
    (1, 32.0, 38.0, 60.0, True),       # 70 ms of runs for 50 profiled: a slow spell, another job
    (1, 26.0, 40.0, 60.0, False),      # 66 for 50: within SERVED_SLOW_WARN and 1 ms a model
    (0.001, 0.05, 0.08, 60.0, False),  # 0.13 ms for 0.05: the runtime's own timing around tiny models
])
def test_a_pass_is_disturbed_when_its_models_ran_slower_than_their_profiles(profiled_scale, a_ms, b_ms,
                                                                            cpu_per_request_ms, disturbed):
    """served_prediction's `disturbed` (the pass is then taken again once, 20 s later): the models'
    own times against their host profiles, whatever the machine spent around them."""
    from dataclasses import replace

    from planner.local.prediction import served_prediction

    stages, sinks, sites = two_sites()
    stages = [replace(s, service_ms=s.service_ms * profiled_scale) for s in stages]
    need = 50 * profiled_scale
    served = Served(requests=5, every_s=0.2, models={"a": a_ms, "b": b_ms}, models_cpu={"a": 2 * a_ms},
                    hops={("edge", "mec"): 2.0, ("mec", "edge"): 1.5}, client_ms=4.0,
                    cpu_per_request_ms=cpu_per_request_ms, idle_cores=0.0, wall_s=1.0)
    got = served_prediction({"rate_rps": 2.0, "sites": sites}, stages, sinks, served, "edge", [0.0, 0.5, 1.0])
    assert got["disturbed"] is disturbed and got["models_over_profiles"] == pytest.approx((a_ms + b_ms) / need, abs=1e-3)
    assert any("ran the models in" in n for n in got["notes"]) is disturbed


def test_the_slowdown_a_load_implies_is_the_one_that_made_it():
    """implied_slowdown inverts slower_machine: the p50 of the prediction on a machine 1.2x slower,
    given as the measurement, gives back 1.2 (to the bisection's half percent); a p50 no factor in
    range reaches gives None."""
    from planner.local.prediction import implied_slowdown

    served = round_trip_pass()
    stages, sinks, sites = two_sites()
    host = {"rate_rps": 30.0, "sites": sites}
    schedule_s = [0.031 * i + 0.01 * (i % 4) for i in range(200)]
    from planner.local.prediction import served_prediction

    slower = {p["slower"]: p for p in served_prediction(host, stages, sinks, served, "edge", schedule_s)["slower"]}
    for k in (1.1, 1.25):
        got = implied_slowdown(host, stages, sinks, served, "edge", schedule_s, slower[k]["p50_ms"])
        assert got == pytest.approx(k, abs=0.006)
    assert implied_slowdown(host, stages, sinks, served, "edge", schedule_s, 1e7) is None
    assert implied_slowdown(host, stages, sinks, served, "edge", [], 50.0) is None


def test_the_prediction_runs_at_the_speed_the_pilot_found_the_machine():
    """pilot_speed: a pilot whose requests took what the served pass's stages take on a machine
    1.25x slower (the simulation of its own schedule, slowed) gives back 1.25 (far beyond the
    pass's error and its own: the machine moved, and its reading is used alone), and the prediction
    is then slower_machine's at 1.25 (to the bisection's half percent), the pass's own speed beside
    it (`at_pass_speed`); a pilot too short to read (MIN_PILOT_REQUESTS), or none, leaves the
    prediction at the pass's speed, saying why."""
    from planner.local.prediction import served_prediction
    from planner.local.served import MIN_PILOT_REQUESTS
    from planner.model.simulation import slowed

    served = round_trip_pass()
    stages, sinks, sites = two_sites()
    host = {"rate_rps": 30.0, "sites": sites}
    schedule_s = [0.031 * i + 0.01 * (i % 4) for i in range(200)]
    # a pilot that reads the speed within 2 %, 3 joint errors from the pass's: used alone (moved)
    served.pilot_arrivals_ms = [60.0 * i + 7.0 * (i % 3) for i in range(200)]
    alone = served_prediction(host, stages, sinks, served, "edge", schedule_s)
    assert alone["pilot_speed"]["slowdown"] is None and "no pilot of 10 or more" in alone["pilot_speed"]["why"]
    assert {k: alone[k] for k in ("p50_ms", "p99_ms")} == alone["at_pass_speed"]
    assert any("at the served pass's speed" in n for n in alone["notes"])
    out, out_sinks = served_stages(stages, sinks, sites, "edge", served)
    pilot = simulate(slowed(out, 1.25), out_sinks, 0, cores=2, arrivals_ms=served.pilot_arrivals_ms)
    served.pilot_ms = list(pilot.responses_ms)
    got = served_prediction(host, stages, sinks, served, "edge", schedule_s)
    assert got["pilot_speed"]["slowdown"] == pytest.approx(1.25, abs=0.007) and got["pilot_speed"]["moved"]
    slower = {p["slower"]: p for p in got["slower"]}[1.25]
    assert got["p50_ms"] == pytest.approx(slower["p50_ms"], rel=0.02)
    assert got["p99_ms"] == pytest.approx(slower["p99_ms"], rel=0.02)
    assert got["at_pass_speed"] == alone["at_pass_speed"] and got["p50_ms"] > 1.1 * alone["p50_ms"]
    short = replace(served, pilot_arrivals_ms=served.pilot_arrivals_ms[:MIN_PILOT_REQUESTS - 1],
                    pilot_ms=served.pilot_ms[:MIN_PILOT_REQUESTS - 1])
    assert served_prediction(host, stages, sinks, short, "edge", schedule_s)["pilot_speed"]["slowdown"] is None
    # a pilot no speed in range explains (its p50 far beyond the pass's 4x) says so, and is not used
    far = replace(served, pilot_ms=[1e7] * len(served.pilot_arrivals_ms))
    speed = served_prediction(host, stages, sinks, far, "edge", schedule_s)["pilot_speed"]
    assert speed["slowdown"] is None and "0.5-4x slower" in speed["why"]


def test_the_pilot_lasts_long_enough_for_its_requests():
    """pilot_seconds: 10 s where the rate gives 20 requests in it; else the 20 requests' mean gaps
    (OCR at 1.37 rps: 14.6 s); never over half the load."""
    from planner.local.served import PILOT_REQUESTS, PILOT_S, pilot_seconds

    assert pilot_seconds(26.0, 180.0) == PILOT_S
    assert pilot_seconds(1.37, 180.0) == pytest.approx(PILOT_REQUESTS / 1.37) and pilot_seconds(1.37, 180.0) > PILOT_S
    assert pilot_seconds(1.37, 20.0) == 10.0 and pilot_seconds(5.0, 0.5) == 0.25


@pytest.mark.parametrize("busy", [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9])
def test_the_busier_the_load_the_longer_the_pilot_reads_the_speed(busy):
    """pilot_seconds at a busy load: long enough that the speed's noise over the pilot (SPEED_NOISE
    over PILOT_S, falling as the root of the length), moved through the wait's 1/(1-busy), stays
    within P50_SHARE_OF_SPEED of the p50; no longer than that needs (or the floor); capped at half
    the load. The OCR example's 85 % rate (4.35 rps, 180 s): 90 s where it was 10."""
    from planner.local.served import P50_SHARE_OF_SPEED, PILOT_S, SPEED_NOISE, pilot_seconds

    def p50_moved_by(seconds: float) -> float:
        return SPEED_NOISE * (PILOT_S / seconds) ** 0.5 / (1 - busy)

    long = pilot_seconds(4.35, 10_000.0, busy)
    assert p50_moved_by(long) <= P50_SHARE_OF_SPEED * 1.0001
    assert long == PILOT_S or p50_moved_by(long * 0.99) > P50_SHARE_OF_SPEED  # no longer than it needs
    assert pilot_seconds(4.35, 180.0, busy) == min(long, 90.0)
    assert pilot_seconds(4.35, 10_000.0, busy + 0.05) >= long


def test_a_busy_load_reads_the_speed_longer_than_an_idle_one():
    from planner.local.served import PILOT_S, pilot_seconds

    assert pilot_seconds(4.35, 180.0, 0.3) == PILOT_S and pilot_seconds(4.35, 180.0, 0.85) == 90.0
    assert 15 < pilot_seconds(2.95, 180.0, 0.6) < 20  # the 60 % rate: ~18 s


def test_the_speed_range_is_the_prediction_a_few_percent_faster_and_slower():
    """speed_range: the load's schedule on the served stages SPEED_ERROR faster and slower than the
    speed the prediction runs at. Checked by time rescaling, as the slower machine: every stage k
    times slower on a schedule answers each request exactly k times later than the stages at
    their speed on the schedule k times shorter. The prediction lies inside its range, and a
    measurement is inside or outside it by its percentiles (open_loop.measured_within)."""
    import os

    from planner.local.open_loop import measured_within
    from planner.local.prediction import SPEED_ERROR, served_prediction, speed_range

    served = round_trip_pass()
    stages, sinks, sites = two_sites()
    out, out_sinks = served_stages(stages, sinks, sites, "edge", served)
    schedule_s = [0.013 * i + 0.004 * (i % 3) for i in range(150)]
    got = speed_range(out, out_sinks, schedule_s, 1.2, 1.1)
    assert got["speed_error"] == SPEED_ERROR
    for side, k in ((0, 1.1 * (1 - SPEED_ERROR)), (1, 1.1 * (1 + SPEED_ERROR))):
        base = simulate(out, out_sinks, 0, os.cpu_count() or 1, arrivals_ms=[1000 * t / k for t in schedule_s],
                        contention=1.2)
        assert got["p50_ms"][side] == pytest.approx(k * base.percentile(50), abs=2e-3)
        assert got["p99_ms"][side] == pytest.approx(k * base.percentile(99), abs=2e-3)
    assert speed_range(out, out_sinks, None, 1.2, 1.0) is None
    pred = served_prediction({"rate_rps": 60.0, "sites": sites}, stages, sinks, served, "edge", schedule_s)
    band = pred["speed_range"]
    for q in ("p50_ms", "p99_ms"):
        assert band[q][0] <= pred[q] <= band[q][1] and band[q][0] < band[q][1]
    lo, hi = band["p50_ms"]
    assert measured_within(band, (lo + hi) / 2, hi * 1.01)["measured_within"] == {"p50": True, "p99": False}
    assert measured_within(band, None, band["p99_ms"][0])["measured_within"] == {"p50": None, "p99": True}
    assert measured_within(None, 1.0, 2.0) is None


def test_the_pilots_reading_and_the_pass_are_weighed_by_their_errors():
    """pilot_speed: the pilot's reading, its error half its interval (the factors of its p50 one
    standard deviation either side, median_noise), and the pass's (1, PASS_SPEED_ERROR), weighed
    by the inverse of their variances: slowdown = 1 + w (read - 1), w = e^2 / (e^2 + half^2). A
    short pilot simulated 1.25x slow near the stages' capacity reads 1.25 within a wide interval
    and moves the prediction a little; a long one at less load reads it within 2 %, 3 joint
    errors from the pass: the machine moved, and the reading is used alone. A pilot at the pass's
    own speed nudged 2 % reads near 1 and moves the prediction by less than the nudge."""
    from planner.local.prediction import CONFLICT_SIGMAS, PASS_SPEED_ERROR, pilot_speed, served_prediction
    from planner.model.simulation import slowed

    served = round_trip_pass()
    stages, sinks, sites = two_sites()
    out, out_sinks = served_stages(stages, sinks, sites, "edge", served)

    def pilot(gap_ms: float, n: int, slower: float) -> Served:
        arrivals = [gap_ms * i + 7.0 * (i % 3) for i in range(n)]
        run = simulate(slowed(out, slower), out_sinks, 0, cores=2, arrivals_ms=arrivals)
        return replace(served, pilot_arrivals_ms=arrivals, pilot_ms=list(run.responses_ms))

    got = pilot_speed(out, out_sinks, pilot(45.0, 40, 1.25), 1.0)
    lo, hi = got["interval"]
    assert 1 < lo <= got["read"] <= hi and got["read"] == pytest.approx(1.25, abs=0.01) and "why" not in got
    assert 1 <= got["requests_per_reading"] < 10 and not got["moved"]
    weight = PASS_SPEED_ERROR ** 2 / (PASS_SPEED_ERROR ** 2 + ((hi - lo) / 2) ** 2)
    assert got["weight"] == pytest.approx(weight, abs=5e-4) and weight < 0.5
    assert got["slowdown"] == pytest.approx(1 + weight * (got["read"] - 1), abs=5e-4)
    got = pilot_speed(out, out_sinks, pilot(60.0, 200, 1.25), 1.0)
    lo, hi = got["interval"]
    assert hi - lo < 0.04 and got["read"] - 1 > CONFLICT_SIGMAS * (PASS_SPEED_ERROR ** 2 + ((hi - lo) / 2) ** 2) ** 0.5
    assert got["moved"] and got["weight"] == 1.0 and got["slowdown"] == got["read"]
    nudged = pilot(31.0, 40, 1.0)
    nudged.pilot_ms = [ms * 1.02 for ms in nudged.pilot_ms]  # the requests' own spread is far wider
    got = pilot_speed(out, out_sinks, nudged, 1.0)
    assert 1 < got["read"] and got["interval"][0] <= 1 <= got["interval"][1] and got["weight"] < 0.5
    assert 1 < got["slowdown"] < 1 + (got["read"] - 1) / 2
    host = {"rate_rps": 30.0, "sites": sites}
    schedule_s = [0.031 * i + 0.01 * (i % 4) for i in range(200)]
    pred = served_prediction(host, stages, sinks, nudged, "edge", schedule_s)
    assert pred["source"] == "the served pass at the speed its pilot read"
    assert pred["at_pass_speed"]["p50_ms"] <= pred["p50_ms"] < 1.02 * pred["at_pass_speed"]["p50_ms"]


def test_a_turn_of_a_models_instances_costs_the_pilots_mean_handover():
    """The pilot's handovers (its requests that waited for an instance: the runtime's cost of a
    turn, which the pass, one request at a time, never pays): every model of the prediction hands
    its instance on in their mean, the client's share and the hops in none; the report keeps them;
    without a pilot that waited the turns cost nothing. Where requests queue for an instance, the
    prediction with the handover is the slower one, by more than the handover (each turn delays
    every request queued behind it)."""
    from planner.local.prediction import served_prediction

    served = round_trip_pass()
    stages, sinks, sites = two_sites()
    assert {s.handover_ms for s in served_stages(stages, sinks, sites, "edge", served)[0]} == {0.0}
    served.pilot_handovers_ms = [0.5, 1.5, 1.0, 3.0]
    out, _ = served_stages(stages, sinks, sites, "edge", served)
    assert {s.name: s.handover_ms for s in out if s.name in ("a", "b")} == {"a": 1.5, "b": 1.5}
    assert {s.handover_ms for s in out if s.name not in ("a", "b")} == {0.0}
    again = Served.from_dict(json.loads(json.dumps(served.as_dict())))
    assert again.pilot_handovers_ms == served.pilot_handovers_ms and again.pilot_handover_ms == 1.5
    assert served_stages(stages, sinks, sites, "edge", again)[0] == out
    # a sleeping step (1 core-ms of CPU in its 30 ms) at 80 % of its one instance: the instance,
    # not the cores, is what requests wait for, and each turn costs it 1.5 ms more
    step = [Stage("s", 30.0, 1, 1, (("", 0.0),))]
    sleeping = Served(requests=5, every_s=0.2, models={"s": 30.0}, models_cpu={"s": 1.0}, client_ms=1.0, e2e_ms=31.0,
                      pilot_handovers_ms=[1.5])
    schedule_s = [t / 1000 for t in poisson_arrivals(80 / 3, 400, random.Random(3))]
    host = {"rate_rps": 80 / 3, "sites": {"s": "edge"}}
    got = served_prediction(host, step, [("s", 0.0)], sleeping, "edge", schedule_s)
    none = served_prediction(host, step, [("s", 0.0)], replace(sleeping, pilot_handovers_ms=[]), "edge", schedule_s)
    assert (got["handover_ms"], got["handovers"], none["handover_ms"], none["handovers"]) == (1.5, 1, None, 0)
    assert got["p50_ms"] > none["p50_ms"] + 1.5 and got["p99_ms"] > none["p99_ms"] + 1.5


def test_the_pilots_handovers_are_those_of_its_requests_that_waited():
    """turn_handovers: per (model, site), the 8th field of each queue timing that waited (one that
    found an instance free, or a runtime that reports none, has no handover); failed requests
    left out."""
    from planner.local.load_test import Outcome, turn_handovers

    def q(model: str, waited: float, handover: float | None) -> list:
        return ["queue", model, "edge", waited, 0, "", None, handover]

    outcomes = [Outcome(0.0, 0.0, 0.1, timings=[q("a", 0.0, 0.0), q("b", 4.0, 0.7)]),
                Outcome(0.1, 0.1, 0.2, timings=[q("a", 3.0, 1.1), q("b", 0.0, 0.0)]),
                Outcome(0.2, 0.2, 0.3, timings=[q("a", 2.0, 0.9), q("b", 5.0, None)]),
                Outcome(0.3, 0.3, None, error="UNAVAILABLE: gone", timings=[q("a", 9.0, 9.0)])]
    assert turn_handovers(outcomes) == {("b", "edge"): [0.7], ("a", "edge"): [1.1, 0.9]}
