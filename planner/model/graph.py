"""The ensemble graph on networkx: sources -> nodes -> sinks, joined by flows."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

import networkx as nx

from planner.app.spec import App


class EnsembleGraph:
    """Directed graph with node attribute `kind` in {source, model, sink}; edge attribute
    `flows`: the indices of the flows joining the pair (a pair may exchange several tensors)."""

    def __init__(self, app: App):
        self.app = app
        g = nx.DiGraph()
        for name in app.sources:
            g.add_node(name, kind="source")
        for name in app.models:
            g.add_node(name, kind="model")
        for name in app.sinks:
            g.add_node(name, kind="sink")
        for i, flow in enumerate(app.flows):
            if g.has_edge(flow.from_, flow.to):
                g.edges[flow.from_, flow.to]["flows"].append(i)
            else:
                g.add_edge(flow.from_, flow.to, flows=[i])
        self.g = g

    def kind(self, name: str) -> str:
        return self.g.nodes[name]["kind"]

    @cached_property
    def topological_models(self) -> list[str]:
        return [n for n in nx.topological_sort(self.g) if self.kind(n) == "model"]

    @cached_property
    def rate_rps(self) -> dict[str, float]:
        """Requests per second reaching each model: the sum of its upstream sources' rates."""
        rates = {}
        for m in self.app.models:
            rates[m] = sum(
                self.app.sources[a].rate_rps for a in nx.ancestors(self.g, m) if self.kind(a) == "source"
            )
        return rates

    def producer_rate(self, name: str) -> float:
        """Rate of the tensors a node sends: a source's own rate, or a model's rate_rps."""
        if self.kind(name) == "source":
            return self.app.sources[name].rate_rps
        return self.rate_rps[name]

    def count_paths(self) -> int:
        """Number of source->sink paths, counted by dynamic programming (never enumerated)."""
        ways: dict[str, int] = {}
        for n in nx.topological_sort(self.g):
            ways[n] = (1 if self.kind(n) == "source" else 0) + sum(ways[p] for p in self.g.predecessors(n))
        return sum(ways[s] for s in self.app.sinks)

    def paths(self) -> Iterator[list[str]]:
        """Every source->sink path as a list of node names."""
        for src in self.app.sources:
            for sink in self.app.sinks:
                yield from nx.all_simple_paths(self.g, src, sink)
