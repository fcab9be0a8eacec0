"""Random small apps for property tests: DAGs with fan-out and fan-in, multi-hop link graphs."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import strategies as st

from planner.app.loader import LoadedApp
from planner.app.sites import ResolvedSite
from planner.app.spec import App
from planner.app.yaml_lines import LineMap
from planner.model.checked_app import CheckedApp
from planner.model.graph import EnsembleGraph
from planner.model.network import Network
from planner.plan.problem import build_instance
from planner.profiling.app_profiles import given_profiles


@st.composite
def apps(draw, max_models: int = 6, max_sites: int = 4) -> dict:
    n_sites = draw(st.integers(2, max_sites))
    sites = [f"s{i}" for i in range(n_sites)]
    site_specs = {
        s: {
            "tier": draw(st.sampled_from(["edge", "base-station", "cloud"])),
            "target": "host",
            "cost_per_hour": draw(st.sampled_from([0, 0.1, 0.25, 0.4, 1.0])),
            "memory_mb": draw(st.sampled_from([300, 700, 4000])),
            "max_replicas": draw(st.integers(1, 4)),
        }
        for s in sites
    }
    # link graph: a random spanning-ish set of edges, possibly leaving sites unreachable
    pairs = list(itertools.combinations(sites, 2))
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, min_size=1, max_size=len(pairs)))
    if draw(st.booleans()):  # mostly connected: a chain through all sites gives multi-hop routes
        chosen = list(dict.fromkeys(chosen + list(zip(sites, sites[1:]))))
    links = [
        {"between": list(p), "bandwidth_mbps": draw(st.sampled_from([5, 50, 1000])),
         "rtt_ms": draw(st.sampled_from([1, 8, 30])), "cost_per_gb": draw(st.sampled_from([0, 0.05, 0.2]))}
        for p in chosen
    ]
    n_models = draw(st.integers(1, max_models))
    models = [f"m{i}" for i in range(n_models)]
    flows = [{"from": "src", "to": models[0], "bytes": draw(st.sampled_from([1000, 100_000, 2_000_000]))}]
    for i in range(1, n_models):
        # fan-in: one or two earlier producers
        preds = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=2, unique=True))
        for p in preds:
            flows.append({"from": models[p], "to": models[i], "bytes": draw(st.sampled_from([1000, 100_000, 2_000_000]))})
    # every model without a consumer feeds the sink (so fan-out ends in fan-in at the sink)
    used = {f["from"] for f in flows}
    for m in models:
        if m not in used:
            flows.append({"from": m, "to": "out", "bytes": draw(st.sampled_from([100, 10_000]))})
    model_specs = {}
    for m in models:
        allowed = draw(st.lists(st.sampled_from(sites), min_size=1, max_size=n_sites, unique=True))
        model_specs[m] = {
            "profile": {s: {"latency_ms": draw(st.sampled_from([2, 10, 40, 120, 300])),
                            "memory_mb": draw(st.sampled_from([0, 50, 200, 600]))} for s in allowed},
        }
        if len(allowed) > 1 and draw(st.integers(0, 3)) == 0:  # pinned to some of its profiled sites
            model_specs[m]["sites"] = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=len(allowed) - 1,
                                                    unique=True))
    constraints = {}
    if draw(st.booleans()):
        constraints["latency_ms"] = draw(st.sampled_from([50, 150, 400, 1000]))
    if draw(st.booleans()):
        constraints["cost_per_hour"] = draw(st.sampled_from([0.2, 0.5, 1.5]))
    return {
        "name": "random",
        "sites": site_specs,
        "links": links,
        "models": model_specs,
        "sources": {"src": {"site": draw(st.sampled_from(sites)), "rate_rps": draw(st.sampled_from([0.5, 5, 20]))}},
        "sinks": {"out": {"site": draw(st.sampled_from(sites))}},
        "flows": flows,
        "constraints": constraints,
    }


def stub_sites(app: App) -> dict[str, ResolvedSite]:
    """Sites resolved from their app.yaml numbers alone (the property tests need no catalog)."""
    return {
        n: ResolvedSite(name=n, tier=s.tier, target=None, target_name=str(s.target), cost_per_hour=s.cost_per_hour,
                        memory_mb=s.memory_mb, max_replicas=s.max_replicas, rpc=None)
        for n, s in app.sites.items()
    }


def instance_of(data: dict):
    """App dict -> (Instance, graph, network), bypassing file, catalog and checks."""
    app = App.model_validate(data)
    loaded = LoadedApp(app=app, path=Path("random.yaml"), lines=LineMap())
    checked = CheckedApp(loaded=loaded, sites=stub_sites(app), graph=EnsembleGraph(app), network=Network(app))
    return build_instance(checked, given_profiles(checked)), checked.graph, checked.network
