"""Spreading requests over the replicas of a site (client-side balancing, at the entry).

A site may run as several processes (replicas), each with its own address. The entry replica a
request enters picks one replica of every other site for the whole request (`Balancer`) and
sends that route along with each forward (parameter `route`, JSON {site: address}): every tensor
of the request bound for a site then reaches the same process, where a node's inputs coming
from different sites must meet. A receiver accepts a route only when each address is a replica of
the site it is given for (`parse_route`): a site is no relay to addresses a caller names.
"""

from __future__ import annotations

import json
import threading
import time


class Balancer:
    """Which replica of a site the next request goes to: the one with the fewest requests routed there
    and not yet released (least outstanding requests), ties taken in turn (round robin).

    Least outstanding rather than plain round robin: a replica that is slower for a while (a long
    request, a loaded core) gets fewer new requests while it catches up, and replicas answering at
    the same speed are still used in turn. A replica that just refused a connection (it died, and
    `planner up` restarts it) is passed over for DOWN_S while another one is up."""

    DOWN_S = 1.0

    def __init__(self):
        self._lock = threading.Lock()
        self._outstanding: dict[str, int] = {}
        self._turn: dict[str, int] = {}  # site -> index of the replica whose turn is next
        self._down_until: dict[str, float] = {}  # address -> time.monotonic()

    def pick(self, site: str, addresses: list[str]) -> str:
        """A replica of `site` for one request; `release` it when the request ends."""
        with self._lock:
            now = time.monotonic()
            start = self._turn.get(site, 0) % len(addresses)
            order = addresses[start:] + addresses[:start]
            best = min(order, key=lambda a: (self._down_until.get(a, 0) > now, self._outstanding.get(a, 0)))
            self._turn[site] = addresses.index(best) + 1
            self._outstanding[best] = self._outstanding.get(best, 0) + 1
            return best

    def release(self, address: str) -> None:
        with self._lock:
            left = self._outstanding.get(address, 0) - 1
            if left > 0:
                self._outstanding[address] = left
            else:
                self._outstanding.pop(address, None)

    def failed(self, address: str) -> None:
        """`address` refused a call (UNAVAILABLE): pass it over for a while."""
        with self._lock:
            self._down_until[address] = time.monotonic() + self.DOWN_S

    def outstanding(self) -> dict[str, int]:
        with self._lock:
            return dict(self._outstanding)


def parse_route(text: str, site_of_address: dict[str, str]) -> dict[str, str] | None:
    """A forward's route ({} when it has none), or None when it is not {site: address of a replica of that site}."""
    try:
        route = json.loads(text) if text else {}
    except ValueError:
        return None
    if not isinstance(route, dict) or not all(isinstance(a, str) and site_of_address.get(a) == s
                                              for s, a in route.items()):
        return None
    return route
