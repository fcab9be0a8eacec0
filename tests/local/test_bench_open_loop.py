"""`planner bench --rate`: the open-loop load test, against real site servers on loopback.

The site runs one python step whose service time the request chooses: its input's first value v
>= 1 makes it sleep v ms (the random inputs of `planner solve`'s profiling do not), and v < 0
makes every other call fail. Each site runs one request at a time (`serve --max-inflight 1`): a
single instance, so the queue is real and predictable (D/D/1 under a uniform schedule).
`planner bench` runs in subprocesses: it drives the runtime's own OIP stubs, which must not share
a process with tritonclient (imported by other tests of this session).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from planner.local.load_test import Outcome, schedule, summarize
from tests import ROOT
from tests.step_app import write_step_app

pytestmark = pytest.mark.timeout(120)

STEP = '''
import itertools
import time

import numpy as np

_calls = itertools.count()


def f(x):
    v = float(x.flat[0])
    if v < 0 and next(_calls) % 2:
        raise ValueError(f"refused every other request ({v:g})")
    if v >= 1:
        time.sleep(v / 1000)
    return {"y": (x * 2).astype(np.float32)}
'''

REPORT_KEYS = {"app", "entry", "arrivals", "seed", "duration_s", "warmup", "timeout_s", "host_prediction",
               "rate_rps", "achieved_rps", "sent", "ok", "errors", "error_messages", "p50_ms", "p95_ms", "p99_ms",
               "predicted", "error_pct", "utilization", "predicted_utilization", "models", "window_s",
               "sender_late_ms", "requests", "predicted_from", "predicted_from_profiles", "error_pct_from_profiles",
               "served_prediction", "cpu_per_request_ms", "at_load_cpu", "machine_speed", "implied_slowdown",
               "at_pass_speed", "predicted_range"}


# -- the schedule and the statistics, alone --------------------------------------------------

def test_uniform_schedule_is_every_gap_exactly():
    times = schedule(20, 1, "uniform")
    assert times == [i / 20 for i in range(20)]
    assert len(schedule(3, 2.5, "uniform")) == 8  # 0, 1/3, ..., 7/3 < 2.5
    assert schedule(20, 1, "uniform", seed=7) == times  # no randomness


def test_poisson_schedule_count_and_mean_gap_for_a_fixed_seed():
    times = schedule(100, 50, "poisson", seed=3)
    gaps = np.diff([0.0] + times)
    assert len(times) == pytest.approx(5000, abs=3 * np.sqrt(5000))  # a Poisson count: mean 5000, sd 71
    assert gaps.mean() == pytest.approx(0.01, rel=0.03)
    assert gaps.std() == pytest.approx(0.01, rel=0.05)  # exponential: sd equals the mean
    assert all(0 < t < 50 for t in times) and times == sorted(times)
    assert schedule(100, 50, "poisson", seed=3) == times  # the same seed, the same schedule
    assert schedule(100, 50, "poisson", seed=4) != times
    assert schedule(100, 50) == schedule(100, 50, "poisson", seed=0)  # the default: Poisson, seed 0


@pytest.mark.parametrize("args, says", [((0, 1), "--rate"), ((-2, 1), "--rate"), ((5, 0), "--duration"),
                                        ((5, float("inf")), "--duration"), ((5, 1, "bursty"), "--arrivals")])
def test_schedule_refuses_bad_options(args, says):
    from planner.errors import InputError

    with pytest.raises(InputError, match=says):
        schedule(*args)


def test_summary_of_known_outcomes():
    """Four requests due every 0.5 s, each 100 ms of model time on site m (2 replicas) and 30 ms
    of queueing; the third fails: the numbers by hand."""
    def timings(queue: bool):
        return [["model", "s", "m", 100.0, 0, ""], ["hop", "e->m", "e", 1.0, 16, "a->s"]] + (
            [["queue", "s", "m", 30.0, 0, ""]] if queue else [])

    outcomes = [Outcome(at=0.0, sent=0.001, done=0.2, timings=timings(True)),
                Outcome(at=0.5, sent=0.502, done=0.8, timings=timings(True)),
                Outcome(at=1.0, sent=1.0, done=1.05, error="INTERNAL: boom"),
                Outcome(at=1.5, sent=1.5, done=2.5, timings=timings(True))]
    r = summarize(outcomes, 2.0, 2.0, {"m": 2}, {"status": "ok", "p50_ms": 250.0, "p99_ms": 800.0,
                                                 "utilization": {"m": 0.1}})
    assert (r["sent"], r["ok"], r["errors"]) == (4, 3, 1)
    assert r["error_messages"] == [{"message": "INTERNAL: boom", "count": 1}]
    assert r["window_s"] == 2.5 and r["achieved_rps"] == pytest.approx(3 / 2.5)
    assert r["p50_ms"] == 300.0  # latencies 200, 300, 1000 ms from their scheduled times
    assert r["utilization"] == {"m": pytest.approx(0.3 / 2.5 / 2)}  # 300 ms busy, 2.5 s, 2 replicas
    assert r["predicted"] == {"p50_ms": 250.0, "p99_ms": 800.0} and r["predicted_utilization"] == {"m": 0.1}
    assert r["error_pct"]["p50"] == 20.0
    assert r["error_pct"]["p99"] == pytest.approx(round(100 * (np.percentile([200, 300, 1000], 99) - 800) / 800, 1))
    assert r["models"] == [{"model": "s", "site": "m", "service_p50_ms": 100.0, "service_p99_ms": 100.0,
                            "queue_p50_ms": 30.0, "queue_p99_ms": 30.0}]
    assert r["sender_late_ms"]["max"] == 2.0
    assert [q["ms"] for q in r["requests"]] == [200.0, 300.0, None, 1000.0]
    # each answered request's own model and queue time (what tests/local/fifo_replay.py replays)
    assert [(q["service_ms"], q["queue_ms"]) for q in r["requests"]] == [(100.0, 30.0)] * 2 + [(None, None), (100.0, 30.0)]
    assert [q["handover_ms"] for q in r["requests"]] == [0.0, 0.0, None, 0.0]  # a runtime that reports none
    # the runtime's handovers (the queue timing's 8th field): the mean over the requests that waited
    handed = [Outcome(at=0.0, sent=0.0, done=0.2, timings=[["model", "s", "m", 100.0, 0, "", 90.0, None],
                                                           ["queue", "s", "m", 0.0, 0, "", None, 0.0]]),
              Outcome(at=0.1, sent=0.1, done=0.3, timings=[["model", "s", "m", 100.0, 0, "", 90.0, None],
                                                           ["queue", "s", "m", 90.0, 0, "", None, 0.5]]),
              Outcome(at=0.2, sent=0.2, done=0.4, timings=[["model", "s", "m", 100.0, 0, "", 90.0, None],
                                                           ["queue", "s", "m", 180.0, 0, "", None, 1.5]])]
    r = summarize(handed, 10.0, 0.3, {"m": 1})
    assert r["models"][0]["handover_mean_ms"] == 1.0 and r["models"][0]["handovers"] == 2
    assert [q["handover_ms"] for q in r["requests"]] == [0.0, 0.5, 1.5]
    # no queue timings from the runtime, no prediction at this rate: neither is made up
    for o in outcomes:
        o.timings = [t for t in o.timings if t[0] != "queue"]
    r = summarize(outcomes, 2.0, 2.0, {}, {"status": "ok", "latency_ms": 100.0})
    assert "queue_p50_ms" not in r["models"][0] and "handover_mean_ms" not in r["models"][0]
    assert r["predicted"] == {"p50_ms": None, "p99_ms": None} and r["error_pct"] == {"p50": None, "p99": None}
    assert r["utilization"] == {"m": pytest.approx(0.3 / 2.5)}  # one replica without services.json
    # a model of two instances is two servers busy half as much
    r = summarize(outcomes, 2.0, 2.0, {"m": 2}, None, {"s": 2})
    assert r["utilization"] == {"m": pytest.approx(0.3 / 2.5 / 2 / 2)}


# -- through real site servers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("open-loop-env")
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200",
            "PLANNER_CACHE_DIR": str(base / "cache"), "PLANNER_TUNING_DIR": str(base / "tuning")}


def planner(env, *args, timeout=90):
    return subprocess.run([sys.executable, "-m", "planner", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def serve_replica(out, name: str, env) -> tuple[subprocess.Popen, str, str]:
    """One more process serving the site `here` of OUT on free ports, one request at a time:
    (process, gRPC address, metrics URL) once it serves."""
    port_file = out / "logs" / f"{name}.port.json"
    proc = subprocess.Popen([sys.executable, "-m", "planner_runtime", "serve", str(out / "sites" / "here"),
                             "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--port-file", str(port_file),
                             "--max-inflight", "1", "--max-queue", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    end = time.monotonic() + 60
    while not port_file.exists():
        assert proc.poll() is None and time.monotonic() < end, "the site did not start"
        time.sleep(0.1)
    ports = json.loads(port_file.read_text())
    return proc, f"127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['metrics_port']}/metrics"


@pytest.fixture(scope="module")
def site(tmp_path_factory, env):
    """OUT of the step app, its site served twice (replicas a and b), and input files choosing the
    step's behaviour: {"out", "a", "b", "metrics_a", "metrics_b", "sleep200", "sleep10", "fail"}."""
    work = tmp_path_factory.mktemp("open-loop")
    app = write_step_app(work / "app", STEP)
    out = work / "out"
    r = planner(env, "solve", app, "-o", out)
    assert r.returncode == 0, r.stderr
    (out / "logs").mkdir()
    found = {"out": out}
    for name, value in (("sleep200", 200), ("sleep10", 10), ("fail", -1)):
        found[name] = work / f"{name}.npy"
        np.save(found[name], np.full((1, 4), value, np.float32))
    procs = []
    try:
        for name in ("a", "b"):
            proc, found[name], found[f"metrics_{name}"] = serve_replica(out, name, env)
            procs.append(proc)
        yield found
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def bench(site, env, *args, entry=True):
    return planner(env, "bench", site["out"], *(("--entry", site["a"]) if entry else ()), "--no-predict", *args)


def test_open_loop_keeps_its_schedule_while_answers_queue(site, env):
    # 200 ms of service, one at a time, offered 20 rps: 4 times what the site can serve
    r = bench(site, env, "--rate", "20", "--duration", "1", "--arrivals", "uniform", "--input",
              f"cam={site['sleep200']}", "--warmup", "1", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["sent"], report["ok"], report["errors"]) == (20, 20, 0)
    requests = report["requests"]
    assert [q["at_ms"] for q in requests] == pytest.approx([50.0 * i for i in range(20)])
    # every request left on time, although the first answer came only after 200 ms
    assert max(q["late_ms"] for q in requests) < 50, requests
    assert report["sender_late_ms"]["max"] == max(q["late_ms"] for q in requests)
    # D/D/1: request i is answered one service after request i - 1, and left 50 ms after it, so it
    # waited S_i - 50 ms more. Each S_i is 200 ms of sleep plus the serving's own overhead, which a
    # loaded CI machine stretches (217 ms on average seen with the suite on both cores) and now and
    # then stalls for a moment (one step of 703 ms among steps of 150-190 ms, seen in CI); an answer
    # the client reads late lengthens one step and shortens the next. So: no step much under
    # S - 50, the median step's service within 200-230 ms, and the window from the mean service.
    latencies = [q["ms"] for q in requests]
    assert 195 <= latencies[0] <= 300, latencies
    steps = [b - a for a, b in zip(latencies, latencies[1:])]
    assert min(steps) >= 100, (min(steps), steps)
    assert 200 <= float(np.median(steps)) + 50 <= 230, steps
    service = sum(steps) / len(steps) + 50
    assert report["p50_ms"] == pytest.approx(np.percentile(latencies, 50), abs=1e-3)
    assert report["p99_ms"] == pytest.approx(np.percentile(latencies, 99), abs=1e-3)
    # the site served at its capacity (1 / S), busy the whole window
    assert report["window_s"] == pytest.approx(20 * service / 1000, abs=0.3)
    assert report["achieved_rps"] == pytest.approx(1000 / service, rel=0.08)
    assert report["utilization"]["here"] == pytest.approx(1.0, abs=0.08)
    [model] = report["models"]
    assert model["model"] == "s" and model["service_p50_ms"] == pytest.approx(200, abs=10)


def test_low_rate_matches_the_sequential_bench_at_the_same_pace(site, env):
    """At 10 % utilization (10 ms of service, 10 rps) the open loop's p50 is that of requests sent
    one at a time at the same pace (`-n --every 0.1`): nothing overlaps, so nothing queues.

    The same pace, not back to back: on the 2-vCPU VMs here a thread woken after 100 ms idle took
    0.66 ms at the median (0.05 ms back to back; cpuidle haltpoll), and back to back measured this
    step 6-9 ms faster than the open loop (13 against 19-23 ms, three tries in a row). Both are
    measured on a machine the rest of the suite shares: a compile on the other core can slow the
    site between the two (CI once saw 47 ms against 11.9 ms). So the pair is measured up to three
    times, and one agreeing pair passes; an open loop that queued or timed requests wrong at this
    load would disagree every time.
    """
    times = schedule(10, 2, "poisson", seed=5)  # the documented schedule, sent as it is
    pairs = []
    for _ in range(3):
        r = bench(site, env, "-n", "20", "--every", "0.1", "--input", f"cam={site['sleep10']}", "--json")
        assert r.returncode == 0, r.stderr
        paced = json.loads(r.stdout)
        assert paced["every_s"] == 0.1
        sequential = paced["e2e_ms"]["p50"]
        r = bench(site, env, "--rate", "10", "--duration", "2", "--seed", "5", "--input", f"cam={site['sleep10']}",
                  "--json")
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        assert report["sent"] == len(times) and report["seed"] == 5 and report["arrivals"] == "poisson"
        assert [q["at_ms"] for q in report["requests"]] == pytest.approx([1000 * t for t in times], abs=1e-3)
        pairs.append((report["p50_ms"], sequential))
        if abs(report["p50_ms"] - sequential) < 5:
            break
    assert abs(report["p50_ms"] - sequential) < 5, pairs
    assert report["utilization"]["here"] == pytest.approx(len(times) * 0.010 / report["window_s"], rel=0.15), \
        report["models"]


def test_every_paces_the_sequential_bench(site, env):
    """`--every 0.2` over 5 requests (and 1 warm-up) of 10 ms: the run takes 5 gaps of 0.2 s at least;
    with --rate it is refused, naming both."""
    t0 = time.monotonic()
    r = bench(site, env, "-n", "5", "--warmup", "1", "--every", "0.2", "--input", f"cam={site['sleep10']}", "--json")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 >= 1.0
    assert len(json.loads(r.stdout)["e2e_samples_ms"]) == 5
    r = bench(site, env, "--every", "0.2", "--rate", "10")
    assert r.returncode == 2 and "--every and --rate are two modes" in r.stderr, r.stderr


def test_failed_and_late_requests_are_errors(site, env):
    r = bench(site, env, "--rate", "10", "--duration", "1", "--arrivals", "uniform", "--input",
              f"cam={site['fail']}", "--warmup", "0", "--json")
    assert r.returncode == 1, r.stderr  # documented: any failed request
    report = json.loads(r.stdout)
    assert (report["sent"], report["ok"], report["errors"]) == (10, 5, 5)  # the step fails every other call
    [e] = report["error_messages"]
    assert e["count"] == 5 and e["message"].startswith("INTERNAL: ") and "refused every other request" in e["message"]
    assert sum(q["error"] is not None for q in report["requests"]) == 5
    r = bench(site, env, "--rate", "10", "--duration", "1", "--arrivals", "uniform", "--input",
              f"cam={site['fail']}", "--warmup", "0")
    assert r.returncode == 1 and "errors 5" in r.stdout and "refused every other request" in r.stdout, r.stdout
    # past its deadline: 200 ms of service, 20 rps, each request given 0.3 s; never a hang
    t0 = time.monotonic()
    r = bench(site, env, "--rate", "20", "--duration", "0.5", "--arrivals", "uniform", "--input",
              f"cam={site['sleep200']}", "--timeout", "0.3", "--warmup", "0", "--json")
    assert time.monotonic() - t0 < 30
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["sent"] == 10 and report["ok"] + report["errors"] == 10
    assert report["ok"] >= 1 and report["errors"] >= 5  # at most 2 answered in time (only one runs at once)
    assert all(e["message"].startswith("DEADLINE_EXCEEDED") for e in report["error_messages"])
    assert all(q["ms"] is None or q["ms"] <= 300 + 50 for q in report["requests"])


def test_requests_spread_over_the_replicas_of_services_json(site, env, tmp_path):
    """What `planner up` writes for a site of two replicas: bench sends round robin, and the
    utilization is per replica."""
    out = tmp_path / "out"
    shutil.copytree(site["out"] / "sites", out / "sites")
    shutil.copy2(site["out"] / "plan.json", out / "plan.json")
    (out / "logs").mkdir()
    (out / "logs" / "endpoints.json").write_text(json.dumps({"here": site["a"]}))
    (out / "logs" / "services.json").write_text(json.dumps(
        {"here": {"grpc": [site["a"], site["b"]], "metrics": [site["metrics_a"], site["metrics_b"]]}}))

    def served() -> list[float]:  # each replica's count of ensemble requests, from its own metrics
        counts = []
        for url in (site["metrics_a"], site["metrics_b"]):
            text = urllib.request.urlopen(url, timeout=10).read().decode()
            counts.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                              if line.startswith("oip_requests_total{") and 'model="steps"' in line))
        return counts

    # a request of an earlier test that passed its client's deadline may still be running on a
    # replica (200 ms of service), and counts once it ends: the counts first settle
    before, end = served(), time.monotonic() + 10
    while time.monotonic() < end:
        time.sleep(0.5)
        now = served()
        if now == before:
            break
        before = now
    r = planner(env, "bench", out, "--no-predict", "--rate", "10", "--duration", "1", "--arrivals", "uniform",
                "--input", f"cam={site['sleep200']}", "--warmup", "2", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["entry"]["addresses"] == [site["a"], site["b"]]
    assert [b - a for a, b in zip(before, served())] == [6, 6]  # 1 warm-up and 5 timed requests each
    # 10 requests of 200 ms over 2 replicas: each is busy 1 s of the window
    assert report["utilization"]["here"] == pytest.approx(1.0 / report["window_s"], rel=0.08)
    # at 10 rps each replica gets 5 rps, its capacity: no queue builds up beyond a service time or so
    assert report["p99_ms"] < 200 + 200


def test_report_keys_and_the_prediction_beside(site, env, capsys):
    out = site["out"]
    r = planner(env, "bench", out, "--entry", site["a"], "--rate", "5", "--duration", "0.5", "--served-pass", "3",
                "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) == REPORT_KEYS
    assert set(report["predicted"]) == {"p50_ms", "p99_ms"} and set(report["error_pct"]) == {"p50", "p99"}
    assert set(report["sender_late_ms"]) == {"p50", "p99", "max"}
    # the plan names its app.yaml: this machine's prediction is made (at this rate, once the model queues)
    assert report["host_prediction"]["status"] == "ok", report["host_prediction"]
    # the served pass: 3 requests one at a time, the step timed as served, the load predicted from it
    served = report["served_prediction"]["served"]
    assert served["requests"] == 3 and served["every_s"] == pytest.approx(0.2) and set(served["models"]) == {"s"}
    assert served["models"]["s"]["ms"] > 0 and served["models"]["s"]["cpu_ms"] is not None
    assert report["predicted_from"] == "the served pass" and report["predicted"]["p50_ms"] is not None
    assert set(report["cpu_per_request_ms"]) == {"modeled", "served_pass", "pilot", "under_load"}
    assert served["pilot_requests"] == len(schedule(5, 0.25, "poisson", 7919)) and report["served_prediction"]["contention"] >= 1
    # the prediction a few percent faster and slower: around it, and where the measurement fell
    band = report["predicted_range"]
    assert band["p50_ms"][0] <= report["predicted"]["p50_ms"] <= band["p50_ms"][1]
    assert band["measured_within"]["p50"] is (band["p50_ms"][0] <= report["p50_ms"] <= band["p50_ms"][1])
    # the same schedule on a machine 10, 25 and 50 % slower than the pass measured: never sooner
    slower = report["served_prediction"]["slower"]
    assert [p["slower"] for p in slower] == [1.1, 1.25, 1.5]
    assert report["predicted"]["p50_ms"] <= slower[0]["p50_ms"] <= slower[1]["p50_ms"] <= slower[2]["p50_ms"]
    implied = report["implied_slowdown"]  # None: outside 0.5-4x (a 0.5 s load's p50 is one draw)
    assert set(implied) == {"p50", "cpu_under_load_over_pass"}
    assert implied["cpu_under_load_over_pass"] is None or implied["cpu_under_load_over_pass"] > 0  # 10 ms ticks
    assert implied["p50"] is None or 0.5 <= implied["p50"] <= 4
    # the text output says it (the same report, shown)
    from planner.cli.bench import show_load

    show_load(report | {"implied_slowdown": {"p50": 1.125, "cpu_under_load_over_pass": 1.14},
                        "predicted_range": {"speed_error": 0.03, "p50_ms": [40.0, 52.5], "p99_ms": [90.0, 120.0],
                                            "measured_within": {"p50": True, "p99": False}}})
    text = " ".join(capsys.readouterr().out.split())
    assert ("on this machine 3 % faster / slower than that: p50 40.000-52.500 p99 90.000-120.000 (measured p50 "
            "inside, p99 outside)") in text
    assert ("the measured p50 is the prediction on a machine 1.125x as slow as the served pass measured it; the load "
            "used 1.14x the pass's CPU per request") in text
    # a pilot of ~1 request is too short to read the machine's speed off: at the pass's; one that was, shown
    assert report["served_prediction"]["pilot_speed"]["slowdown"] is None
    assert report["at_pass_speed"]["p50_ms"] == report["predicted"]["p50_ms"]
    sp = report["served_prediction"] | {"pilot_speed": {"slowdown": 1.2, "pilot_p50_ms": 61.5}}
    show_load(report | {"served_prediction": sp, "at_pass_speed": {"p50_ms": 70.0, "p99_ms": 100.0,
                                                                   "error_pct": {"p50": 10.0, "p99": -5.0}}})
    assert ("the pilot found the machine 1.2x as slow as the served pass (the pilot's p50 61.5 ms on its own "
            "schedule); at the pass's speed: p50 70.000 (measured +10%) p99 100.000 (measured -5%)"
            ) in " ".join(capsys.readouterr().out.split())
    weighed = {"slowdown": 1.05, "read": 1.2, "interval": [1.1, 1.3], "weight": 0.25, "moved": False,
               "pilot_p50_ms": 61.5}
    at_pass = {"p50_ms": 70.0, "p99_ms": 100.0, "error_pct": {"p50": 10.0, "p99": -5.0}}
    show_load(report | {"served_prediction": sp | {"pilot_speed": weighed}, "at_pass_speed": at_pass})
    assert ("the pilot found the machine 1.2x as slow as the served pass (the pilot's p50 61.5 ms on its own "
            "schedule), 1.1-1.3x one standard deviation either side; weighed with the pass's speed (the pilot's "
            "weight 0.25): predicted at 1.05x; at the pass's speed") in " ".join(capsys.readouterr().out.split())
    show_load(report | {"served_prediction": sp | {"pilot_speed": weighed | {"moved": True, "slowdown": 1.2}},
                        "at_pass_speed": at_pass})
    assert "so far from the pass's speed that the machine moved between them; predicted at the pilot's" in " ".join(
        capsys.readouterr().out.split())
    speed = report["machine_speed"]
    assert speed["before_ms"] > 0 and speed["after_ms"] > 0 and speed["moved"] == bool(speed["where"])
    from planner.local.open_loop import machine_speed

    moved = machine_speed(0.2, 0.2, {"served_pass": 437.0, "pilot": 358.4, "under_load": 358.674}, 1.9063, 2)
    show_load(report | {"machine_speed": moved})
    assert ("this machine's speed moved during the bench (a shared host's slow spell): between the served pass and its "
            "pilot (the pilot cost 358.4 core-ms a request, the pass 437: crowding does not make a request cheaper): "
            "the prediction and the load were not measured on the same machine; run it again"
            ) in " ".join(capsys.readouterr().out.split())
    # a model whose requests waited: their mean handover beside the queue
    show_load(report | {"models": [{"model": "s", "site": "here", "service_p50_ms": 10.0, "service_p99_ms": 12.0,
                                    "queue_p50_ms": 3.0, "queue_p99_ms": 9.0, "handover_mean_ms": 0.412,
                                    "handovers": 7}]})
    table = capsys.readouterr().out
    assert "handover" in table and "0.412" in table and "9.000" in table
    # after the load, the same model with the load as its pilot: its toll from the CPU the load used
    check = report["at_load_cpu"]
    assert set(check) == {"p50_ms", "p99_ms", "contention", "error_pct"} and check["contention"] >= 1
    assert check["error_pct"]["p50"] == pytest.approx(100 * (report["p50_ms"] - check["p50_ms"]) / check["p50_ms"], abs=0.1)
    from_profiles = report["predicted_from_profiles"]["p50_ms"]
    assert from_profiles == report["host_prediction"]["p50_ms"]
    r = planner(env, "bench", out, "--entry", site["a"], "--rate", "5", "--duration", "0.5", "--served-pass", "0")
    assert r.returncode == 0, r.stderr
    assert "the served pass:" not in r.stdout, r.stdout
    if from_profiles is None:
        assert "no prediction at this rate" in r.stdout, r.stdout
    else:
        assert f"p50 {from_profiles:.3f}" in r.stdout, r.stdout
    assert "utilization" in r.stdout and "here" in r.stdout
    r = planner(env, "bench", out, "--entry", site["a"], "--rate", "5", "--duration", "0.5", "--served-pass", "3")
    assert r.returncode == 0, r.stderr
    assert "the served pass:" in r.stdout and "on this machine slower than in the served pass: +10 % p50 " in r.stdout


@pytest.mark.parametrize("args, says", [(("-n", "5", "--rate", "5"), "-n and --rate"), (("--rate", "0"), "--rate"),
                                        (("--rate", "5", "--arrivals", "bursty"), "--arrivals"),
                                        (("--rate", "5", "--duration", "-1"), "--duration"),
                                        (("--rate", "5", "--duration", "0"), "--duration"),
                                        (("--rate", "5", "--timeout", "0"), "--timeout"),
                                        (("--duration", "5"), "give --rate too"),
                                        (("-n", "5", "--seed", "1"), "--seed set(s) the open loop"),
                                        (("--served-pass", "5"), "--served-pass set(s) the open loop"),
                                        (("--rate", "5", "--served-pass", "-1"), "--served-pass")])
def test_bench_refuses_conflicting_or_bad_options(tmp_path, args, says):
    """Refused before anything is read or sent (OUT here is empty)."""
    from typer.testing import CliRunner

    from planner.cli.main import app as cli

    r = CliRunner().invoke(cli, ["bench", str(tmp_path), *args])
    assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, (args, r.output)


def test_the_speed_probe_says_when_the_machine_moved_between_the_prediction_and_the_load():
    from planner.local.open_loop import machine_speed

    assert machine_speed(0.2, 0.22) == {"before_ms": 0.2, "after_ms": 0.22, "after_over_before": 1.1, "moved": False,
                                        "where": []}
    assert machine_speed(0.2, 0.35)["moved"] and machine_speed(0.35, 0.2)["moved"]  # a spell began, or ended
    assert not machine_speed(0.2, 0.3)["moved"]  # 1.5x: the profiler's own threshold, not over it


def cpu(served_pass: float, pilot: float, under_load: float) -> dict:
    return {"served_pass": served_pass, "pilot": pilot, "under_load": under_load}


@pytest.mark.parametrize("rate, figures, where", [
    # the OCR load test's takings of 2026-11-29 18:43 (benchmarks/results/load_accuracy_ocr.json as
    # committed in 3ccd60f), whose pass fell in a slow spell: predicted too slow, p50 -21 % and -21 %
    (1.9063, cpu(437.0, 358.4, 358.674), "between the served pass and its pilot"),
    (3.8127, cpu(381.5, 342.593, 340.607), "between the served pass and its pilot"),
])
def test_a_pass_taken_in_a_slow_spell_shows_against_its_pilot(rate, figures, where):
    from planner.local.open_loop import machine_speed

    speed = machine_speed(0.2, 0.2, figures, rate, 2)
    assert speed["moved"] and any(w.startswith(where) for w in speed["where"]), speed


@pytest.mark.parametrize("rate, figures", [
    # the synthetic app's takings of 2026-11-29 16:27 (benchmarks/results/load_accuracy.json), all within the goal
    (28.1271, cpu(6.0, 6.042, 5.932)),  # sleep step at 85 %: few core-ms, so any ratio moves no queue
    (9.9272, cpu(12.5, 9.01, 7.748)),  # sleep step at 30 %: the pilot 0.72x the pass, 0.017 of the machine
    (19.9223, cpu(36.5, 34.456, 34.941)),  # CPU-bound step at 60 %
    (28.2233, cpu(36.0, 34.683, 33.992)),  # CPU-bound step at 85 %
    # crowding: a pilot that costs more than the pass is the toll the prediction charges, not a move
    (3.8127, cpu(295.0, 330.0, 335.0)),
    # the OCR takings of 2026-11-29 23:04 at 60 and 85 %: the load cost 1.31x and 1.17x its pilot,
    # and its p50 was the prediction's (-1.0 %, -2.8 %): the load against its pilot is not judged
    (2.0619, cpu(495.0, 542.963, 710.633)),
    (2.6134, cpu(525.0, 559.459, 654.0)),
])
def test_a_bench_whose_machine_held_is_not_called_moved(rate, figures):
    from planner.local.open_loop import machine_speed

    assert machine_speed(0.2, 0.2, figures, rate, 2) == {
        "before_ms": 0.2, "after_ms": 0.2, "after_over_before": 1.0, "moved": False, "where": []}

