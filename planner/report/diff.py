"""`planner diff OLD/plan.json NEW/plan.json`: what moved between two plans, and the change
in latency per path and in cost, for reviewing plan changes in pull requests."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from planner.errors import InputError
from planner.plan import Plan

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


def load_plan(path: Path) -> Plan:
    """A plan.json, or one InputError that says what is wrong with the file."""
    path = Path(path)
    if path.is_dir() and (path / "plan.json").is_file():
        path = path / "plan.json"
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected a plan.json written by `planner solve`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a plan.json: invalid JSON ({exc})") from None
    if not isinstance(data, dict) or "placement" not in data or "app" not in data:
        raise InputError(f"{path}: not a plan.json: it has no 'app' and 'placement' (write one with `planner solve`)")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: not a plan.json this planner reads: {where}: {first['msg']}") from None


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


def _signed(x: float | None, unit: str, digits: int) -> str:
    if x is None:
        return "-"
    return f"{x:+.{digits}f}".rstrip("0").rstrip(".") + unit if abs(x) > EPS else "0" + unit


def diff_lines(d: PlanDiff) -> list[str]:
    """The diff as plain lines (also valid Markdown list items in a PR comment)."""
    lines = [f"{d.app}: " + ("no change" if not d.changed else "the plan changed")]
    if d.old_status != d.new_status:
        lines.append(f"status: {d.old_status} -> {d.new_status}")
    for mv in d.moved:
        if mv.old is None:
            lines.append(f"added {mv.model} on {mv.new}")
        elif mv.new is None:
            lines.append(f"removed {mv.model} (was on {mv.old})")
        else:
            lines.append(f"moved {mv.model}: {mv.old} -> {mv.new}")
    if d.old_latency_ms is not None or d.new_latency_ms is not None:
        lines.append(f"latency: {_fmt(d.old_latency_ms)} -> {_fmt(d.new_latency_ms)} ms "
                     f"({_signed(d.delta_latency_ms, ' ms', 3)})")
    if d.old_cost_per_hour is not None or d.new_cost_per_hour is not None:
        lines.append(f"cost: ${_fmt(d.old_cost_per_hour)} -> ${_fmt(d.new_cost_per_hour)}/h "
                     f"({_signed(d.delta_cost_per_hour, ' $/h', 6)})")
    return lines


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6f}".rstrip("0").rstrip(".")
