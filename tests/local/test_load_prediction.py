"""The plan's p50 and p99 under load, proven through `planner up` (issue 11, "How it is checked").

The app of tests/load_app.py: one python step of a fixed service time S (30 ms), one instance
on one replica of the site `mec`, its source and sink on `edge`, so every request takes two
loopback hops (the prediction's link model is in the path, as in any real plan); the step
sleeps, or hashes (CPU-bound, the GIL released, as ONNX Runtime and TVM release it). Solved,
served by `planner up`, driven by `planner bench --rate` at 49 % and 80 % utilization (rate =
u / S, S the host profile's measurement, which is the S the prediction uses).

Each run is checked twice:
- against a replay of the same run through an ideal FIFO single server (tests/local/fifo_replay.py,
  Lindley's recursion over the actual send times and the measured service times, each turn
  handed over in the run's measured mean handover): measured p50 and p99 within 15 %. This is
  the check that the runtime queues as modeled, for any schedule.
- against the model's prediction for this machine (the bench report's `predicted`), its hops
  replaced by those the run measured (see the test): within 20 %.
  A model's percentiles are long-run values, and one short run is one sample of them. By the
  same replay with a constant S, over 1000 seeds: at 80 % and 360 requests, a schedule's p99 is
  within 20 % of the model's for 29 % of the seeds, its median 30 % low (a run starts with an
  empty queue, and its p99 rests on a few busy periods); at 49 % and 200 requests, 62 %. (At
  80 %, 20 ms: 43 % of 20 s runs, 51 % of 30 s ones.) No test-sized run makes that comparison
  reliable by its length, so the seeds are chosen, openly: each is a schedule whose ideal
  replay (constant S, no hops) is within 3 % of the model's p50 and p99, for S +- 10 % (seed 87
  at 49 %: p50 +0.0 %, p99 -1.1 %; seed 695 at 80 %: p50 -0.8 %, p99 +0.4 %; 5 % and 0.6 % of
  seeds qualify; test_the_seeds_are_representative_schedules checks it). The 20 % then measures
  the runtime, the hops and the host profile against the model, not the luck of the draw. (A
  schedule scaled by 1 / rate is the same in units of S: the seeds hold for any S.)

Why these numbers. S = 30 ms, not 20: the runtime's own time is then a smaller share. Handing
the instance to the next queued request takes ~0.6 ms (a thread woken, the GIL), time the
model's S does not count; on this 2-core machine under load that made the measured p50 at 80 %
22 % slower than the replay at S = 20 ms, 6-10 % at 30 ms (before the replay counted it). And the client's hop and the two
hops, predicted 3 ms in all, took 5-14 ms while other jobs had the cores. 49 %, not 50: the
model's p50 of one M/D/1 server steps from S to S + 0.18 S where the chance of waiting crosses
one half (u = 0.5, reported), so at exactly 0.5 rounding would decide between two predictions
18 % apart.
At 80 % the p99 wait grows like 1 / (1 - u): a host profile 5 % off S moves the predicted p99
by about 25 %; a failure's message prints the measured service times and utilization.

Two instances (issue 11 item 1, "the planner's model and the runtime agree"): a step that holds
the GIL (`gil`, plain Python) with `instances: 2` is two servers in the model (M/D/2). Run in
threads of one process the two took turns on the GIL: one server, each call twice as long, and
at 60 % of two servers' capacity that one was 120 % busy, the queue growing for the whole run
(measured before the runtime ran each instance in a worker process of its own: service p50
103 ms for 30 profiled, p50 4.2 s, 91 of 410 requests past their deadline; the test fails on
its errors). The same checks, with a two-server replay and Queue(rate, S, 2), over 400 requests
(10 s at S = 30 ms): seed 2161's ideal replay is within 0.07 % of the model's p50 and p99 for
S +- 10 % (4 % of seeds are within 3 % there, with a request count within 3 % of 400). At 60 %
of two servers a request waits with probability 0.45: the p50 is S, clear of the step at 0.5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from planner.local.load_test import schedule
from planner.model.queueing import Queue
from tests import ROOT
from tests.load_app import SERVICE_MS, STEPS, write_load_app
from tests.local.fifo_replay import ideal_percentiles, replay_report
from tests.up_process import planner_up

# timed against the model: on cores other tests share, the run measures them (make test runs it alone)
pytestmark = [pytest.mark.timeout(240), pytest.mark.load]

# utilization -> (requests in the schedule, its seed): see the module docstring
RUNS = {0.49: (200, 87), 0.8: (360, 695)}
TWO = (0.6, 400, 2161)  # two instances: each server's utilization, requests, seed
IDEAL_TOLERANCE = 0.03  # the chosen schedules against the model, before any runtime is involved
REPLAY_TOLERANCE = 0.15  # measured against the replay of the same run
HANDOVER_SHARE = 0.1  # the runtime's mean handover to a waiting request, at most this share of S
MODEL_TOLERANCE = 0.20  # measured against the model's prediction for this machine


def rate_and_duration(utilization: float, service_ms: float, servers: int = 1) -> tuple[float, float]:
    """The rate that keeps `servers` `utilization` busy, and the duration of the run's requests."""
    requests = RUNS[utilization][0] if servers == 1 else TWO[1]
    rate = utilization * servers * 1000 / service_ms
    return rate, requests / rate


@pytest.mark.parametrize("utilization", sorted(RUNS))
def test_the_seeds_are_representative_schedules(utilization):
    """The chosen schedules, through an ideal M/D/1 queue, give the model's p50 and p99 within 3 %,
    whatever S (the schedule scales with it); and most seeds do not (the choice is not free)."""
    requests, seed = RUNS[utilization]
    for service_ms in (SERVICE_MS * 0.9, SERVICE_MS, SERVICE_MS * 1.1):
        rate, duration = rate_and_duration(utilization, service_ms)
        times = schedule(rate, duration, "poisson", seed)
        assert abs(len(times) - requests) <= 0.06 * requests
        ideal = ideal_percentiles(np.array(times) * 1000, service_ms)
        queue = Queue(rate, service_ms, 1)
        for q in (50, 99):
            model = queue.response_ms(q)
            assert abs(ideal[f"p{q}_ms"] / model - 1) <= IDEAL_TOLERANCE, (utilization, service_ms, q, ideal, model)
    rate, duration = rate_and_duration(utilization, SERVICE_MS)
    model_p99 = Queue(rate, SERVICE_MS, 1).response_ms(99)
    others = [ideal_percentiles(np.array(schedule(rate, duration, "poisson", s)) * 1000, SERVICE_MS)["p99_ms"]
              for s in range(20)]
    assert sum(abs(p / model_p99 - 1) <= IDEAL_TOLERANCE for p in others) <= 10, others


def test_the_two_server_seed_is_a_representative_schedule():
    utilization, requests, seed = TWO
    for service_ms in (SERVICE_MS * 0.9, SERVICE_MS, SERVICE_MS * 1.1):
        rate, duration = rate_and_duration(utilization, service_ms, 2)
        times = schedule(rate, duration, "poisson", seed)
        assert abs(len(times) - requests) <= 0.06 * requests
        ideal = ideal_percentiles(np.array(times) * 1000, service_ms, 2)
        queue = Queue(rate, service_ms, 2)
        for q in (50, 99):
            assert abs(ideal[f"p{q}_ms"] / queue.response_ms(q) - 1) <= IDEAL_TOLERANCE, (service_ms, q, ideal)


@pytest.mark.parametrize("utilization", sorted(RUNS))
def test_hops_combine_with_the_models_response(utilization):
    """No hops: the model's own percentiles; constant hops add; spread hops raise a p50 that
    half the requests reach without waiting to near the hops' upper tail."""
    queue = Queue(utilization * 1000 / SERVICE_MS, SERVICE_MS, 1)
    for q in (50, 99):
        assert with_hops(queue, np.zeros(3), q) == pytest.approx(queue.response_ms(q), abs=2e-3)
        assert with_hops(queue, np.full(3, 4.0), q) == pytest.approx(queue.response_ms(q) + 4, abs=2e-3)
    spread = np.arange(1.0, 101.0)  # 1 .. 100 ms
    p50 = with_hops(queue, spread, 50)
    assert p50 > queue.response_ms(50) + np.median(spread) + (10 if utilization < 0.5 else 0)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("load-env")
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200",
            "PLANNER_CACHE_DIR": str(base / "cache"), "PLANNER_TUNING_DIR": str(base / "tuning")}


def planner(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "planner", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


@dataclass
class Served:
    out: Path
    step: str
    service_ms: float  # S, the host profile's (the prediction's)
    runs: dict = field(default_factory=dict)  # utilization -> the bench report at that load


@pytest.fixture(scope="module", params=STEPS)
def served(request, tmp_path_factory, env):
    """The app with the step `request.param`, solved and served by `planner up`."""
    yield from serve(tmp_path_factory.mktemp(f"load-{request.param}"), env, request.param, 1)


@pytest.fixture(scope="module")
def served_twice(tmp_path_factory, env):
    """The app with the `gil` step and two instances, solved and served by `planner up`."""
    yield from serve(tmp_path_factory.mktemp("load-gil-2"), env, "gil", 2)


def serve(work: Path, env, step: str, instances: int):
    out = work / "out"
    r = planner(env, "solve", write_load_app(work / "app", step, instances=instances), "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert plan["sites"]["mec"]["replicas"] == 1 and plan["models"]["s"]["instances"] == instances
    with planner_up(out, "--base-port", "0", "--for", "600", env=env) as up:
        assert up.proc.poll() is None, up.proc.stderr.read()
        yield Served(out, step, plan["models"]["s"]["latency_ms"])


def loaded(served: Served, env, utilization: float, servers: int = 1) -> dict:
    """The bench report at `utilization` of `servers` (run once per step and load, shared by the tests)."""
    if utilization not in served.runs:
        seed = RUNS[utilization][1] if servers == 1 else TWO[2]
        rate, duration = rate_and_duration(utilization, served.service_ms, servers)
        r = planner(env, "bench", served.out, "--rate", repr(rate), "--duration", repr(duration), "--arrivals",
                    "poisson", "--seed", seed, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        report = json.loads(r.stdout)
        assert report["sent"] == len(schedule(rate, duration, "poisson", seed)) and report["errors"] == 0, report
        host = report["host_prediction"]
        assert host["status"] == "ok" and host["models"]["s"]["ms"] == pytest.approx(served.service_ms, rel=1e-3)
        assert report["predicted_utilization"]["mec"] == pytest.approx(utilization, abs=0.01)
        served.runs[utilization] = report
    return served.runs[utilization]


def hops_ms(report: dict) -> tuple[float, np.ndarray]:
    """What requests spent neither waiting for nor running the step (the client, the two hops, the
    servers' own work): the prediction's figure, and each request's in this run."""
    host = report["host_prediction"]
    measured = np.array([q["ms"] - q["queue_ms"] - q["service_ms"] for q in report["requests"]])
    return host["latency_ms"] - host["models"]["s"]["ms"], measured


def with_hops(queue: Queue, hops: np.ndarray, percentile: float) -> float:
    """The `percentile`-th percentile of S + W + H: the model's response (a constant S and its
    wait W: none with probability 1 - C, else the shifted exponential of planner.model.queueing's
    docstring) plus hops H drawn from `hops`, independent of W."""
    c, spread = queue.p_wait, queue.conditional_wait_cv
    theta = queue.mean_wait_ms / c if c > 0 else 0.0
    shift = (1 - spread) * theta

    def cdf(t: float) -> float:
        x = t - queue.service_ms - hops  # the wait each request could have had and still be done by t
        waits_longer = np.where(x < 0, 1.0, np.where(x < shift, c, c * np.exp(-(x - shift) / max(spread * theta, 1e-12))))
        return float(np.mean(1 - waits_longer))

    lo, hi = 0.0, queue.service_ms + float(hops.max()) + 50 * theta + 1
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < percentile / 100 else (lo, mid)
    return hi


def numbers(served: Served, report: dict, replay: dict) -> str:
    """Everything about one run, for a failure's message (and `pytest -s`)."""
    [model] = report["models"]
    predicted = report["predicted_from_profiles"]
    return (f"{served.step} step, {report['rate_rps']:.2f} rps x {report['duration_s']:.1f} s (seed "
            f"{report['seed']}): measured p50 {report['p50_ms']} p99 {report['p99_ms']}; replayed p50 "
            f"{replay['p50_ms']:.1f} p99 {replay['p99_ms']:.1f}; predicted from the profile p50 {predicted['p50_ms']} "
            f"p99 {predicted['p99_ms']}, from the served pass {report['predicted']} (hops predicted {hops_ms(report)[0]:.1f} ms, measured p50/p99 "
            f"{np.percentile(hops_ms(report)[1], 50):.1f}/{np.percentile(hops_ms(report)[1], 99):.1f}); "
            f"waits measured p50/p99 {model.get('queue_p50_ms')}/{model.get('queue_p99_ms')}, replayed "
            f"{replay['wait_p50_ms']:.1f}/{replay['wait_p99_ms']:.1f} (handover {replay['handover_ms']:.2f} ms, "
            f"mean measured); service p50/p99 {model['service_p50_ms']}/"
            f"{model['service_p99_ms']} (profiled {served.service_ms}); utilization {report['utilization']['mec']}; "
            f"sender late p99 {report['sender_late_ms']['p99']} ms; the prediction's handover "
            f"{(report.get('served_prediction') or {}).get('handover_ms')} ms (the pilot's mean); the pilot's speed "
            f"{(report.get('served_prediction') or {}).get('pilot_speed')}, at the pass's speed "
            f"{report.get('at_pass_speed')}, implied {report.get('implied_slowdown')}")


def skip_if_the_cores_were_taken(served: Served, report: dict, p99_over: float, mean_over: float = 1.03) -> None:
    """Skip, saying so, when the step's service time was not the profile's: its mean over
    `mean_over` times the profiled S, or its p99 over `p99_over` times (other jobs kept it from a core)."""
    [model] = report["models"]
    mean = float(np.mean([q["service_ms"] for q in report["requests"]]))
    if mean > mean_over * served.service_ms or model["service_p99_ms"] > p99_over * served.service_ms:
        pytest.skip(f"the cores were busy: the {served.step} step took {mean:.1f} ms on average and "
                    f"{model['service_p99_ms']} ms at p99 for {served.service_ms} ms profiled")


@pytest.mark.parametrize("utilization", sorted(RUNS))
def test_the_runtime_queues_like_an_ideal_fifo_server(served, env, utilization):
    """Measured p50 and p99 within 15 % of the same run replayed through one FIFO server.

    The replay takes each request's measured service time, so a slower step is no reason to
    differ, and hands the server to each waiting request in the run's mean measured handover
    (the instance's hand-on until the waiting thread runs: a thread woken). That handover is
    the runtime's cost of a turn, a part of the server as its speed is: ~0.6 ms on a quiet
    machine, and on the VM of CI (2026-11-30, its idle vCPUs halted: a thread woken after 100 ms
    idle took 0.66 ms for 0.05 ms back to back) it made the measured p50 at 80 % 16-20 % slower
    than a replay without it (waits p50 53.5 ms against 39.4, hops 7.9 ms). The handover itself
    is bounded too: a runtime whose turns cost a tenth of the service fails here. When other
    jobs hold both cores the wake-up waits for one as well (under `make test`'s two workers: a
    measured p50 20 % over the replay at 80 %, the step's p99 2.2 S): skipped, saying so, when
    the step's own p99 shows the cores so taken (over 1.5 S)."""
    report = loaded(served, env, utilization)
    replay = replay_report(report)
    said = numbers(served, report, replay)
    print(said)
    skip_if_the_cores_were_taken(served, report, 1.5)
    assert report["utilization"]["mec"] == pytest.approx(utilization, abs=0.1), said
    assert replay["handover_ms"] <= HANDOVER_SHARE * served.service_ms, said
    for q in ("p50", "p99"):
        assert abs(report[f"{q}_ms"] / replay[f"{q}_ms"] - 1) <= REPLAY_TOLERANCE, f"{q}: {said}"


def host_queues(report: dict) -> dict:
    return report["host_prediction"]["independent_queues"]


def assert_the_models_prediction(report: dict, queue: Queue, said: str) -> None:
    """The bench's numbers are the model's for `queue`, and the measured p50 and p99 within
    MODEL_TOLERANCE of them with the hops as this run measured them (with_hops)."""
    predicted_hops, hops = hops_ms(report)
    for q in (50, 99):
        # the queueing model's own number, and the simulation of this machine the bench predicts with
        # (one step on its servers: nothing shares the cores, so the two differ by the simulation's noise)
        assert host_queues(report)[f"p{q}_ms"] - predicted_hops == pytest.approx(queue.response_ms(q), rel=0.01)
        assert report["predicted_from_profiles"][f"p{q}_ms"] - predicted_hops == pytest.approx(queue.response_ms(q),
                                                                                                rel=0.05)
        predicted = with_hops(queue, hops, q)
        assert abs(report[f"p{q}_ms"] / predicted - 1) <= MODEL_TOLERANCE, f"p{q} (predicted {predicted:.1f}): {said}"


@pytest.mark.parametrize("utilization", sorted(RUNS))
def test_p50_and_p99_under_load_are_the_prediction_for_this_machine(served, env, utilization):
    """Measured p50 and p99 within 20 % of the bench's prediction at this rate, with the hops as
    this run measured them: the prediction's 3 ms for the client's hop and the two hops is a
    quiet machine's figure, and here, with other jobs on the 2 cores, they took 5-14 ms at the
    median and more at the tail. Their spread matters near u = 0.5, where half the requests do
    not wait: the p50 of the whole is then near the hops' upper tail, not S + their median. So
    the model's response (the prediction minus its hops: the same numbers, checked) is combined
    with each request's measured hops as independent terms (with_hops).

    The model takes the step's service time for the constant its host profile measured. When
    other jobs keep a step from its core (a CPU-bound one, or a sleeping one not woken on time:
    seen here, p99s of 38-55 ms for 30 ms profiled), the run measures the machine, not the
    model: skipped then, saying so (the replay above holds either way). The bench's own
    prediction, the served pass at the speed its pilot found the machine, is checked first and
    never skipped: it measured the machine as it was."""
    report = loaded(served, env, utilization)
    said = numbers(served, report, replay_report(report))
    # the bench's own prediction (the served pass at its pilot's speed) measured the machine as it
    # was: checked before any skip
    for q in ("p50", "p99"):
        assert abs(report[f"{q}_ms"] / report["predicted"][f"{q}_ms"] - 1) <= MODEL_TOLERANCE, f"{q} as served: {said}"
    skip_if_the_cores_were_taken(served, report, 1.25)
    assert_the_models_prediction(report, Queue(report["rate_rps"], served.service_ms, 1), said)


def test_two_instances_of_a_gil_holding_step_are_two_servers(served_twice, env):
    """Two instances of a step that holds the GIL, 60 % busy: each request's service is the
    step's own (not two requests taking turns on one GIL: in one process's threads the two were
    one server 120 % busy, service p50 103 ms for 30 profiled, and requests passed their
    deadlines), the busy share is 60 % of two servers, and the measured p50 and p99 are within
    15 % of the run replayed through two FIFO servers with its measured service times. The
    replay is skipped, saying so, when other jobs held the cores (the step's p99 over 2 S, or
    its mean over 1.3 S); the busy share is checked before."""
    utilization = TWO[0]
    report = loaded(served_twice, env, utilization, servers=2)
    replay = replay_report(report, servers=2)
    said = numbers(served_twice, report, replay)
    print(said)
    # first, whatever else ran: two requests taking turns on one GIL double the busy share
    assert report["utilization"]["mec"] == pytest.approx(utilization, abs=0.15), said
    skip_if_the_cores_were_taken(served_twice, report, 2.0, mean_over=1.3)
    for q in (50, 99):
        assert abs(report[f"p{q}_ms"] / replay[f"p{q}_ms"] - 1) <= REPLAY_TOLERANCE, f"p{q} replayed: {said}"


def test_two_instances_of_a_gil_holding_step_are_the_models_two_servers(served_twice, env):
    """The same run against the model's M/D/2 prediction, within 20 % (its hops as measured, as
    above). The two instances take 1.2 cores: on a 2-core machine the sites, the bench client and
    any other job share the rest, and a step preempted runs longer than its profile (measured
    here: service means 34-47 ms for 30 profiled, quiet or not); skipped then, saying so: this
    check needs more cores than this project's CI machine has."""
    utilization = TWO[0]
    report = loaded(served_twice, env, utilization, servers=2)
    said = numbers(served_twice, report, replay_report(report, servers=2))
    skip_if_the_cores_were_taken(served_twice, report, 1.25)
    assert_the_models_prediction(report, Queue(report["rate_rps"], served_twice.service_ms, 2), said)


def test_the_served_pass_times_the_step_and_the_cpu_it_keeps_busy(served, env):
    """The served pass before the load (planner.local.served): the step's time as served, within
    15 % of its profile, and the CPU time its process used meanwhile: next to none for the
    sleeping step, about its whole time for the hashing one (one thread, the GIL released). That
    share is how many cores the simulation lets a run keep busy (Stage.busy_cores), so a
    sleeping step no longer takes a core from the others. Skipped, saying so, where other jobs
    slowed the step in the pass itself."""
    report = loaded(served, env, min(RUNS))
    step = report["served_prediction"]["served"]["models"]["s"]
    if step["ms"] > 1.25 * served.service_ms:
        pytest.skip(f"the cores were busy: the {served.step} step took {step['ms']} ms in the served pass for "
                    f"{served.service_ms} ms profiled")
    assert step["ms"] == pytest.approx(served.service_ms, rel=0.15), step
    share = step["cpu_ms"] / step["ms"]
    if served.step == "sleep":
        assert share < 0.3, step
    else:
        assert 0.7 < share < 1.3, step
