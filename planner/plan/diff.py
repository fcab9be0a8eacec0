"""What moved between two plans, and the change in latency per path and in cost (`planner
diff`, for reviewing plan changes in pull requests)."""

from __future__ import annotations

from pydantic import BaseModel

from planner.plan.schema import Plan

EPS = 1e-9


class Move(BaseModel):
    model: str
    old: str | None  # None: the model is new
    new: str | None  # None: the model was removed


class PathChange(BaseModel):
    path: str
    old_ms: float | None  # None: the path is new (or not listed in the old plan)
    new_ms: float | None
    delta_ms: float | None


class PlanDiff(BaseModel):
    app: str
    old_status: str
    new_status: str
    moved: list[Move]
    paths: list[PathChange]
    old_latency_ms: float | None
    new_latency_ms: float | None
    delta_latency_ms: float | None
    old_cost_per_hour: float | None
    new_cost_per_hour: float | None
    delta_cost_per_hour: float | None
    changed: bool  # placement, status, latency or cost differ: `planner diff` exits 1


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 6)


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    moved = []
    for m in dict.fromkeys([*old.placement, *new.placement]):
        a, b = old.placement.get(m), new.placement.get(m)
        if a != b:
            moved.append(Move(model=m, old=a, new=b))
    old_paths = {" -> ".join(p.nodes): p.latency_ms for p in old.paths}
    new_paths = {" -> ".join(p.nodes): p.latency_ms for p in new.paths}
    paths = [PathChange(path=k, old_ms=old_paths.get(k), new_ms=new_paths.get(k),
                        delta_ms=_delta(old_paths.get(k), new_paths.get(k)))
             for k in dict.fromkeys([*old_paths, *new_paths])]
    dl, dc = _delta(old.latency_ms, new.latency_ms), _delta(old.cost_per_hour, new.cost_per_hour)
    changed = (bool(moved) or old.status != new.status or (old.latency_ms is None) != (new.latency_ms is None)
               or (old.cost_per_hour is None) != (new.cost_per_hour is None)
               or (dl is not None and abs(dl) > EPS) or (dc is not None and abs(dc) > EPS))
    app = old.app if old.app == new.app else f"{old.app} -> {new.app}"
    return PlanDiff(app=app, old_status=old.status, new_status=new.status, moved=moved, paths=paths,
                    old_latency_ms=old.latency_ms, new_latency_ms=new.latency_ms, delta_latency_ms=dl,
                    old_cost_per_hour=old.cost_per_hour, new_cost_per_hour=new.cost_per_hour,
                    delta_cost_per_hour=dc, changed=changed)
