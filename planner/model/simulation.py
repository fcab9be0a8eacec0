"""Requests through placed models whose sites' cores they share: a discrete-event simulation.

The latency model (planner.model.queueing) gives each model its own FIFO queue on its own
servers. Models placed on one site share its cores, though: while one runs, another model of the
site, or the same model for an earlier request, runs on the same cores and both slow down. And
`planner up` runs every site of a plan on ONE machine, so there all models share its cores (the
OCR example measured 2-8x the per-model queues' prediction here before this was simulated,
benchmarks/results/load_accuracy_ocr.md). This simulates it, as InferLine (SoCC'20) estimates a
pipeline's P99 by simulating it:

- requests arrive as a Poisson stream (one request carries every source's tensors, as `planner
  bench --rate` sends them); a model is ready when every input has arrived (its producer
  finished, plus the hop when the producer ran on another site);
- each model is a FIFO queue with `servers` = replicas x instances, as the runtime gates it; a
  request that waited for a server starts `handover_ms` after it frees (the runtime's cost of a
  turn: the waiting thread woken and run, ~1 ms on an idle 2-vCPU VM whose idle cores sleep; 0
  unless measured), the server held meanwhile and no core busy;
- a model that runs needs `service_ms` x `threads` core-milliseconds (its profile, taken alone,
  with the threads it is served with; where its runs were measured request by request, the time
  of one measured request drawn for each simulated request, the same draw for all its stages)
  and runs on at most `threads` cores (or, where its CPU time
  alone was measured, `busy_cores` = CPU time / wall time: a run that waits part of its time keeps
  fewer cores busy than its threads); each pool of cores (a
  site; for `planner up`, this machine) is shared between the models running on it by processor
  sharing, max-min fair (water-filling: no model gets more than its threads, the rest is split
  evenly). Alone on its cores a model takes exactly its profile; k models with 2 threads each on
  2 cores take k times as long as alone while they overlap. This assumes the builds' work
  neither grows nor shrinks when they share cores (no spinning threads burning cores they do not
  use, no cache thrashing): what the load benchmark checks.

The percentiles are those of the simulated responses (after a warm-up share is dropped), fixed
by the seed: the same inputs give the same numbers. Pure python; no planner imports.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field, replace

WARMUP_SHARE = 0.05  # of the simulated requests, dropped: the machine starts empty
MIN_BUSY_CORES = 0.01  # a run that only waits still moves (a job of no cores would never end)


@dataclass(frozen=True)
class Stage:
    """One model as this machine serves it."""

    name: str
    service_ms: float  # alone on its cores, with `threads` threads
    threads: int = 1
    servers: int = 1  # replicas x instances: requests it runs at once; more wait in FIFO order
    inputs: tuple[tuple[str, float], ...] = ()  # (producer stage, or "" for the request's arrival; hop ms)
    pool: str = ""  # the cores it runs on (a site): simulate's `cores` per pool
    busy_cores: float | None = None  # cores a run keeps busy alone (its CPU time / its wall time); None: threads
    # times alone of single runs, measured request by request: where given, a simulated request runs
    # the stage for the time of one measured request, drawn for the request (the same index for every
    # stage: a run slow because the machine was slow comes with its request's other slow runs)
    samples_ms: tuple[float, ...] = ()
    handover_ms: float = 0.0  # from a server's freeing to the start of the request that waited for it

    def ms_for(self, draw: int) -> float:
        """The time alone of a run for the request that drew `draw` (service_ms without samples)."""
        return self.samples_ms[draw % len(self.samples_ms)] if self.samples_ms else self.service_ms

    @property
    def mean_ms(self) -> float:
        """The mean time alone of a run: of its samples, or service_ms."""
        return sum(self.samples_ms) / len(self.samples_ms) if self.samples_ms else self.service_ms

    @property
    def cores_alone(self) -> float:
        """The most cores a run uses: alone it gets them and takes exactly `service_ms`."""
        if self.busy_cores is None:
            return float(self.threads)
        return min(float(self.threads), max(MIN_BUSY_CORES, self.busy_cores))


@dataclass
class SimulatedRun:
    """The simulated responses (ms from arrival to the last sink's input), after the warm-up."""

    responses_ms: list[float]
    busy_core_ms: float  # core-milliseconds of work the stages did
    span_ms: float  # from the first arrival to the last answer
    cores: int
    runs_ms: dict[str, list[float]] = field(default_factory=dict)  # per stage: each run, from its start to its end
    crowded_core_ms: float = 0.0  # of busy_core_ms, while their pool's models wanted more cores than it has

    def percentile(self, p: float) -> float:
        """The p-th percentile of the responses (linear interpolation, as numpy's default)."""
        values = sorted(self.responses_ms)
        k = (len(values) - 1) * p / 100
        lo = math.floor(k)
        hi = min(lo + 1, len(values) - 1)
        return values[lo] + (values[hi] - values[lo]) * (k - lo)

    @property
    def utilization(self) -> float:
        """The share of all the pools' cores busy over the run."""
        return self.busy_core_ms / (self.cores * self.span_ms) if self.span_ms > 0 else 0.0


def slowed(stages: list[Stage], factor: float) -> list[Stage]:
    """The stages on a machine `factor` times slower: every run, and every measured run, that much
    longer (hop delays given as `inputs` unchanged: they are the links', not the cores'; handovers
    too: a measured wake-up, not work)."""
    return [replace(s, service_ms=s.service_ms * factor, samples_ms=tuple(v * factor for v in s.samples_ms))
            for s in stages]


def core_ms_per_request(stages: list[Stage]) -> float:
    """Core-milliseconds the stages need for one request on average (every stage once, alone on its
    cores; a stage with samples, their mean)."""
    return sum(s.mean_ms * s.cores_alone for s in stages)


def core_utilization(stages: list[Stage], rate_rps: float, cores: int) -> float:
    """Share of this machine's cores the stages keep busy at this rate (every stage once per request)."""
    return rate_rps * core_ms_per_request(stages) / 1000 / cores


def fair_rates(most: list[float], cores: float) -> list[float]:
    """Cores each running job gets: max-min fair, none more than the most it can use (its threads,
    or the cores it keeps busy alone: water-filling)."""
    if sum(most) <= cores:  # nothing to share
        return [float(k) for k in most]
    rates = [0.0] * len(most)
    left, n = float(cores), len(most)
    for i in sorted(range(n), key=lambda j: most[j]):
        share = left / n
        rates[i] = min(most[i], share)
        left -= rates[i]
        n -= 1
    return rates


@dataclass
class _Job:
    request: int
    stage: str
    work: float  # core-ms left
    most_cores: float  # the most cores it can use
    pool: str
    started: float = 0.0
    rate: float = 0.0  # cores it holds
    speed: float = 0.0  # core-ms of its work done per ms: its rate, less the contention's toll
    crowded: bool = False  # its pool's running models want more cores than the pool has


def simulate(stages: list[Stage], sinks: list[tuple[str, float]], rate_rps: float, cores: int | dict[str, int],
             requests: int = 20000, seed: int = 0, arrivals_ms: list[float] | None = None,
             contention: float = 1.0) -> SimulatedRun:
    """Simulate `requests` Poisson arrivals at `rate_rps` through `stages` (in topological order)
    on `cores` cores (one pool), or `cores[pool]` for each stage's pool; a request is answered when
    every (stage, hop ms) of `sinks` has delivered. `arrivals_ms` (rising) replaces the Poisson
    arrivals: a given schedule, e.g. a load test's, all of whose responses are kept (its run
    starts empty too). `contention` >= 1: while a pool's running models want more cores than it
    has, a core-ms of their work takes `contention` core-ms (threads preempted in the middle of
    their parallel sections, woken again, their caches refilled: measured, not assumed; 1, the
    default, is fair sharing at no cost)."""
    pools = cores if isinstance(cores, dict) else dict.fromkeys({s.pool for s in stages}, cores)
    if (arrivals_ms is None and not rate_rps > 0) or requests < 1 or not contention >= 1 or any(
            pools.get(s.pool, 0) < 1 for s in stages):
        raise ValueError("rate_rps > 0, requests >= 1, contention >= 1 and at least one core for every stage's "
                         "pool required")
    by_name = {s.name: s for s in stages}
    consumers: dict[str, list[tuple[str, float]]] = {"": []}
    for s in stages:
        for producer, hop in s.inputs:
            consumers.setdefault(producer, []).append((s.name, hop))
    for producer, hop in sinks:
        consumers.setdefault(producer, []).append(("", hop))  # "" as consumer: the answer
    needed = {s.name: len(s.inputs) for s in stages}
    needed_answer = len(sinks)

    events: list[tuple[float, int, int, str]] = []  # (time, order, request, stage ready; "" = answered part)
    order = 0
    if arrivals_ms is None:
        rng = random.Random(seed)
        arrivals, t = [], 0.0
        for _ in range(requests):
            t += rng.expovariate(rate_rps / 1000)
            arrivals.append(t)
    else:
        arrivals, requests = list(arrivals_ms), len(arrivals_ms)
    drawn = max((len(s.samples_ms) for s in stages), default=0)
    draw_rng = random.Random(f"{seed}:samples")  # its own stream: the arrivals stay those of the seed
    draws = [draw_rng.randrange(drawn) for _ in range(requests)] if drawn else [0] * requests
    arrived_inputs: dict[tuple[int, str], int] = {}
    answered_parts: dict[int, int] = {}
    done_at: dict[int, float] = {}
    queues = {s.name: [] for s in stages}  # FIFO of requests waiting, per stage
    busy_servers = dict.fromkeys(by_name, 0)
    running: list[_Job] = []
    handing: list[tuple[float, int, int, str]] = []  # (start, order, request, stage): servers being handed on
    busy_core_ms = crowded_core_ms = 0.0
    runs_ms: dict[str, list[float]] = {s.name: [] for s in stages}  # each stage's runs, start to end
    next_arrival = 0

    def deliver(now: float, request: int, producer: str) -> None:
        nonlocal order
        for consumer, hop in consumers.get(producer, []):
            heapq.heappush(events, (now + hop, order, request, consumer))
            order += 1

    def reshare(pool: str) -> None:
        jobs = [j for j in running if j.pool == pool]
        crowded = sum(j.most_cores for j in jobs) > pools[pool] + 1e-9
        for job, r in zip(jobs, fair_rates([j.most_cores for j in jobs], pools[pool])):
            job.rate, job.crowded = r, crowded
            job.speed = r / contention if crowded else r

    def run(request: int, name: str) -> None:
        s = by_name[name]
        running.append(_Job(request, name, s.ms_for(draws[request]) * s.cores_alone, s.cores_alone, s.pool, now))

    def start_waiting(name: str, handover_ms: float = 0.0) -> bool:
        """Start what the free servers of `name` can take; with `handover_ms` > 0 (the requests
        waited) each starts that much later, its server held. Whether one started now."""
        nonlocal order
        started = False
        while queues[name] and busy_servers[name] < by_name[name].servers:
            request = queues[name].pop(0)
            busy_servers[name] += 1
            if handover_ms > 0:
                heapq.heappush(handing, (now + handover_ms, order, request, name))
                order += 1
            else:
                run(request, name)
                started = True
        return started

    now = 0.0
    while next_arrival < requests or events or running or handing:
        t_arrival = arrivals[next_arrival] if next_arrival < requests else math.inf
        t_event = events[0][0] if events else math.inf
        t_handed = handing[0][0] if handing else math.inf
        t_finish, finishing = math.inf, None
        for job in running:
            if job.speed > 0 and now + job.work / job.speed < t_finish:
                t_finish, finishing = now + job.work / job.speed, job
        t_next = min(t_arrival, t_event, t_finish, t_handed)
        dt = t_next - now
        for job in running:  # progress up to t_next
            job.work -= job.speed * dt
            busy_core_ms += job.rate * dt
            if job.crowded:
                crowded_core_ms += job.rate * dt
        now = t_next
        changed = None  # the pool whose running models changed
        if t_next == t_finish:
            running.remove(finishing)
            runs_ms[finishing.stage].append(now - finishing.started)
            busy_servers[finishing.stage] -= 1
            start_waiting(finishing.stage, by_name[finishing.stage].handover_ms)  # what starts now waited
            deliver(now, finishing.request, finishing.stage)
            changed = finishing.pool
        elif t_next == t_event:
            _, _, request, stage = heapq.heappop(events)
            if stage == "":
                answered_parts[request] = answered_parts.get(request, 0) + 1
                if answered_parts[request] == needed_answer:
                    done_at[request] = now
            else:
                key = (request, stage)
                arrived_inputs[key] = arrived_inputs.get(key, 0) + 1
                if arrived_inputs[key] == needed[stage]:
                    del arrived_inputs[key]
                    queues[stage].append(request)
                    if start_waiting(stage):
                        changed = by_name[stage].pool
        elif t_next == t_handed:
            _, _, request, stage = heapq.heappop(handing)
            run(request, stage)
            changed = by_name[stage].pool
        else:
            deliver(now, next_arrival, "")
            next_arrival += 1
        if changed is not None:
            reshare(changed)

    skip = int(requests * WARMUP_SHARE) if arrivals_ms is None else 0
    responses = [done_at[i] - arrivals[i] for i in range(skip, requests)]
    return SimulatedRun(responses_ms=responses, busy_core_ms=busy_core_ms, span_ms=now - arrivals[0],
                        cores=sum(pools.values()), runs_ms=runs_ms, crowded_core_ms=crowded_core_ms)
