"""Rendering a plan for the people who review it: report.md and report.html beside plan.json,
the Pareto front's and a sweep's tables and plots, a diff's lines, the terminal tables.
Rendering only: what is rendered was computed by the stages below (plan, solver).

`write_reports(plan, out_dir)` is the one entry point `planner solve` calls.
"""

from __future__ import annotations

from pathlib import Path

from planner.plan.schema import Plan
from planner.report.files import write_text_atomic


def write_reports(plan: Plan, out_dir: Path) -> list[Path]:
    """Write report.md (+ the SVG charts it links) and the self-contained report.html into
    out_dir; link the Pareto plot when `planner pareto` has written one there."""
    from planner.report import html, markdown, sections
    from planner.report.svg import cost_svg, graph_svg, latency_svg, load_svg

    out_dir = Path(out_dir)
    svgs = {"graph.svg": graph_svg(plan), "latency.svg": latency_svg(plan), "cost.svg": cost_svg(plan),
            "load.svg": load_svg(plan)}
    assets = sorted(p.name for p in out_dir.glob("pareto.*")) if out_dir.is_dir() else []
    if "pareto.svg" in assets:
        svgs["pareto.svg"] = (out_dir / "pareto.svg").read_text(encoding="utf-8")
    blocks = sections.build(plan, assets)
    written = []
    for name in ("graph.svg", "latency.svg", "cost.svg", "load.svg"):
        write_text_atomic(out_dir / name, svgs[name] + "\n")
        written.append(out_dir / name)
    write_text_atomic(out_dir / "report.md", markdown.render(plan, blocks))
    write_text_atomic(out_dir / "report.html", html.render(plan, blocks, svgs))
    written += [out_dir / "report.md", out_dir / "report.html"]
    return written
