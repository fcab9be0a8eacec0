"""The link graph between sites and the routes flows take over it."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import lru_cache

import networkx as nx

from planner.app.spec import App

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
        """The fastest route for `nbytes` between every connected pair of distinct sites.

        Dijkstra from every site on a plain adjacency list (the same weights and tie-break as
        networkx's all-pairs Dijkstra, which this replaced for speed: one call per flow size)."""
        adj = self._adjacency()
        weight = {(a, b): link_transfer_ms(nbytes, bw, rtt) + _TIE_BREAK * gb
                  for a, nbrs in adj.items() for b, bw, rtt, gb in nbrs}
        out: dict[str, dict[str, Route]] = {}
        for s in adj:
            dist, pred, order = _dijkstra(adj, weight, s)
            out[s] = {}
            for t in order:
                if t == s:
                    continue
                path = [t]
                while path[-1] != s:
                    path.append(pred[path[-1]])
                path.reverse()
                hops = list(zip(path, path[1:]))
                out[s][t] = Route(
                    sites=tuple(path),
                    latency_ms=sum(link_transfer_ms(nbytes, self._bw[h], self._rtt[h]) for h in hops),
                    cost_per_gb=sum(self._gb[h] for h in hops),
                )
        return out

    def _adjacency(self) -> dict[str, list[tuple[str, float, float, float]]]:
        if not hasattr(self, "_adj"):
            self._adj = {n: [(b, d["bandwidth_mbps"], d["rtt_ms"], d["cost_per_gb"]) for b, d in self.g.adj[n].items()]
                         for n in self.g.nodes}
            self._bw, self._rtt, self._gb = {}, {}, {}
            for a, b, d in self.g.edges(data=True):
                for h in ((a, b), (b, a)):
                    self._bw[h], self._rtt[h], self._gb[h] = d["bandwidth_mbps"], d["rtt_ms"], d["cost_per_gb"]
        return self._adj

    def route(self, s: str, t: str, nbytes: int) -> Route | None:
        """None when no route joins s and t; a flow within one site has no route (it is free)."""
        return self.routes(nbytes).get(s, {}).get(t)


def _dijkstra(adj: dict, weight: dict, source: str) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """Shortest distances from `source`; `pred` gives each reached node's previous hop.
    Ties between equally long paths keep the first one found, as networkx does."""
    dist: dict[str, float] = {}
    seen = {source: 0.0}
    pred: dict[str, str] = {}
    order: list[str] = []
    heap = [(0.0, 0, source)]
    count = 1
    while heap:
        d, _, v = heapq.heappop(heap)
        if v in dist:
            continue
        dist[v] = d
        order.append(v)
        for u, *_ in adj[v]:
            du = d + weight[v, u]
            if u not in dist and (u not in seen or du < seen[u]):
                seen[u] = du
                pred[u] = v
                heapq.heappush(heap, (du, count, u))
                count += 1
    return dist, pred, order
