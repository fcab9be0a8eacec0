"""The chosen plan simulated at its planned rate (planner.model.simulation): a check of the
latency model, which gives each model its own servers and adds the percentiles along a path,
where the models of a site share its cores and a request is rarely slow at every stage at once.

Each model runs on its site's cores: a CPU site's replicas x the target's cores, with the build's
threads (as profiled; at most the site's cores); a GPU site one device per replica, which its
models take in turn. Hops take the plan's transfer times. One request carries every source, so
the check needs the sources at one rate; the apps whose sources differ are not simulated (said
so), as are apps of more than 50 models (the simulation would take longer than the solver).
Up to 50 models, from 2 000 to 10 000 requests (100 000 model runs at most, about a second)."""

from __future__ import annotations

from planner.model.checked_app import CheckedApp
from planner.model.simulation import Stage, core_utilization, simulate
from planner.plan.cores import run_threads, site_cores
from planner.plan.schema import SimulatedCheck
from planner.profiling.table import NodeProfile
from planner.solver.evaluate import Evaluation
from planner.solver.instance import Instance

REQUESTS = 10_000
SEED = 0
MAX_MODEL_RUNS = 100_000  # requests x models simulated: ~1 s on this project's 2-core machine
MIN_REQUESTS = 2_000  # fewer would leave a p99 of 20 requests: an app over 50 models is not simulated


def plan_stages(checked: CheckedApp, inst: Instance, evaluation: Evaluation, profiles: list[NodeProfile],
                host_cores: int | None = None) -> tuple[list[Stage], list[tuple[str, float]], dict[str, int]]:
    """The plan's models as simulation stages, the sinks' inputs, and the cores of each site's pool.
    With `host_cores`, every site runs on one machine of that many cores (`planner up`): one pool."""
    app = checked.app
    threads = {(p.node, p.site, p.build): p.threads for p in profiles}
    hop_ms = {t.index: t.latency_us / 1000 for t in evaluation.flows}
    inputs: dict[str, list[tuple[str, float]]] = {m: [] for m in inst.models}
    sinks = []
    for i, flow in enumerate(app.flows):
        producer = "" if flow.from_ in app.sources else flow.from_
        (sinks if flow.to in app.sinks else inputs[flow.to]).append((producer, hop_ms.get(i, 0.0)))
    stages, pools = [], {}
    for m in inst.models:
        s = evaluation.placement[m]
        option = inst.option(m, s, evaluation.builds[m])
        cores = host_cores or site_cores(checked, s) or 1  # unknown cores: a run takes the replica
        pool = "" if host_cores else s
        pools[pool] = host_cores or cores * evaluation.replicas[s]
        stages.append(Stage(name=m, service_ms=option.latency_us / 1000,
                            threads=run_threads(option.build, threads.get((m, s, option.build)), cores),
                            servers=evaluation.replicas[s] * app.models[m].instances, inputs=tuple(inputs[m]),
                            pool=pool))
    return stages, sinks, pools


def simulated_check(checked: CheckedApp, inst: Instance, evaluation: Evaluation,
                    profiles: list[NodeProfile]) -> SimulatedCheck:
    rates = {src.rate_rps for src in checked.app.sources.values()}
    if len(rates) != 1:
        return SimulatedCheck(status="not simulated", why="its sources have different rates (one simulated request "
                                                          "carries every source)")
    requests = min(REQUESTS, MAX_MODEL_RUNS // max(1, len(inst.models)))
    if requests < MIN_REQUESTS:
        return SimulatedCheck(status="not simulated", why=f"{len(inst.models)} models are more than the "
                                                          f"{MAX_MODEL_RUNS // MIN_REQUESTS} a plan is simulated for")
    stages, sinks, pools = plan_stages(checked, inst, evaluation, profiles)
    rate = rates.pop()
    busy = {s: core_utilization([st for st in stages if st.pool == s], rate, cores) for s, cores in pools.items()}
    if max(busy.values(), default=0) >= 1:
        site = max(busy, key=busy.get)
        return SimulatedCheck(status="not simulated", cores_utilization=_rounded(busy),
                              why=f"site {site}'s cores would be {100 * busy[site]:.0f} % busy at the planned rate: "
                                  "its models' threads x time per request exceed its cores (the latency grows without end)")
    run = simulate(stages, sinks, rate, pools, requests=requests, seed=SEED)
    return SimulatedCheck(status="ok", requests=requests, seed=SEED, p50_ms=round(run.percentile(50), 3),
                          tail_ms=round(run.percentile(inst.percentile), 3), cores_utilization=_rounded(busy))


def _rounded(busy: dict[str, float]) -> dict[str, float]:
    return {s: round(v, 4) for s, v in busy.items()}
