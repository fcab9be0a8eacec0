"""A sweep's result: one solve per value of one app.yaml parameter (`planner sweep`)."""

from __future__ import annotations

from pydantic import BaseModel


class SweepPoint(BaseModel):
    value: str
    status: str
    placement: dict[str, str]
    latency_ms: float | None
    cost_per_hour: float | None
    moved: list[str]  # models whose site differs from the previous feasible value's
    replicas: dict[str, int] = {}  # per site the plan uses
    margin_pct: float | None = None  # the plan's service margin (planner.plan.margin): None without a plan or an SLO


class Sweep(BaseModel):
    app: str
    key: str
    fixed: list[str]  # the other --set overrides, applied to every run
    points: list[SweepPoint]
