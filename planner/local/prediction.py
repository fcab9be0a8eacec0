"""The plan's prediction for its own placement on this machine: what `planner bench` compares with.

`planner up --host-targets` runs every site on this machine over loopback, so the latency the
plan predicts for the sites' hardware and links is not what a bench can measure. This module
re-evaluates the same placement with the same latency model (planner.solver.evaluate) after two
substitutions: every model's profile is this host's (measured here, as `planner run` compiles
them), and every pair of sites is joined by a loopback link whose figures come from the
measured runtime hop (benchmarks/results/runtime_overhead.md: about 0.8 ms per hop plus
bytes / 2.0 GB/s for 10 KB .. 8 MB tensors).
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from planner.app.spec import App, Link
from planner.errors import InputError
from planner.model.bisection import turning_point
from planner.model.simulation import Stage, core_ms_per_request, core_utilization, simulate, slowed
from planner.local.median_noise import median_one_sigma
from planner.local.run import host_profiles
from planner.local.served import MIN_PILOT_REQUESTS, OUTSIDE, Served, contention, served_stages, toll_reading
from planner.model.checked_app import CheckedApp
from planner.model.open_app import open_app
from planner.model.network import link_transfer_ms
from planner.plan.load import load_plan
from planner.plan.margin import SLOWER
from planner.plan.problem import build_instance
from planner.plan.schema import Plan
from planner.plan.simulated import plan_stages
from planner.profiling.app_profiles import AppProfiles
from planner.solver.evaluate import evaluate
from planner_runtime.digest import sha256_file

# A runtime hop on loopback, as measured end to end (serialize, send, deserialize, forward):
# the least-squares line through benchmarks/results/runtime_overhead.json's end-to-end hops
# (10 KB 0.743 ms, 1 MB 1.317 ms, 8 MB 4.775 ms): 0.775 ms + bytes / 2.0 GB/s.
# tests/local/test_prediction.py refits the committed file, so these cannot go stale silently.
LOOPBACK_RTT_MS = 1.549
LOOPBACK_BANDWIDTH_MBPS = 15_978.0
# a served pass whose models ran this much slower than their host profiles was disturbed (another
# job, or one of this VM's slow spells: OCR det 52 ms, ~104 ms in a spell, machine_drift.md). The
# models' own times, not the machine's CPU per request: that holds the sites' gRPC and python too,
# which for small models is most of it (a 10 ms sleeping step's pass used several times its
# profile's CPU on a quiet machine, and was taken again for nothing, 20 s later)
SERVED_SLOW_WARN = 1.3
# and beyond 1 ms a model: a run as served is timed around the runtime's call into it (a step
# profiled at 0.002 ms ran 0.07-0.08 ms served, on a quiet machine)
SERVED_RUN_SLACK_MS = 1.0
# How far the machine's speed under a load may be from what its pilot found (speed_range): the
# factor under which the prediction gives the measured p50 (implied_slowdown) over the pilot's
# (pilot_speed), in the 11 OCR rows predicted at the pilot's speed (benchmarks/results/
# load_accuracy{,_ocr}.json of 2026-11-30 02:32, 03:57, 05:18 and 06:06, Intel 2-vCPU VM):
# 0.929-1.102, within 5 % in 8; the three outside, pilots of 14-42 requests at 30 and 60 %
SPEED_ERROR = 0.05
SIMULATED_REQUESTS = 50_000  # ~1 s; the p99 of 50 000 simulated requests at 85 % busy is within ~3 % of the long run


@dataclass
class HostPrediction:
    latency_ms: float
    models: dict[str, dict] = field(default_factory=dict)  # name -> {site, ms, provenance}
    transfers: dict[str, dict] = field(default_factory=dict)  # "a->b" -> {ms, bytes, sites}
    client_ms: float = 0.0  # the bench client's own hop to the entry and back
    assumptions: list[str] = field(default_factory=list)
    replicas: dict[str, int] = field(default_factory=dict)
    utilization: dict[str, float] = field(default_factory=dict)  # per site: load / (replicas x capacity)
    stages: list[Stage] = field(default_factory=list)  # the placement as this machine runs it (planner.model.simulation)
    sinks: list[tuple[str, float]] = field(default_factory=list)  # (producer, hop ms) of every flow to a sink

    @property
    def total_ms(self) -> float:
        return self.latency_ms + self.client_ms

    def as_dict(self) -> dict:
        return {"latency_ms": round(self.total_ms, 3), "ensemble_ms": round(self.latency_ms, 3),
                "client_hop_ms": round(self.client_ms, 3), "models": self.models, "transfers": self.transfers,
                "assumptions": self.assumptions}


def loopback_links(app: App) -> list[Link]:
    """A loopback link between every pair of sites (the runtime forwards a tensor straight to
    the site that consumes it)."""
    return [Link(between=(a, b), bandwidth_mbps=LOOPBACK_BANDWIDTH_MBPS, rtt_ms=LOOPBACK_RTT_MS)
            for a, b in combinations(app.sites, 2)]


def loopback_ms(nbytes: int) -> float:
    return link_transfer_ms(nbytes, LOOPBACK_BANDWIDTH_MBPS, LOOPBACK_RTT_MS)


def predict_on_host(checked: CheckedApp, placement: dict[str, str], profiles: AppProfiles | None = None,
                    builds: dict[str, str] | None = None, replicas: dict[str, int] | None = None) -> HostPrediction:
    """Latency of `placement` with host profiles and loopback links, by planner.solver.evaluate:
    at `checked`'s rates and percentile (queueing included), with the plan's `builds` where this
    host has them and its `replicas` (at least as many as this host's load needs).

    `profiles` defaults to the host profiles `planner run` uses (cached after the first run)."""
    unknown = sorted(set(placement) ^ set(checked.app.models))
    if unknown:
        raise InputError(f"the plan's placement does not match {checked.path}: models {', '.join(unknown)} "
                         "are in one and not the other (re-run `planner solve`)")
    profiles = profiles if profiles is not None else host_profiles(checked)
    loop = checked.with_links(loopback_links(checked.app))
    inst = build_instance(loop, profiles.table)
    missing = [f"{m} on {s}" for m, s in placement.items() if s not in inst.options.get(m, {})]
    if missing:
        raise InputError(f"no host profile for {', '.join(missing)} (the profiler excluded it on this machine)")
    here = {m: b for m, b in (builds or {}).items() if any(o.build == b for o in inst.builds(m, placement[m]))}
    least = evaluate(inst, placement, here)
    evaluation = evaluate(inst, placement, here, {s: max(r, (replicas or {}).get(s, r))
                                                   for s, r in least.replicas.items()})
    provenance = {(e.node, e.site): e.provenance for e in profiles.table.entries}
    pred = HostPrediction(latency_ms=evaluation.latency_us / 1000, replicas=dict(evaluation.replicas),
                          utilization={s: round(evaluation.load[s] / inst.replica_capacity / r, 4)
                                       for s, r in evaluation.replicas.items()})
    app = checked.app
    for m, s in placement.items():
        option = inst.option(m, s, evaluation.builds[m])
        pred.models[m] = {"site": s, "ms": option.latency_us / 1000, "wait_ms": evaluation.wait_us[m] / 1000,
                          "build": option.build, "provenance": provenance.get((m, s))}
    # every site on this machine's cores (as served with --host-targets: a build's threads at most them)
    pred.stages, pred.sinks, _ = plan_stages(checked, inst, evaluation, profiles.table.entries,
                                             host_cores=os.cpu_count() or 1)
    for term in evaluation.flows:
        flow = app.flows[term.index]
        nbytes = inst.flows[term.index].nbytes
        pred.transfers[f"{flow.from_}->{flow.to}"] = {"ms": term.latency_us / 1000, "bytes": nbytes,
                                                     "sites": [term.src_site, term.dst_site]}
    # the bench's client sends the sources' tensors to the entry and gets the sinks' back
    sent = {(f.from_, f.output): inst.flows[i].nbytes for i, f in enumerate(app.flows)
            if f.from_ in app.sources}  # one tensor per source output, however many read it
    returned = sum(inst.flows[i].nbytes for i, f in enumerate(app.flows) if f.to in app.sinks)
    pred.client_ms = loopback_ms(sum(sent.values()) + returned)
    pred.assumptions = [
        "models: this machine's profiles (compiled for the host, as `planner up --host-targets` runs them)",
        f"transfers: loopback, {LOOPBACK_RTT_MS / 2:g} ms + bytes / {LOOPBACK_BANDWIDTH_MBPS / 8000:g} GB/s per hop "
        "(the runtime's measured hop, benchmarks/results/runtime_overhead.md)",
        "plus the client's hop to the entry site and back",
    ]
    return pred


def host_stages_for(out_dir: Path, rate_rps: float, app_file: Path | None = None
                    ) -> tuple[list[Stage], list[tuple[str, float]], float]:
    """The stages, the sinks' inputs and the client's hop of OUT's plan on this machine at
    `rate_rps` (every source), as host_prediction simulates them; from `app_file`, or the app.yaml
    the plan was solved from."""
    plan = read_plan(out_dir)
    if plan is None or (plan.source is None and app_file is None):
        raise InputError(f"{Path(out_dir) / 'plan.json'}: no plan solved from an app.yaml")
    path = Path(app_file or plan.source.file)
    overrides = list(plan.source.overrides) if plan.source is not None else []
    checked = open_app(path, overrides)
    pred = plan_at_rate(plan, path, overrides, list(checked.app.sources), host_profiles(checked), rate_rps)
    return pred.stages, pred.sinks, pred.client_ms


def plan_at_rate(plan: Plan, path: Path, overrides: list[str], sources: list[str], profiles: AppProfiles,
                 rate_rps: float, percentile: float = 99) -> HostPrediction:
    """`plan`'s placement, builds and replicas on this machine with every source at `rate_rps`."""
    load = [*overrides, *(f"sources.{name}.rate_rps={rate_rps!r}" for name in sources),
            f"constraints.percentile={percentile!r}"]
    return predict_on_host(open_app(path, load), plan.placement, profiles,
                           {m: f"{r.engine}/{r.precision}" for m, r in plan.models.items()},
                           {s: r.replicas for s, r in plan.sites.items()})


def read_plan(out_dir: Path) -> Plan | None:
    """OUT/plan.json, or None when `planner solve` wrote none there."""
    path = Path(out_dir) / "plan.json"
    return load_plan(path) if path.exists() else None


def plan_prediction(plan: Plan | None) -> dict:
    """The plan's own numbers per model and per transfer (the sites' hardware and links)."""
    models, transfers = {}, {}
    for path in plan.paths if plan else []:
        for term in path.terms:
            if term.kind == "model":
                models[term.name] = {"site": term.site, "ms": term.ms}
            else:
                transfers[term.name] = {"ms": term.ms, "route": term.route, "bytes": term.bytes}
    return {"latency_ms": plan.latency_ms if plan else None, "models": models, "transfers": transfers}


def host_prediction(out_dir: Path, app_file: Path | None = None, refresh: bool = False,
                    rate_rps: float | None = None, schedule_s: list[float] | None = None) -> dict:
    """The plan's placement re-evaluated with this machine's profiles and loopback links; or why not.

    Without `rate_rps` (the sequential bench: one request at a time) nothing queues; with it (the
    load `planner bench --rate` offers, every source at that rate: one request carries them all)
    the p50 and p99 under that load by a simulation of this machine (planner.model.simulation), and each
    site's utilization: in the long run, and, given the load test's own send times `schedule_s`,
    for that very schedule (`p50_ms`, `p99_ms`: a short run's percentiles are one draw, and the
    simulation of the same draw is what its measurement is compared with)."""
    plan = read_plan(out_dir)
    if plan is None or not plan.placement:
        return {"status": "not available", "why": f"no placement in {Path(out_dir) / 'plan.json'}"}
    source = plan.source
    if not app_file and source is None:
        return {"status": "not available", "why": "plan.json does not name its app.yaml (pass --app)"}
    path = Path(app_file or source.file)
    if not path.is_file():
        raise InputError(f"--app: {path} not found" if app_file else
                         f"{Path(out_dir) / 'plan.json'} was solved from {path}, which no longer exists "
                         "(pass --app APP, or --no-predict)")
    notes = []
    if source is not None and source.sha256 and sha256_file(path) != source.sha256:
        notes.append(f"{path} changed since `planner solve`; the prediction uses the file as it is now")
    overrides = list(source.overrides) if source is not None else []
    checked = open_app(path, overrides)
    profiles = host_profiles(checked, refresh=refresh)

    def at(rate: float, percentile: float) -> HostPrediction:
        return plan_at_rate(plan, path, overrides, list(checked.app.sources), profiles, rate, percentile)

    # one request at a time: no queue, whatever the app's rates (the smallest rate it accepts)
    pred = at(1e-9, 50)
    out = {"status": "ok", "app": str(path), **pred.as_dict(), "notes": notes}
    if rate_rps is not None:
        median, tail = at(rate_rps, 50), at(rate_rps, 99)
        out |= under_load(tail.stages, tail.sinks, tail.client_ms, rate_rps, schedule_s, notes)
        out |= {"utilization": tail.utilization, "replicas": tail.replicas,
                # the latency model's own numbers (each model its own queue on its own servers), for comparison
                "independent_queues": {"p50_ms": round(median.total_ms, 3), "p99_ms": round(tail.total_ms, 3)},
                "sites": {m: v["site"] for m, v in tail.models.items()}}
        out["assumptions"] = pred.assumptions + [
            f"at {rate_rps:g} requests/s: a simulation of this machine (the load test's own send times; the long run: "
            f"{SIMULATED_REQUESTS} Poisson arrivals, seed 0): each model a FIFO queue on replicas x instances servers, "
            f"its host profile as its time alone, every running model sharing the {out['host']['cores']} cores "
            "(planner.model.simulation; README, Queueing)"]
    return out


def under_load(stages: list[Stage], sinks: list[tuple[str, float]], client_ms: float, rate_rps: float,
               schedule_s: list[float] | None, notes: list[str], contention: float = 1.0) -> dict:
    """The p50 and p99 of `stages` on this machine's cores at `rate_rps` (plus `client_ms`): for the
    load test's own send times `schedule_s` where given (`p50_ms`, `p99_ms`: a short run's
    percentiles are one draw, and the simulation of the same draw is what its measurement is
    compared with), and in the long run; the cores' utilization. Why a queue grows without end
    goes to `notes`. `contention`: planner.model.simulation's."""
    cores = os.cpu_count() or 1
    busy = core_utilization(stages, rate_rps, cores)

    def percentiles(run) -> dict:
        return {f"p{q}_ms": round(run.percentile(q) + client_ms, 3) for q in (50, 99)}

    if busy < 1:
        long_run = percentiles(simulate(stages, sinks, rate_rps, cores, requests=SIMULATED_REQUESTS,
                                        contention=contention))
    else:  # the queues grow without end: no long-run percentile
        long_run = {"p50_ms": None, "p99_ms": None}
        notes.append(f"at {rate_rps:g} requests/s this machine's {cores} cores would be {100 * busy:.0f} % busy: "
                     "it cannot keep up, the latency grows for as long as the load lasts")
    this_run = long_run
    if schedule_s:
        this_run = percentiles(simulate(stages, sinks, rate_rps, cores, arrivals_ms=[1000 * s for s in schedule_s],
                                        contention=contention))
    return {"rate_rps": rate_rps, **this_run, "long_run": long_run,
            "predicted_for": "this schedule" if schedule_s else "the long run",
            "host": {"cores": cores, "utilization": round(busy, 4)}}


def served_prediction(host: dict, profiled: list[Stage], sinks: list[tuple[str, float]], served: Served,
                      entry_site: str, schedule_s: list[float] | None) -> dict:
    """`host` (host_prediction at a rate; `profiled` and `sinks` its stages, host_stages_for) again,
    with each model, hop and the client's share as the served pass through `entry_site` measured
    them (planner.local.served), a turn of a model's instances costing the pilot's mean handover
    (`handover_ms`), at the speed pilot_speed gives (the pilot's reading weighed with the pass's;
    the pass's own where the pilot gives none): the load model alone, on what is served.
    `at_pass_speed`: the same at the pass's speed."""
    stages, sinks = served_stages(profiled, sinks, host["sites"], entry_site, served)
    notes: list[str] = []
    profiled_cpu = core_ms_per_request(profiled)
    profiled_ms = {s.name: s.service_ms for s in profiled}
    both = [m for m in served.models if m in profiled_ms]
    ran, need = sum(served.models[m] for m in both), sum(profiled_ms[m] for m in both)
    disturbed = need > 0 and ran > SERVED_SLOW_WARN * need + SERVED_RUN_SLACK_MS * len(both)
    if disturbed:
        notes.append(f"the served pass ran the models in {ran:.0f} ms a request where their host profiles take "
                     f"{need:.0f}: other jobs, or a slower machine, during the pass (its times, and this prediction, "
                     "are then too slow: run it again on a quiet machine)")
    toll, no_toll = toll_reading(stages, sinks, served, os.cpu_count() or 1)
    if no_toll:
        notes.append(no_toll)
    speed = pilot_speed(stages, sinks, served, toll)
    if speed.get("why"):
        notes.append(f"predicted at the served pass's speed: {speed['why']}")
    factor = speed.get("slowdown")
    predicted = stages if factor is None else slowed(stages, factor)
    load = under_load(predicted, sinks, 0.0, host["rate_rps"], schedule_s, notes, toll)
    # the simulation is the costly part (~1 s): run at the pass's speed only where that differs
    at_pass = load if factor is None else under_load(stages, sinks, 0.0, host["rate_rps"], schedule_s, [], toll)
    return {**load, "notes": notes,
            "source": "the served pass" if factor is None else "the served pass at the speed its pilot read",
            "speed_range": speed_range(stages, sinks, schedule_s, toll, factor or 1.0),
            "pilot_speed": speed, "at_pass_speed": {"p50_ms": at_pass["p50_ms"], "p99_ms": at_pass["p99_ms"]},
            "slower": slower_machine(stages, sinks, schedule_s, toll),
            "served": served.as_dict(), "contention": round(toll, 4), "disturbed": disturbed,
            "handover_ms": None if served.pilot_handover_ms is None else round(served.pilot_handover_ms, 3),
            "handovers": len(served.pilot_handovers_ms),
            "models_over_profiles": round(ran / need, 3) if need > 0 else None,
            "modeled_cpu_per_request_ms": round(core_ms_per_request(predicted), 3),
            "outside_ms": round(sum(s.service_ms for s in predicted if s.name == OUTSIDE), 3),
            "profiled_cpu_per_request_ms": round(profiled_cpu, 3)}


def slower_machine(stages: list[Stage], sinks: list[tuple[str, float]], schedule_s: list[float] | None,
                   toll: float) -> list[dict]:
    """The prediction for the load's own schedule on a machine SLOWER times slower than the served pass
    measured it (every model, hop and the client's share: planner.model.simulation.slowed), the
    same toll: how far a drift of the machine's speed between the pass and the load moves the
    percentiles (near the cores' capacity, far more than the drift itself). Empty without a schedule."""
    if not schedule_s:
        return []
    out = []
    for factor in SLOWER:
        run = _slowed_on_schedule(stages, sinks, schedule_s, toll, factor)
        out.append({"slower": factor, "p50_ms": round(run.percentile(50), 3), "p99_ms": round(run.percentile(99), 3)})
    return out


def speed_range(stages: list[Stage], sinks: list[tuple[str, float]], schedule_s: list[float] | None, toll: float,
                factor: float) -> dict | None:
    """The prediction's error from the machine's speed: the load's schedule on `stages` SPEED_ERROR
    faster and slower than `factor` (the speed the prediction runs at), the same toll. Near the
    cores' capacity a few percent of speed moves the p50 by tens of percent; this says how many.
    None without a schedule."""
    if not schedule_s:
        return None
    runs = [_slowed_on_schedule(stages, sinks, schedule_s, toll, factor * (1 + e)) for e in (-SPEED_ERROR, SPEED_ERROR)]
    return {"speed_error": SPEED_ERROR, **{f"p{q}_ms": [round(r.percentile(q), 3) for r in runs] for q in (50, 99)}}


def _slowed_on_schedule(stages: list[Stage], sinks: list[tuple[str, float]], schedule_s: list[float], toll: float,
                        factor: float):
    """The simulation of `schedule_s` (s) on this machine's cores with every stage `factor` times slower."""
    return simulate(slowed(stages, factor), sinks, 0, os.cpu_count() or 1, arrivals_ms=[1000 * s for s in schedule_s],
                    contention=toll)


SLOWDOWN_RANGE = (0.5, 4.0)  # implied_slowdown looks for the factor within these


def implied_slowdown(host: dict, profiled: list[Stage], sinks: list[tuple[str, float]], served: Served,
                     entry_site: str, schedule_s: list[float], measured_p50_ms: float) -> float | None:
    """After a load: how much slower than the served pass measured it (every stage alike, as
    slower_machine) this machine must have been for the prediction of the load's schedule to give
    the p50 the load measured (bisection to half a percent; the simulated p50 only grows with the
    factor). Beside the load's own CPU per request over the pass's, the check that a miss was the
    machine's speed and not the model: the two are independent measures of the same drift. None
    outside SLOWDOWN_RANGE or without a schedule."""
    if not schedule_s or measured_p50_ms is None:
        return None
    stages, sinks = served_stages(profiled, sinks, host["sites"], entry_site, served)
    return slowdown_for_p50(stages, sinks, schedule_s, contention(stages, sinks, served, os.cpu_count() or 1),
                            measured_p50_ms)


def slowdown_for_p50(stages: list[Stage], sinks: list[tuple[str, float]], schedule_s: list[float], toll: float,
                     measured_p50_ms: float) -> float | None:
    """The factor (every stage alike, planner.model.simulation.slowed) under which the simulation of
    `schedule_s` gives `measured_p50_ms`, to half a percent; None outside SLOWDOWN_RANGE."""
    def p50(factor: float) -> float:
        return _slowed_on_schedule(stages, sinks, schedule_s, toll, factor).percentile(50)

    lo, hi = SLOWDOWN_RANGE
    if not p50(lo) <= measured_p50_ms <= p50(hi):
        return None
    lo, hi = turning_point(lambda factor: p50(factor) < measured_p50_ms, lo, hi, 0.005)
    return round((lo + hi) / 2, 3)


# The pilot's p50 is read with its sampling noise: the factors of its p50 one standard deviation
# either side (planner.local.median_noise: its requests' effective number, a queue's consecutive
# requests being alike) are the reading's interval, half its width the reading's error. The pass
# reads the load's speed with an error too: over the 33 committed load-benchmark rows with a
# pilot (synthetic and OCR, 2026-11-30 02:32-08:32, Intel Xeon 2-vCPU VM) the speed each load
# implied stood 2.8 % (root mean square) from the pass's. The prediction runs at the two readings
# weighed by the inverse of their variances: there the pass's speed was 2.05 % off on average,
# the pilot's alone 2.71, the pilot's only where this interval excluded 1 (the rule until
# 2026-11-30 09:00, with the narrower interval of resampling one by one) 2.26, and the two weighed
# 1.79 %. Near half the cores' capacity the
# pilot's p50 hardly moves with the speed and its reading weighs little: a 6 s pilot of the
# CPU-bound test step read 0.953 where its load implied 1.00, and a fresh clone's make test
# failed on it at +23 %; near capacity a long pilot weighs more: the sleeping test step's at 85 %
# read 1.025 where its load implied 1.031 and the pass's speed was 25 % off the p50. A reading
# CONFLICT_SIGMAS of their joint error or more from the pass's says the machine moved between them
# (this VM's speed moved 2x within minutes: benchmarks/results/machine_drift.md), which the pass's
# error above does not describe: the pilot's reading is then used alone (no committed row did so).
PASS_SPEED_ERROR = 0.03
CONFLICT_SIGMAS = 3.0


def pilot_speed(stages: list[Stage], sinks: list[tuple[str, float]], served: Served, toll: float) -> dict:
    """How fast the machine will be under the load, against the served pass: the pilot
    (pilot_seconds at the load's rate, right before it) timed each of its requests, and
    slowdown_for_p50 on its own schedule gives the factor by which every stage of the pass
    (`stages`, served_stages) was slower for it (`read`; the same toll), and for its p50 one
    standard deviation either side (`interval`, median_noise.median_one_sigma;
    `requests_per_reading`, its tau). The pass, one request at a time over seconds, and a load of
    minutes at the rate part by the machine's speed; the pilot, at the rate and right before the
    load, has seen it, with its own noise (the runtime's handovers under load, which one request
    at a time never pays, are in `stages` from the pilot's own: served_stages). `slowdown` is the
    pilot's reading and the pass's (1) weighed by the inverse of their variances (`weight`, the
    pilot's: PASS_SPEED_ERROR against half the interval), or the pilot's alone where the two are
    CONFLICT_SIGMAS of their joint error apart (`moved`: the machine moved between the pass and
    the pilot); None, and `why`, where the pilot gives no reading: fewer than MIN_PILOT_REQUESTS
    answered, or a p50 (or an end of its interval) outside SLOWDOWN_RANGE."""
    if len(served.pilot_ms) < MIN_PILOT_REQUESTS or len(served.pilot_ms) != len(served.pilot_arrivals_ms):
        return {"slowdown": None, "pilot_p50_ms": None,
                "why": f"no pilot of {MIN_PILOT_REQUESTS} or more requests, all answered"}
    measured = statistics.median(served.pilot_ms)
    schedule_s = [t / 1000 for t in served.pilot_arrivals_ms]
    factor = slowdown_for_p50(stages, sinks, schedule_s, toll, measured)
    out = {"slowdown": factor, "pilot_p50_ms": round(measured, 3), "read": factor}
    lo, hi = SLOWDOWN_RANGE
    if factor is None:
        out["why"] = (f"the pilot's p50, {measured:.1f} ms, is not what its schedule gives on the pass's times "
                      f"{lo:g}-{hi:g}x slower")
        return out
    low, high, tau = median_one_sigma(served.pilot_ms)
    interval = [slowdown_for_p50(stages, sinks, schedule_s, toll, p50) for p50 in (low, high)]
    out |= {"interval": interval, "requests_per_reading": round(tau, 2)}
    if None in interval:
        out["slowdown"] = None
        out["why"] = (f"the pilot read the machine {factor:g}x as slow as the pass, but its p50 one standard "
                      f"deviation either side is not what its schedule gives {lo:g}-{hi:g}x slower")
        return out
    error = (interval[1] - interval[0]) / 2
    moved = abs(factor - 1) >= CONFLICT_SIGMAS * (PASS_SPEED_ERROR ** 2 + error ** 2) ** 0.5
    weight = 1.0 if moved else PASS_SPEED_ERROR ** 2 / (PASS_SPEED_ERROR ** 2 + error ** 2)
    out |= {"weight": round(weight, 3), "moved": moved, "slowdown": round(1 + weight * (factor - 1), 3)}
    return out
