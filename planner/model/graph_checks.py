"""Checks on the ensemble graph and the link network: no cycle, every model fed by a source
and feeding a sink, every flow routable between the sites its ends may use. Each failure is
one InputError at the flow or model to fix."""

from __future__ import annotations

from itertools import product

import networkx as nx

from planner.app.checks import one_of
from planner.model.checked_app import CheckedApp


def _flow_index(checked: CheckedApp, a: str, b: str) -> int:
    return next(i for i, f in enumerate(checked.app.flows) if f.from_ == a and f.to == b)


def check_graph(checked: CheckedApp) -> None:
    app, g = checked.app, checked.graph.g
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [u for u, _ in cycle] + [cycle[0][0]]
        raise checked.error(f"the flows form a cycle: {' -> '.join(names)}",
                            ("flows", _flow_index(checked, *cycle[0][:2])))
    reached = set().union(*(nx.descendants(g, s) for s in app.sources))
    for name in app.models:
        if name not in reached:
            raise checked.error(f"no source reaches model '{name}': add a flow into it", ("models", name))
    for name in app.sinks:
        if g.in_degree(name) == 0:
            raise checked.error(f"no model feeds sink '{name}': add a flow into it", ("sinks", name))
    sinks = set(app.sinks)
    for name in app.models:
        if not (nx.descendants(g, name) & sinks):
            raise checked.error(f"model '{name}' reaches no sink: its output is never used", ("models", name))


def check_routes(checked: CheckedApp) -> None:
    app, network = checked.app, checked.network

    def sites(node: str) -> list[str]:
        if node in app.sources:
            return [app.sources[node].site]
        if node in app.sinks:
            return [app.sinks[node].site]
        return app.candidate_sites(node)

    for i, flow in enumerate(app.flows):
        a, b = sites(flow.from_), sites(flow.to)
        if not any(s == t or network.connected(s, t) for s, t in product(a, b)):
            raise checked.error(f"flow {flow.from_} -> {flow.to} needs a route from {one_of(a)} to {one_of(b)}, "
                                "and no links join them", ("flows", i))
