"""The link graph between sites and the routes flows take over it."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from functools import cached_property, lru_cache

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
        adj, hop = self._adjacency, self._hop
        weight = {(a, b): link_transfer_ms(nbytes, bw, rtt) + _TIE_BREAK * gb
                  for a, nbrs in adj.items() for b, bw, rtt, gb in nbrs}
        out: dict[str, dict[str, Route]] = {}
        for s in adj:
            pred, order = _dijkstra(adj, weight, s)
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
                    latency_ms=sum(link_transfer_ms(nbytes, *hop[h][:2]) for h in hops),
                    cost_per_gb=sum(hop[h][2] for h in hops),
                )
        return out

    @cached_property
    def _adjacency(self) -> dict[str, list[tuple[str, float, float, float]]]:
        return {n: [(b, d["bandwidth_mbps"], d["rtt_ms"], d["cost_per_gb"]) for b, d in self.g.adj[n].items()]
                for n in self.g.nodes}

    @cached_property
    def _hop(self) -> dict[tuple[str, str], tuple[float, float, float]]:
        """(bandwidth, rtt, price) of the link a hop crosses, in either direction."""
        return {h: (d["bandwidth_mbps"], d["rtt_ms"], d["cost_per_gb"])
                for a, b, d in self.g.edges(data=True) for h in ((a, b), (b, a))}

    def route(self, s: str, t: str, nbytes: int) -> Route | None:
        """None when no route joins s and t; a flow within one site has no route (it is free)."""
        return self.routes(nbytes)[s].get(t)


def _dijkstra(adj: dict, weight: dict, source: str) -> tuple[dict[str, str], list[str]]:
    """Shortest paths from `source`: `pred` gives each node reached its previous hop, `order`
    lists the nodes reached, nearest first. Ties between equally long paths keep the first one
    found, as networkx does (equal distances leave the heap first in, first out)."""
    done: set[str] = set()
    seen: dict[str, float] = {}
    pred: dict[str, str] = {}
    order: list[str] = []
    tick = itertools.count()
    heap = [(0.0, next(tick), source)]
    while heap:
        d, _, v = heapq.heappop(heap)
        if v in done:
            continue
        done.add(v)
        order.append(v)
        for u, *_ in adj[v]:
            du = d + weight[v, u]
            if u not in done and (u not in seen or du < seen[u]):
                seen[u] = du
                pred[u] = v
                heapq.heappush(heap, (du, next(tick), u))
    return pred, order
