"""plan.json's schema: the placement, what it predicts, why, and the alternatives beside it.

Every number in a plan is recomputed from the final placement by the evaluator (never read
back from the solver's objective; planner.plan.make), so a reader can check any of them by
hand with the README's latency and cost model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.profiling.table import NodeProfile
from planner.solver.constraints import ConstraintKey
from planner.solver.explain import Conflict

PLAN_VERSION = 1


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathTerm(Model):
    kind: Literal["model", "queue", "transfer"]
    name: str  # a model (its service, or its wait for an instance), or "producer->consumer" for a transfer
    ms: float  # a queue term: the wait at the plan's percentile
    site: str | None = None  # model terms
    route: list[str] | None = None  # transfer terms crossing sites: the sites it goes through
    bytes: int | None = None


class PathReport(Model):
    source: str
    sink: str
    nodes: list[str]
    latency_ms: float = Field(description="at the plan's percentile under its load: the sum of the terms")
    slo_ms: float | None
    slack_ms: float | None
    terms: list[PathTerm]
    p50_ms: float | None = Field(default=None, description="the same path with each model's median wait")
    queueing_ms: float = Field(default=0.0, description="the queue terms' share of latency_ms")


class ModelReport(Model):
    site: str
    tier: str
    target: str
    latency_ms: float = Field(description="service time of one request (the build's profile)")
    memory_mb: float
    rate_rps: float
    start_ms: float
    finish_ms: float
    provenance: str
    tuning: str | None = None
    engine: str = "given"
    precision: str = "fp32"
    verified: bool | None = None
    instances: int = 1
    servers: int = Field(default=1, description="replicas of its site x instances: its queue's servers")
    utilization: float = Field(default=0.0, description="rate x latency / servers")
    wait_ms: float = Field(default=0.0, description="its wait at the plan's percentile: its queue's, or its share "
                                                  "of its site's cores' queue, whichever is longer")
    wait_p50_ms: float = Field(default=0.0, description="the same at the median")
    mean_wait_ms: float = Field(default=0.0, description="its own queue's mean wait")


class SiteReport(Model):
    tier: str
    target: str
    models: list[str]
    replicas: int
    max_replicas: int
    load_replicas: float = Field(description="sum of rate x latency / instances: the replicas the load fills")
    utilization: float = Field(default=0.0, description="load_replicas / replicas")
    memory_mb_used: float
    memory_mb: float
    cost_per_hour: float


class LoadPoint(Model):
    """The plan (placement, builds, replicas unchanged) with every source's rate scaled."""

    rate_scale: float
    rate_rps: float = Field(description="the sources' rates summed, scaled")
    max_utilization: float = Field(description="the busiest model queue's utilization")
    stable: bool = Field(description="every queue keeps up; when not, no latency (it grows without bound)")
    p50_ms: float | None = None
    tail_ms: float | None = Field(default=None, description="the slowest path at the plan's percentile")
    within_knee: bool = Field(default=False, description="tail_ms within 1.5x of the lightest load's on the curve")


class MarginPoint(Model):
    """The plan at its planned rate with its models slower than their profiles."""

    max_utilization: float = Field(description="the busiest queue's, or site cores', utilization")
    stable: bool = Field(description="every queue keeps up; when not, no latency (it grows without bound)")
    p50_ms: float | None = None
    tail_ms: float | None = Field(default=None, description="the slowest path at the plan's percentile")
    within_slo: bool | None = Field(default=None, description="tail_ms within the SLO (None: no SLO)")


class SlowerPoint(MarginPoint):
    """Every model's service time `slower` x its profile."""

    slower: float


class StatedErrorsPoint(MarginPoint):
    """Each model whose profile states an error (an estimate: its calibration's) that much slower."""

    errors_pct: dict[str, float] = Field(default_factory=dict, description="per model: its stated error, in %")


class ServiceMargin(Model):
    """How much slower the models may run before the plan misses its SLO (planner.plan.margin)."""

    slower_pct: float | None = Field(
        default=None, description="the largest slowdown of every model's service time, in %, under which the "
                                  "percentile still meets the SLO at the planned rate (None: no SLO)")
    at_least: bool = Field(default=False, description="the SLO holds even at the largest slowdown tried")
    points: list[SlowerPoint] = Field(default_factory=list)
    at_stated_errors: StatedErrorsPoint | None = Field(
        default=None, description="the estimated models at the slow end of their stated errors (None: no model's "
                                  "profile states one)")
    unknown_errors: list[str] = Field(default_factory=list,
                                      description="models whose profile is an estimate with no stated error")


class VettingRound(Model):
    """One solve of planner.plan.vetted: its plan, its latency by the model and simulated (both at
    the plan's percentile); a last round with no plan says the solver found none."""

    status: str = Field(description="the solver's status")
    placement: dict[str, str] = Field(default_factory=dict)
    replicas: dict[str, int] = Field(default_factory=dict)
    cost_per_hour: float | None = None
    latency_ms: float | None = None
    simulated_ms: float | None = None
    met: bool = Field(description="the simulated percentile is within the app's SLO")


class SimulatedCheck(Model):
    """The chosen plan simulated at its planned rate (planner.plan.simulated): each site's models
    sharing its cores, a request's stages as they overlap. Beside the plan's latency, which the
    solver bounds by adding each model's percentile along the slowest path."""

    status: Literal["ok", "not simulated"]
    why: str | None = None
    requests: int | None = None
    seed: int | None = None
    p50_ms: float | None = Field(default=None, description="the whole request: the last sink's input")
    tail_ms: float | None = Field(default=None, description="the whole request at the plan's percentile")
    cores_utilization: dict[str, float] = Field(
        default_factory=dict, description="per site: its models' time x threads per request x rate over its cores")
    rounds: list[VettingRound] = Field(
        default_factory=list, description="each solve until the simulation met the SLO (planner.plan.vetted)")


class EgressTerm(Model):
    flow: str
    link: list[str]
    gb_per_hour: float
    cost_per_hour: float


class CostReport(Model):
    compute_per_hour: float
    egress_per_hour: float
    egress: list[EgressTerm]


class BaselineReport(Model):
    name: str
    description: str
    feasible: bool
    violations: list[str]
    violated: list[ConstraintKey] = Field(default_factory=list, description="the key of each violation, in order")
    placement: dict[str, str]
    replicas: dict[str, int] = Field(default_factory=dict, description="per site: as many as its queues need for the "
                                     "SLO, sized greedily")
    latency_ms: float
    cost_per_hour: float


class PhaseReport(Model):
    objective: str
    status: str
    value: float | None
    bound: float | None
    gap: float | None
    wall_time_s: float
    first_solution_s: float | None


class SolverReport(Model):
    status: str
    objective: str
    time_limit_s: float
    workers: int
    wall_time_s: float
    primary: PhaseReport | None
    secondary: PhaseReport | None


class AppSource(Model):
    """The app.yaml this plan was solved from, so `planner bench` can re-evaluate its placement."""

    file: str  # absolute path
    sha256: str
    overrides: list[str] = Field(default_factory=list)  # the --set options of `planner solve`


class Plan(Model):
    version: int = PLAN_VERSION
    app: str
    status: Literal["OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN"]
    objective: Literal["cost", "latency"]
    placement: dict[str, str]
    latency_ms: float | None
    cost_per_hour: float | None
    constraints: dict[str, float | None]
    percentile: float = Field(default=99, description="latencies are this percentile under the planned load")
    solver: SolverReport
    models: dict[str, ModelReport] = Field(default_factory=dict)
    sites: dict[str, SiteReport] = Field(default_factory=dict)
    paths_total: int = 0
    paths: list[PathReport] = Field(default_factory=list)
    cost: CostReport | None = None
    load_curve: list[LoadPoint] = Field(default_factory=list, description="latency against load, planned rate = 1")
    service_margin: ServiceMargin | None = Field(
        default=None, description="the plan with every model slower than its profile, at its planned rate")
    simulated: SimulatedCheck | None = Field(default=None, description="the plan simulated at its planned rate")
    baselines: list[BaselineReport] = Field(default_factory=list)
    profiles: list[NodeProfile] = Field(default_factory=list)
    explanation: list[str] = Field(default_factory=list)
    conflicts: list[Conflict] = Field(default_factory=list, description="infeasible: a minimal conflict set")
    warnings: list[str] = Field(default_factory=list)
    source: AppSource | None = None
