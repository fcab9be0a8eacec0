"""A plan diff as plain lines (also valid Markdown list items in a PR comment)."""

from __future__ import annotations

from planner.plan.diff import EPS, PlanDiff


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
