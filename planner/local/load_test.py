"""The schedule and the statistics of an open-loop load test (`planner bench --rate`), and the
per-request timings both bench modes aggregate. The sender is planner.local.open_loop.

Open loop: request i leaves at its scheduled time t_i whatever happened to the earlier ones, and
its latency runs from t_i, not from when it actually left. A sender that falls behind its
schedule therefore still counts against the latency (no coordinated omission), and its own
lateness is reported beside, so that a slow client is not mistaken for a slow server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from planner.errors import InputError

ARRIVALS = ("poisson", "uniform")
MAX_ERROR_MESSAGES = 5  # distinct error messages the report keeps, with their counts


def schedule(rate_rps: float, duration_s: float, arrivals: str = "poisson", seed: int = 0) -> list[float]:
    """Send times, seconds from the start, every one before `duration_s`.

    poisson: a Poisson process (exponential gaps of mean 1/rate, drawn from `seed`: the same
    seed, the same schedule); uniform: one request every 1/rate s, the first at 0."""
    if not rate_rps > 0 or not math.isfinite(rate_rps):
        raise InputError(f"--rate must be a number of requests per second > 0, got {rate_rps:g}")
    if not duration_s > 0 or not math.isfinite(duration_s):
        raise InputError(f"--duration must be a number of seconds > 0, got {duration_s:g}")
    if arrivals == "uniform":
        # i / rate < duration; rounded so that 20 rps x 1 s is 20 requests, not 21 by a float's last bit
        return [i / rate_rps for i in range(math.ceil(round(rate_rps * duration_s, 9)))]
    if arrivals != "poisson":
        raise InputError(f"--arrivals must be one of {', '.join(ARRIVALS)}, got {arrivals!r}")
    rng = np.random.default_rng(seed)
    times = []
    t = rng.exponential(1 / rate_rps)
    while t < duration_s:
        times.append(float(t))
        t += rng.exponential(1 / rate_rps)
    return times


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "n": 0}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "mean": round(float(a.mean()), 3), "n": len(values)}


@dataclass
class RequestTimes:
    """One answered request's timings (the runtime's `timings`), summed per model and per hop."""

    models: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, site) -> ms running
    queues: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, site) -> ms waiting for an instance
    # (model, site) -> of that wait, ms from the instance's hand-on to this request until it ran
    handovers: dict[tuple[str, str], float] = field(default_factory=dict)
    hops: dict[tuple[str, str], list] = field(default_factory=dict)  # (hop, flows) -> [ms, bytes]


def request_times(timings: list) -> RequestTimes:
    """Sum a request's timings ([kind, name, site, ms, bytes, detail, cpu_ms, handover_ms]) by kind:
    "model", "queue" (the time it waited for a model instance, where the runtime reports it; and
    its handover, where the runtime reports that) and "hop"."""
    times = RequestTimes()
    for kind, name, site, t_ms, nbytes, *rest in timings:
        if kind in ("model", "queue"):
            table = times.models if kind == "model" else times.queues
            table[(name, site)] = table.get((name, site), 0.0) + t_ms
            if kind == "queue" and len(rest) > 2 and rest[2] is not None:
                times.handovers[(name, site)] = times.handovers.get((name, site), 0.0) + rest[2]
        else:
            acc = times.hops.setdefault((name, rest[0] if rest else ""), [0.0, 0])
            acc[0] += t_ms
            acc[1] += nbytes
    return times


@dataclass
class Outcome:
    """One request of the schedule: seconds from the start of the schedule."""

    at: float  # when it was due to leave
    sent: float  # when it left
    done: float | None = None  # when its answer or error came back (None: never)
    error: str | None = None  # "CODE: details" when it failed
    timings: list = field(default_factory=list)  # the runtime's, when it succeeded

    @property
    def ok(self) -> bool:
        return self.done is not None and self.error is None


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def error_pct(measured: float | None, predicted: float | None) -> float | None:
    """(measured - predicted) / predicted * 100, or None without both."""
    if measured is None or not predicted:
        return None
    return round(100 * (measured - predicted) / predicted, 1)


def percentile_errors(p50_ms: float | None, p99_ms: float | None, predicted: dict) -> dict:
    """{"p50", "p99"}: error_pct of the measured p50 and p99 against `predicted`'s p50_ms and p99_ms."""
    return {"p50": error_pct(p50_ms, predicted["p50_ms"]), "p99": error_pct(p99_ms, predicted["p99_ms"])}


def summarize(outcomes: list[Outcome], rate_rps: float, duration_s: float, replicas: dict[str, int],
              host: dict | None = None, instances: dict[str, int] | None = None, served: dict | None = None) -> dict:
    """The report's numbers (`planner bench --rate --json`, beside its context).

    The window runs from the start of the schedule to the last answer (at least `duration_s`):
    `achieved_rps` is ok answers per second over it, a site's `utilization` its models' busy
    time (kind "model" timings of the answered requests) over it per replica, each model's
    divided by its `instances` (the share of its servers busy, as the plan counts it). `host` is
    host_prediction at this rate: its p50_ms, p99_ms and utilization, where it gives them; `served`
    the prediction from the served pass (planner.local.prediction.served_prediction): where it has
    percentiles, they are `predicted` and the host profiles' are `predicted_from_profiles`."""
    ok = [o for o in outcomes if o.ok]
    latencies = [(o.done - o.at) * 1000 for o in ok]
    window = max([duration_s] + [o.done for o in outcomes if o.done is not None])
    e2e = percentiles(latencies)
    messages: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            message = o.error or "no answer"
            if message in messages or len(messages) < MAX_ERROR_MESSAGES:
                messages[message] = messages.get(message, 0) + 1
    service, queue, busy = {}, {}, {}
    for o in ok:
        times = request_times(o.timings)
        for (name, site), ms in times.models.items():
            service.setdefault((name, site), []).append(ms)
            busy[site] = busy.get(site, 0.0) + ms / (instances or {}).get(name, 1)
        for key, ms in times.queues.items():
            queue.setdefault(key, []).append(ms)
    handover = turn_handovers(ok)
    models = []
    for (name, site), values in sorted(service.items()):
        s, q = percentiles(values), percentiles(queue.get((name, site), []))
        row = {"model": name, "site": site, "service_p50_ms": s["p50"], "service_p99_ms": s["p99"]}
        if q["n"]:  # the runtime reports queueing: only then
            row |= {"queue_p50_ms": q["p50"], "queue_p99_ms": q["p99"]}
        handed = handover.get((name, site))
        if handed:  # a queue of turns serves each waiting request this much slower than its run alone
            row |= {"handover_mean_ms": _ms(sum(handed) / len(handed)), "handovers": len(handed)}
        models.append(row)
    host = host or {}
    from_profiles = {"p50_ms": host.get("p50_ms"), "p99_ms": host.get("p99_ms")}
    from_served = served is not None and served.get("p50_ms") is not None
    predicted = {"p50_ms": served["p50_ms"], "p99_ms": served["p99_ms"]} if from_served else from_profiles
    late = percentiles([(o.sent - o.at) * 1000 for o in outcomes])
    return {
        "rate_rps": rate_rps,
        "achieved_rps": round(len(ok) / window, 3),
        "sent": len(outcomes), "ok": len(ok), "errors": len(outcomes) - len(ok),
        "error_messages": [{"message": m, "count": n} for m, n in messages.items()],
        "p50_ms": e2e["p50"], "p95_ms": e2e["p95"], "p99_ms": e2e["p99"],
        "predicted": predicted,
        "error_pct": percentile_errors(e2e["p50"], e2e["p99"], predicted),
        "predicted_from": served.get("source", "the served pass") if from_served else "the host profiles",
        "predicted_from_profiles": from_profiles,
        "error_pct_from_profiles": percentile_errors(e2e["p50"], e2e["p99"], from_profiles),
        "served_prediction": served,
        "utilization": {site: round(ms / 1000 / window / replicas.get(site, 1), 4) for site, ms in sorted(busy.items())},
        "predicted_utilization": host.get("utilization"),
        "models": models,
        "window_s": round(window, 3),
        "sender_late_ms": {"p50": late["p50"], "p99": late["p99"],
                           "max": _ms(max(((o.sent - o.at) * 1000 for o in outcomes), default=None))},
        "requests": [_request_row(o) for o in outcomes],
    }


def turn_handovers(outcomes: list[Outcome]) -> dict[tuple[str, str], list[float]]:
    """(model, site) -> the handover (ms) of each answered request that waited for one of its
    instances, where the runtime reports handovers (one that found an instance free had none)."""
    out: dict[tuple[str, str], list[float]] = {}
    for o in outcomes:
        if not o.ok:
            continue
        times = request_times(o.timings)
        for key, ms in times.queues.items():
            if ms > 0 and key in times.handovers:
                out.setdefault(key, []).append(times.handovers[key])
    return out


def _request_row(o: Outcome) -> dict:
    """One request of the report; `service_ms`, `queue_ms` and `handover_ms` (its models' run,
    instance waits and the handovers in those, summed) let a reader replay the schedule through a
    queue of their own (tests/local/fifo_replay.py)."""
    row = {"at_ms": _ms(o.at * 1000), "late_ms": _ms((o.sent - o.at) * 1000),
           "ms": _ms((o.done - o.at) * 1000) if o.ok else None, "error": None if o.ok else (o.error or "no answer"),
           "service_ms": None, "queue_ms": None, "handover_ms": None}
    if o.ok:
        times = request_times(o.timings)
        row["service_ms"] = _ms(sum(times.models.values()))
        row["queue_ms"] = _ms(sum(times.queues.values()))
        row["handover_ms"] = _ms(sum(times.handovers.values()))
    return row
