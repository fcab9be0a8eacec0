"""Each model, hop and the client's own share as this machine serves them, one request at a time:
the served pass of `planner bench --rate`, before its load.

The host profiles time a build alone, back to back, in the profiler's process. Served, the same
build runs inside a site process between gRPC handlers, after idle gaps, and its process's other
threads wake around it. Measured here (OCR det, 2 threads on 2 cores, through `planner up`): 54 ms
back to back, 66 ms when each request came 0.4 s after the last one answered; in the profiler's
process the gap changed nothing. A load test compares the load model (queueing, shared cores)
with the measurement only where its inputs are what is served, so the pass measures them: `n`
requests, one every 1/rate seconds of the load (the load's mean gap; right after the last answer
where that comes later), never two at once, and takes medians. Then a pilot (pilot_seconds) of
open loop at the load's rate on a schedule of its own, whose CPU per request (more than one at a
time: overlapping requests cost the machine more) gives the simulation its contention toll.

Per model: the wall time of a run and the CPU time its process used meanwhile (all its threads:
a build's own thread pool included; one request at a time, nothing else ran in the process).
Per hop (site -> site): the round trip minus the receiver's handling. The rest of a request's
time (the client's serialization, gRPC on both ends, the entry's handling around the nodes) is
the client's share. Beside them the whole machine's CPU time per request over the pass (every
process: the sites, the client, anything else), which the load test measures again under load:
where it grows, the cores did more work per request than one request at a time needs.

That CPU per request is more than the models' runs, the hops and the client's share add up to:
OCR through `planner up` here, one request a second, the two site processes used 45-55 core-ms
per request more than their model runs (the sites' gRPC and python around the models; the
medians of the runs against the machine's mean), while the machine idle between requests used
~0.01 cores. It is work the load pays too (the cores it takes are not the models'): the
simulation carries it as one more stage, OUTSIDE, after each request's answer (off the answer's
path: one at a time it delays nothing the pass's end-to-end time does not already hold), of the
pass's CPU per request less what the stages need and less what the machine spent idle
(IDLE_S before the pass, nothing sent).

The medians are what the pass reports; the simulation runs on its requests themselves: each
simulated request takes the times of one request of the pass, drawn at random, for every model,
hop and client share (planner.model.simulation's samples). Served, a run's time is not one
number: OCR det alone here runs ~52 ms most of the time and ~104 ms in the machine's slow
spells (benchmarks/results/machine_drift.md); a queue fed runs of varying length waits longer
than one fed their median (Pollaczek-Khinchine: the wait grows with 1 + cv^2), and the cores'
load is the runs' mean, not their median.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace

from planner.model.bisection import turning_point
from planner.model.simulation import Stage, core_ms_per_request, simulate
from planner.profiling.load import busy_core_ms, machine_cpu_times

CLIENT = "client"  # the stage of a request's time outside its models and hops
OUTSIDE = "outside the models"  # the stage of the machine's CPU per request that no other stage carries
IDLE_S = 1.0  # the machine's own CPU, nothing sent, measured this long before the pass
UNLIMITED = 1 << 20  # servers of a hop or the client's share: requests never wait for one another there
MAX_GAP_S = 1.0  # idle gaps longer than this change nothing more (and would make the pass long)
DEFAULT_REQUESTS = 20  # one at a time
PILOT_S = 10.0  # then an open loop this long at the load's rate (its own schedule)
# or as long as this many requests take at the rate, where that is longer: a 10 s pilot at the OCR
# example's 30 % rate here (1.37 rps) drew 7 requests, too few to read its speed off (pilot_seconds)
PILOT_REQUESTS = 20
# and longer the busier the load (pilot_seconds): the machine's CPU per request over 10 s windows of
# open loop (OCR through planner up at 4.2 rps, its cores ~76 % busy; Intel 2-vCPU VM, 2026-11-30)
# ran 333-399 core-ms (sd ~4 %), over 30 s 357-375, over 60 s 362-369; near 85 % a 2 % error in the
# speed moved the OCR prediction's p50 by 28 % (benchmarks/results/load_accuracy_ocr.md, 03:57)
SPEED_NOISE = 0.04
P50_SHARE_OF_SPEED = 0.075  # what the pilot's reading of the speed may move the predicted p50 by
MAX_BUSY = 0.95  # busier than this the pilot takes its longest (half the load) anyway
MAX_CONTENTION = 3.0  # beyond this the pilot measured something else than the cores' sharing
# a toll is read off the pilot only where it has this many requests and its simulation spends this
# share of its work crowded: a pilot of 2 requests that overlapped a little put a few core-ms of the
# machine's noise (CPU time comes in 10 ms ticks) on almost no crowded work, a toll of 2.8
MIN_PILOT_REQUESTS = 10
MIN_CROWDED_SHARE = 0.1
# nor where the pilot's CPU beyond fair sharing is within the pilot's own noise (SPEED_NOISE at
# PILOT_S, falling as the root of its length; a whole pilot has no window's edges, so this reads
# it wide): the toll spreads that CPU over the crowded work alone, and little of a pilot at 60 %
# of the OCR example's cores is crowded. There a 16 s pilot (48 requests) ran within its noise
# over its pass, read a toll of 1.084, and the prediction's p99 was -30.9 % (2026-11-30 08:32, 600
# s a rate); without the toll +0.3 % (the same pass read again). Left: at 30 % pilots of 18-20
# requests ran 14-19 core-ms a request over their pass, beyond their noise, and kept tolls of
# 1.32-1.36 (p99 -25.7 and -46.8 %; without a toll +13.1 and -16.5 %). At 85 % pilots of 282-455
# requests read their tolls (1.04-1.09) beyond their noise.


@dataclass
class Served:
    """Medians over the pass (ms), and each request's own times (`runs`)."""

    requests: int
    every_s: float  # one request every so many seconds (or right after the last answer)
    models: dict[str, float] = field(default_factory=dict)  # wall time of a run
    models_cpu: dict[str, float] = field(default_factory=dict)  # its process's CPU time meanwhile
    hops: dict[tuple[str, str], float] = field(default_factory=dict)  # (from site, to site)
    client_ms: float = 0.0  # a request's time outside its model runs and hops
    e2e_ms: float = 0.0
    cpu_per_request_ms: float | None = None  # the whole machine's busy core-ms over the pass, per request
    idle_cores: float | None = None  # the machine's busy cores before the pass, nothing sent
    wall_s: float = 0.0  # the pass, from its first request to its last answer
    pilot_arrivals_ms: list[float] = field(default_factory=list)  # then a short open loop at the load's rate
    pilot_cpu_per_request_ms: float | None = None  # the machine's busy core-ms over it, per request
    pilot_ms: list[float] = field(default_factory=list)  # each pilot request's latency, from its due time
    # each handover of the pilot (a request that waited for a model's instance: from the instance's
    # hand-on until it ran), which one request at a time never pays
    pilot_handovers_ms: list[float] = field(default_factory=list)
    # each answered request's own times, in the pass's order: {"models": {m: ms}, "hops": {(a, b): ms},
    # "client_ms": ms}; the simulation draws whole requests from them (their spread, not only medians)
    runs: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "every_s": round(self.every_s, 4), "e2e_ms": round(self.e2e_ms, 3),
                "client_ms": round(self.client_ms, 3), "cpu_per_request_ms": _r(self.cpu_per_request_ms),
                "idle_cores": _r(self.idle_cores), "idle_per_request_ms": _r(self.idle_per_request_ms),
                "pilot_requests": len(self.pilot_arrivals_ms),
                "pilot_cpu_per_request_ms": _r(self.pilot_cpu_per_request_ms),
                "models": {m: {"ms": round(ms, 3), "cpu_ms": _r(self.models_cpu.get(m))}
                           for m, ms in sorted(self.models.items())},
                "hops": {f"{a}->{b}": round(ms, 3) for (a, b), ms in sorted(self.hops.items())},
                # what the prediction was simulated from, so that it can be made again from the report
                "runs": [{"models": {m: round(ms, 3) for m, ms in r["models"].items()},
                          "hops": {f"{a}->{b}": round(ms, 3) for (a, b), ms in r["hops"].items()},
                          "client_ms": round(r["client_ms"], 3)} for r in self.runs],
                "pilot_arrivals_ms": [round(t, 3) for t in self.pilot_arrivals_ms],
                "pilot_ms": [round(t, 3) for t in self.pilot_ms],
                "pilot_handovers_ms": [round(t, 3) for t in self.pilot_handovers_ms],
                "pilot_handover_ms": _r(self.pilot_handover_ms),
                "wall_s": round(self.wall_s, 3)}

    @classmethod
    def from_dict(cls, d: dict) -> Served:
        """The pass again from as_dict's report (to the rounding of its figures)."""
        return cls(requests=d["requests"], every_s=d["every_s"], e2e_ms=d["e2e_ms"], client_ms=d["client_ms"],
                   cpu_per_request_ms=d["cpu_per_request_ms"], idle_cores=d["idle_cores"], wall_s=d["wall_s"],
                   models={m: v["ms"] for m, v in d["models"].items()},
                   models_cpu={m: v["cpu_ms"] for m, v in d["models"].items() if v["cpu_ms"] is not None},
                   hops={_hop_sites(k): ms for k, ms in d["hops"].items()},
                   pilot_arrivals_ms=list(d["pilot_arrivals_ms"]), pilot_cpu_per_request_ms=d["pilot_cpu_per_request_ms"],
                   pilot_ms=list(d.get("pilot_ms", [])), pilot_handovers_ms=list(d.get("pilot_handovers_ms", [])),
                   runs=[{"models": dict(r["models"]), "hops": {_hop_sites(k): ms for k, ms in r["hops"].items()},
                          "client_ms": r["client_ms"]} for r in d["runs"]])

    @property
    def pilot_handover_ms(self) -> float | None:
        """The mean of the pilot's handovers (None where no request of it waited): the runtime's
        cost of a turn on this machine, which served_stages gives every model."""
        return sum(self.pilot_handovers_ms) / len(self.pilot_handovers_ms) if self.pilot_handovers_ms else None

    @property
    def idle_per_request_ms(self) -> float | None:
        """The machine's idle CPU (idle_cores) over the pass's time per request."""
        if self.idle_cores is None or not self.requests:
            return None
        return self.idle_cores * 1000 * self.wall_s / self.requests


def _hop_sites(name: str) -> tuple[str, str]:
    """(from site, to site) of a hop named "from->to", as the runtime's timings and the report name it."""
    src, _, dst = name.partition("->")
    return src, dst


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def summarize_pass(answers: list[tuple[float, list]], every_s: float) -> Served:
    """Served medians from `answers`: (end-to-end ms, the runtime's timings) per request."""
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    hops: dict[tuple[str, str], list[float]] = {}
    outside, runs = [], []
    for e2e, timings in answers:
        inside = 0.0
        run: dict = {"models": {}, "hops": {}}
        for t in timings:
            kind, name, ms = t[0], t[1], float(t[3])
            if kind == "model":
                wall.setdefault(name, []).append(ms)
                run["models"][name] = run["models"].get(name, 0.0) + ms
                if len(t) > 6 and t[6] is not None:
                    cpu.setdefault(name, []).append(float(t[6]))
                inside += ms
            elif kind == "hop":
                pair = _hop_sites(name)
                hops.setdefault(pair, []).append(ms)
                run["hops"][pair] = run["hops"].get(pair, 0.0) + ms
                inside += ms
            elif kind == "queue":
                inside += ms
        outside.append(max(0.0, e2e - inside))
        runs.append(run | {"client_ms": outside[-1]})
    med = statistics.median
    return Served(requests=len(answers), every_s=every_s, models={m: med(v) for m, v in wall.items()},
                  models_cpu={m: med(v) for m, v in cpu.items()}, hops={k: med(v) for k, v in hops.items()},
                  client_ms=med(outside) if outside else 0.0,
                  e2e_ms=med(e for e, _ in answers) if answers else 0.0, runs=runs)


def served_pass(clients: list, request, n: int, every_s: float, timeout_s: float) -> Served | str:
    """`n` requests, round robin over `clients` (OipClient), one every `every_s` (at most MAX_GAP_S)
    or right after the last one answered where that comes later; their medians, or why there are
    none (no request answered: the load that follows reports its own errors)."""
    import grpc

    from planner_runtime.client import decode_response

    every_s = min(max(every_s, 0.0), MAX_GAP_S)
    answers, failed = [], ""
    idle_before = machine_cpu_times()
    time.sleep(IDLE_S)
    idle = busy_core_ms(idle_before, machine_cpu_times())
    due = start = time.perf_counter()
    cpu_before = machine_cpu_times()
    for i in range(n):
        time.sleep(max(0.0, due - time.perf_counter()))
        t0 = time.perf_counter()
        try:
            _, params = decode_response(clients[i % len(clients)].infer_future(request, timeout=timeout_s).result())
        except grpc.RpcError as exc:
            failed = f"{exc.code().name}: {exc.details()}"
        else:
            answers.append(((time.perf_counter() - t0) * 1000, params.get("timings", [])))
        due = t0 + every_s
    busy = busy_core_ms(cpu_before, machine_cpu_times())
    if not answers:
        return f"no request of the served pass was answered ({failed})"
    served = summarize_pass(answers, every_s)
    served.cpu_per_request_ms = None if busy is None else busy / n
    served.idle_cores = None if idle is None else idle / 1000 / IDLE_S
    served.wall_s = time.perf_counter() - start
    return served


def served_stages(stages: list[Stage], sinks: list[tuple[str, float]], sites: dict[str, str], entry_site: str,
                  served: Served) -> tuple[list[Stage], list[tuple[str, float]]]:
    """`stages` (every site on this machine's cores: one pool) with the served times: each model's
    run as served (its median, and each request's time as samples), keeping busy the cores its
    CPU time says; each hop between two sites and the
    client's share as work on this machine's cores too (on loopback a hop is CPU: serialize, copy
    through the kernel, parse), one core each, never waiting for one another. A hop no request of
    the pass made keeps the stage's own delay. The machine's CPU per request that none of them
    carries (the pass's, less the idle machine's, less what they need) is one more stage, OUTSIDE,
    on one core after the request's answer. A request that waited for a model's instance starts
    the pilot's mean handover after it frees (none without a pilot that waited)."""
    pool = stages[0].pool if stages else ""

    def samples(pick, median: float) -> tuple[float, ...]:
        return tuple(v if (v := pick(r)) is not None else median for r in served.runs)

    out = [Stage(CLIENT, served.client_ms, 1, UNLIMITED, (("", 0.0),), pool,
                 samples_ms=samples(lambda r: r["client_ms"], served.client_ms))]
    hops: dict[tuple[str, str], str] = {}

    def hop(producer: str, delay_ms: float, dst: str) -> tuple[str, float]:
        src = sites.get(producer, entry_site)
        if delay_ms <= 0 or src == dst:
            return (producer or CLIENT, 0.0)
        ms = served.hops.get((src, dst))
        if ms is None:
            return (producer or CLIENT, delay_ms)
        key = (producer, dst)
        if key not in hops:
            hops[key] = f"hop {producer or 'client'}->{dst}"
            out.append(Stage(hops[key], ms, 1, UNLIMITED, ((producer or CLIENT, 0.0),), pool,
                             samples_ms=samples(lambda r: r["hops"].get((src, dst)), ms)))
        return (hops[key], 0.0)

    handover = served.pilot_handover_ms or 0.0
    for s in stages:
        ms = served.models.get(s.name, s.service_ms)
        cpu = served.models_cpu.get(s.name)
        out.append(replace(s, service_ms=ms, handover_ms=handover, busy_cores=None if cpu is None or ms <= 0 else cpu / ms,
                           inputs=tuple(hop(p, d, sites[s.name]) for p, d in s.inputs),
                           samples_ms=samples(lambda r: r["models"].get(s.name), ms) if s.name in served.models
                           else ()))
    answer = [hop(p, d, entry_site) for p, d in sinks]
    outside = unattributed_ms(served, out)
    if outside > 0:
        out.append(Stage(OUTSIDE, outside, 1, UNLIMITED, tuple(answer) or (("", 0.0),), pool))
    return out, answer


def pilot_seconds(rate_rps: float, load_s: float, busy: float = 0.0) -> float:
    """The pilot's length: PILOT_S, or PILOT_REQUESTS' mean gaps at the rate, or as long as it takes
    to read the machine's speed as finely as a load keeping its busiest resource `busy` (0-1) needs
    (a wait grows about as 1/(1-busy): a speed read d off moves the p50 by about d/(1-busy); the
    reading's noise falls as the root of its length, SPEED_NOISE at PILOT_S), whichever is longest;
    at most half the load's."""
    finest = P50_SHARE_OF_SPEED * (1 - min(busy, MAX_BUSY))
    return min(max(PILOT_S, PILOT_REQUESTS / rate_rps, PILOT_S * (SPEED_NOISE / finest) ** 2), load_s / 2)


def unattributed_ms(served: Served, stages: list[Stage]) -> float:
    """Core-ms per request the pass measured on the machine beyond what `stages` need and what the
    machine spent idle (0 where the pass has no CPU figures, or where the stages need more)."""
    if served.cpu_per_request_ms is None:
        return 0.0
    return max(0.0, served.cpu_per_request_ms - (served.idle_per_request_ms or 0.0) - core_ms_per_request(stages))


def pilot_cpu_noise_ms(served: Served) -> float:
    """One standard deviation of the pilot's CPU per request (core-ms): SPEED_NOISE of it over
    PILOT_S, falling as the root of the pilot's length (its n arrivals span n - 1 of its n gaps)."""
    arrivals, measured = served.pilot_arrivals_ms, served.pilot_cpu_per_request_ms or 0.0
    if len(arrivals) < 2 or arrivals[-1] <= arrivals[0]:
        return measured
    span_s = (arrivals[-1] - arrivals[0]) / 1000 * len(arrivals) / (len(arrivals) - 1)
    return SPEED_NOISE * (PILOT_S / span_s) ** 0.5 * measured


def contention(stages: list[Stage], sinks: list[tuple[str, float]], served: Served, cores: int) -> float:
    """toll_reading's toll."""
    return toll_reading(stages, sinks, served, cores)[0]


def toll_reading(stages: list[Stage], sinks: list[tuple[str, float]], served: Served, cores: int
                 ) -> tuple[float, str | None]:
    """What a core-ms of work costs while the running models want more cores than there are
    (planner.model.simulation's `contention`), from the served pass's pilot: the toll c under
    which the simulation of the pilot's own schedule on `stages` (served_stages) keeps the cores
    busy for the CPU per request the machine measured over it (bisection: the simulated CPU rises
    with c), less what the machine spent beside the requests when they came one at a time (the
    served pass's CPU per request over what `stages` need). 1 where the pilot cost no more than
    the simulation at no cost, or no more than its own noise (pilot_cpu_noise_ms), where too
    little of it was crowded (MIN_CROWDED_SHARE), or where it was not run or too short
    (MIN_PILOT_REQUESTS); at most MAX_CONTENTION. Beside it why it is 1 where the pilot ran
    over fair sharing within its noise (else None)."""
    measured, arrivals = served.pilot_cpu_per_request_ms, served.pilot_arrivals_ms
    if measured is None or len(arrivals) < MIN_PILOT_REQUESTS:
        return 1.0, None
    noise = pilot_cpu_noise_ms(served)
    if served.cpu_per_request_ms is not None:
        # what the machine spent beside the requests one at a time (idle; with served_stages' OUTSIDE
        # stage nothing else): the pass and the pilot both take 1/rate s a request, so the pilot
        # carries as much of it
        measured -= max(0.0, served.cpu_per_request_ms - core_ms_per_request(stages))

    def cpu(c: float) -> float:
        return simulate(stages, sinks, 0, cores, arrivals_ms=arrivals, contention=c).busy_core_ms / len(arrivals)

    fair = simulate(stages, sinks, 0, cores, arrivals_ms=arrivals)
    fair_ms = fair.busy_core_ms / len(arrivals)
    if fair.crowded_core_ms < MIN_CROWDED_SHARE * fair.busy_core_ms or fair_ms >= measured:
        return 1.0, None  # too little crowded to find a toll in the machine's noise; or no more than fair sharing
    if fair_ms >= measured - noise:
        return 1.0, (f"the pilot's {measured - fair_ms:.1f} core-ms a request beyond fair sharing is within its own "
                     f"noise ({noise:.1f}): no toll")
    if cpu(MAX_CONTENTION) <= measured:
        return MAX_CONTENTION, None
    lo, hi = turning_point(lambda toll: cpu(toll) < measured, 1.0, MAX_CONTENTION, 0.005)
    return (lo + hi) / 2, None
