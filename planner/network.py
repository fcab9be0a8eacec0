"""The link graph between sites and the routes flows take over it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import networkx as nx

from planner.spec import App

# Among equally fast routes, prefer the one with the lowest egress price: the price enters the
# weight at a scale far below the microsecond the solver resolves, so it only breaks ties.
_TIE_BREAK = 1e-9


@dataclass(frozen=True)
class Route:
    sites: tuple[str, ...]  # s, ..., t
    latency_ms: float  # sum over links of rtt/2 + bytes*8/bandwidth
    cost_per_gb: float  # sum over links of their egress price

    @property
    def links(self) -> list[tuple[str, str]]:
        return list(zip(self.sites, self.sites[1:]))


def link_transfer_ms(nbytes: int, bandwidth_mbps: float, rtt_ms: float) -> float:
    """One link: half a round trip plus serialization of the bytes."""
    return rtt_ms / 2 + nbytes * 8 / (bandwidth_mbps * 1e6) * 1000


class Network:
    def __init__(self, app: App):
        g = nx.Graph()
        g.add_nodes_from(app.sites)
        for link in app.links:
            a, b = link.between
            g.add_edge(a, b, bandwidth_mbps=link.bandwidth_mbps, rtt_ms=link.rtt_ms, cost_per_gb=link.cost_per_gb)
        self.g = g

    def connected(self, s: str, t: str) -> bool:
        return nx.has_path(self.g, s, t)

    def link(self, a: str, b: str) -> dict:
        return self.g.edges[a, b]

    @lru_cache(maxsize=4096)
    def routes(self, nbytes: int) -> dict[str, dict[str, Route]]:
        """The fastest route for `nbytes` between every connected pair of distinct sites."""

        def weight(a: str, b: str, d: dict) -> float:
            return link_transfer_ms(nbytes, d["bandwidth_mbps"], d["rtt_ms"]) + _TIE_BREAK * d["cost_per_gb"]

        out: dict[str, dict[str, Route]] = {}
        for s, (_, paths) in nx.all_pairs_dijkstra(self.g, weight=weight):
            out[s] = {}
            for t, path in paths.items():
                if t == s:
                    continue
                hops = list(zip(path, path[1:]))
                out[s][t] = Route(
                    sites=tuple(path),
                    latency_ms=sum(
                        link_transfer_ms(nbytes, self.g.edges[h]["bandwidth_mbps"], self.g.edges[h]["rtt_ms"])
                        for h in hops
                    ),
                    cost_per_gb=sum(self.g.edges[h]["cost_per_gb"] for h in hops),
                )
        return out

    def route(self, s: str, t: str, nbytes: int) -> Route | None:
        """None when no route joins s and t; a flow within one site has no route (it is free)."""
        return self.routes(nbytes).get(s, {}).get(t)
