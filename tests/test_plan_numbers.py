"""plan.json's numbers are the README's formulas applied to the placement (checked here
independently, in floating point, from app.yaml alone)."""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx
import pytest
import yaml

from planner.pipeline import prepare, solve_prepared
from planner.solver.cpsat import SolverConfig

ROOT = Path(__file__).resolve().parents[1]


def readme_numbers(app: dict, placement: dict[str, str]):
    site_of = {**placement, **{k: v["site"] for k, v in app["sources"].items()},
               **{k: v["site"] for k, v in app["sinks"].items()}}
    links = nx.Graph()
    for link in app["links"]:
        links.add_edge(*link["between"], **link)

    def route(s, t, b):
        w = lambda u, v, d: d["rtt_ms"] / 2 + b * 8 / (d["bandwidth_mbps"] * 1e6) * 1000  # noqa: E731
        path = nx.shortest_path(links, s, t, weight=w)
        hops = list(zip(path, path[1:]))
        return sum(w(*h, links.edges[h]) for h in hops), [links.edges[h] for h in hops]

    g = nx.DiGraph([(f["from"], f["to"]) for f in app["flows"]])
    rate = {m: sum(app["sources"][a]["rate_rps"] for a in nx.ancestors(g, m) if a in app["sources"])
            for m in app["models"]}
    finish = {}
    for n in nx.topological_sort(g):
        if n in app["sources"]:
            finish[n] = 0.0
            continue
        arrive = 0.0
        for f in app["flows"]:
            if f["to"] == n:
                s, t = site_of[f["from"]], site_of[n]
                arrive = max(arrive, finish[f["from"]] + (route(s, t, f["bytes"])[0] if s != t else 0))
        own = app["models"][n]["profile"][site_of[n]]["latency_ms"] if n in app["models"] else 0
        finish[n] = arrive + own
    latency = max(finish[k] for k in app["sinks"])

    cost = 0.0
    for s, spec in app["sites"].items():
        hosted = [m for m, p in placement.items() if p == s]
        if hosted:
            load = sum(rate[m] * app["models"][m]["profile"][s]["latency_ms"] / 1000 for m in hosted)
            cost += max(1, math.ceil(load)) * spec["cost_per_hour"]
    for f in app["flows"]:
        s, t = site_of[f["from"]], site_of[f["to"]]
        if s != t:
            r = app["sources"][f["from"]]["rate_rps"] if f["from"] in app["sources"] else rate[f["from"]]
            for link in route(s, t, f["bytes"])[1]:
                cost += r * f["bytes"] * 3600 / 1e9 * link.get("cost_per_gb", 0)
    return latency, cost


@pytest.mark.parametrize("example", ["smart-camera", "voice-assistant"])
@pytest.mark.parametrize("objective", ["cost", "latency"])
def test_plan_numbers_follow_the_readme(example, objective):
    path = ROOT / "examples" / example / "app.yaml"
    app = yaml.safe_load(path.read_text())
    prep = prepare(path)
    plan = solve_prepared(prep, SolverConfig(objective=objective, time_limit_s=20))
    latency, cost = readme_numbers(app, plan.placement)
    assert plan.latency_ms == pytest.approx(latency, abs=0.01)
    assert plan.cost_per_hour == pytest.approx(cost, abs=1e-5)
    for b in plan.baselines:
        lat, c = readme_numbers(app, b.placement)
        assert b.latency_ms == pytest.approx(lat, abs=0.01)
        assert b.cost_per_hour == pytest.approx(c, abs=1e-5)
    # the longest listed path is the end-to-end latency
    assert max(p.latency_ms for p in plan.paths) == pytest.approx(plan.latency_ms, abs=1e-6)
