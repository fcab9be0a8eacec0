"""report.md and report.html: every model, path and number of plan.json is in the report
(report.md is parsed back), and `planner solve` writes both beside plan.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.pipeline import prepare, solve_prepared
from planner.plan.schema import Plan
from planner.report import write_reports
from planner.report.binding import headroom
from planner.report.svg import num
from planner.solver.cpsat import SolverConfig
from tests import CAMERA, VOICE



def solve(path: Path, overrides=(), objective="cost") -> Plan:
    return solve_prepared(prepare(path, overrides), SolverConfig(objective=objective, time_limit_s=20, workers=2))


# -- a small parser for what report.md holds ----------------------------------------------------

def tables(md: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(last heading, header cells, rows) of every Markdown table."""
    out, heading, lines = [], "", md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(-+:?\|)+", lines[i + 1]):
            header = split_row(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(split_row(lines[i]))
                i += 1
            out.append((heading, header, rows))
            continue
        i += 1
    return out


def split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def table(md: str, first_header: str, heading: str | None = None) -> list[dict[str, str]]:
    for h, header, rows in tables(md):
        if header[0] == first_header and (heading is None or h == heading):
            return [dict(zip(header, r)) for r in rows]
    raise AssertionError(f"no table starting with {first_header!r} under {heading!r}")


def numbers(obj, path=""):
    """Every numeric leaf of plan.json with its key path."""
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{path}[{i}]")


def strings(obj):
    """Every string leaf of plan.json but a baseline's `violated`: the keys of its `violations`,
    whose words the report shows."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k != "violated":
                yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


def check_report_holds_plan(plan: Plan, md: str) -> None:
    data = json.loads(plan.model_dump_json())
    tokens = set(re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", md))
    for path, x in numbers(data):
        if path.endswith(".gap"):
            assert f"{num(x * 100, 4)}%" in md, path
        else:
            assert num(x) in tokens, (path, x, num(x))
    for text in strings(data):
        assert text.replace("|", "\\|") in md, text

    placement = {r["model"]: r for r in table(md, "model", "Placement")}
    assert set(placement) == set(plan.models) == set(plan.placement)
    for name, m in plan.models.items():
        r = placement[name]
        assert (r["site"], r["tier"], r["target"]) == (m.site, m.tier, m.target)
        for col, v in (("latency ms", m.latency_ms), ("memory MB", m.memory_mb), ("rate rps", m.rate_rps),
                       ("start ms", m.start_ms), ("finish ms", m.finish_ms)):
            assert float(r[col]) == pytest.approx(v, abs=1e-3), (name, col)
        site = plan.sites[m.site]
        assert r["site replicas"] == f"{site.replicas} / {site.max_replicas}"
        assert r["provenance"].split()[0] == m.provenance

    paths = {r["path"]: r for r in table(md, "path", "Latency per source->sink path")}
    assert len(paths) == len(plan.paths)
    for i, p in enumerate(plan.paths, 1):
        r = paths[" -> ".join(p.nodes)]
        assert float(r[f"p{plan.percentile:g} ms"]) == pytest.approx(p.latency_ms, abs=1e-3)
        if p.slo_ms is not None:
            assert float(r["SLO ms"]) == pytest.approx(p.slo_ms)
            assert float(r["slack ms"]) == pytest.approx(p.slack_ms, abs=1e-3)
        terms = table(md, "term", f"Path {i}: {p.source} -> {p.sink}")
        assert [(t["term"], t["name"]) for t in terms[:-1]] == [(t.kind, t.name) for t in p.terms]
        assert [float(t["ms"]) for t in terms[:-1]] == pytest.approx([t.ms for t in p.terms], abs=1e-3)
        assert sum(float(t["ms"]) for t in terms[:-1]) == pytest.approx(p.latency_ms, abs=2e-3)

    sites = {r["site"]: r for r in table(md, "site", "Cost")}
    assert set(sites) == set(plan.sites)
    for name, s in plan.sites.items():
        assert sites[name]["replicas / max"] == f"{s.replicas} / {s.max_replicas}"
        assert float(sites[name]["compute $/h"]) == pytest.approx(s.cost_per_hour, abs=1e-6)
    if plan.cost is not None:
        egress = table(md, "flow", "Cost") if plan.cost.egress else []
        assert [(e["flow"], float(e["egress $/h"])) for e in egress] == [
            (e.flow, pytest.approx(e.cost_per_hour, abs=1e-6)) for e in plan.cost.egress]
    base = {r["plan"]: r for r in table(md, "plan", "Baselines")}
    for b in plan.baselines:
        assert float(base[b.name]["latency ms"]) == pytest.approx(b.latency_ms, abs=1e-3)
        assert float(base[b.name]["cost $/h"]) == pytest.approx(b.cost_per_hour, abs=1e-6)
        assert base[b.name]["feasible"].startswith("yes" if b.feasible else "no")
    prof = table(md, "node", "Provenance of every number")
    assert [(r["node"], r["site"], r["build"], r["provenance"], r["verified"]) for r in prof] == [
        (p.node, p.site, p.build_label, p.provenance, p.verification)
        for p in plan.profiles]
    solver = {r["phase"]: r for r in table(md, "phase", "Solver")}
    assert solver["primary"]["status"] == plan.solver.primary.status


@pytest.mark.parametrize("path,objective", [(CAMERA, "cost"), (VOICE, "cost"), (CAMERA, "latency")])
def test_report_md_holds_every_model_path_and_number(tmp_path, path, objective):
    plan = solve(path, objective=objective)
    written = write_reports(plan, tmp_path)
    assert {p.name for p in written} >= {"report.md", "report.html", "latency.svg", "cost.svg"}
    md = (tmp_path / "report.md").read_text()
    check_report_holds_plan(plan, md)
    # the images the Markdown links are beside it; the Mermaid graph colors each model by its site
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (tmp_path / link).is_file(), link
    mermaid = md.split("```mermaid", 1)[1].split("```", 1)[0]
    for name, m in plan.models.items():
        assert f"{name}<br/>{m.site}" in mermaid
    assert mermaid.count("classDef site_") >= 2 * len(plan.sites)


def test_report_html_is_self_contained_and_holds_the_same_numbers(tmp_path):
    plan = solve(CAMERA)
    write_reports(plan, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "@import" not in html and "<link" not in html
    assert html.count("<svg") >= 3  # graph, latency bars, cost bars
    for name in plan.models:
        assert f">{name}<" in html
    for p in plan.paths:
        assert " -&gt; ".join(p.nodes) in html and num(p.latency_ms, 3) in html
    assert num(plan.cost_per_hour) in html


def test_binding_constraints_are_named(tmp_path):
    # cap the cost at the optimum's cost and tighten the SLO to the plan's latency: both bind
    plan = solve(CAMERA)
    tight = solve(CAMERA, [f"constraints.latency_ms={plan.latency_ms}",
                           f"constraints.cost_per_hour={plan.cost_per_hour}"])
    states = {str(h.constraint): h.state for h in headroom(tight)}
    assert states["cost_cap"] == "binding"
    assert "binding" in {s for k, s in states.items() if k.startswith("slo:")}
    write_reports(tight, tmp_path)
    md = (tmp_path / "report.md").read_text()
    why = {r["constraint"]: r for r in table(md, "constraint", "Why this plan: binding constraints")}
    assert why["cost_cap"]["state"] == "binding"
    assert "the cost cap is binding" in md and "the SLO is binding on" in md
    # the cheaper baseline is named with the constraint that stops it
    assert "all-on-camera costs $0.004424/h" in md and "breaks max_replicas" in md


def test_solve_writes_reports_beside_plan_and_pareto_links_them(tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["solve", str(CAMERA), "-o", str(out), "--time-limit", "20"])
    assert r.exit_code == 0, r.output
    for name in ("plan.json", "report.md", "report.html", "latency.svg", "cost.svg"):
        assert (out / name).is_file(), name
    plan = Plan.model_validate_json((out / "plan.json").read_text())
    check_report_holds_plan(plan, (out / "report.md").read_text())
    assert "pareto.svg" not in (out / "report.md").read_text()
    r = CliRunner().invoke(cli, ["pareto", str(CAMERA), "-o", str(out)])
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    assert "![Pareto front](pareto.svg)" in md and "[pareto.png](pareto.png)" in md
    assert "<svg" in (out / "report.html").read_text().split("Trade-offs", 1)[1]


def test_infeasible_report_explains(tmp_path):
    text = VOICE.read_text().replace("constraints: {latency_ms: 1200}", "constraints: {latency_ms: 200}")
    path = tmp_path / "app.yaml"
    path.write_text(text)
    r = CliRunner().invoke(cli, ["solve", str(path), "-o", str(tmp_path / "o")])
    assert r.exit_code == 3
    md = (tmp_path / "o" / "report.md").read_text()
    plan = Plan.model_validate_json((tmp_path / "o" / "plan.json").read_text())
    assert "INFEASIBLE" in md and plan.conflicts
    rows = table(md, "constraint", "Why there is no plan: conflicting constraints")
    assert [r["constraint"] for r in rows] == [str(c.constraint) for c in plan.conflicts]
    for line in plan.explanation:
        assert line in md
