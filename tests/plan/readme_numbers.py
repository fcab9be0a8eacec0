"""The README's latency and cost model, re-implemented in plain floating point from an app.yaml
dict alone (no planner code): the independent truth plan.json's numbers are checked against."""

from __future__ import annotations

import math

import networkx as nx


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
