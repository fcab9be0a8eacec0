"""gRPC channels to other sites, by address, with a bound on how many stay open.

Addresses come from the bundle (and `--peer`), so the cache holds one channel per site in
practice; the bound keeps a site that is misconfigured, or fed many addresses, from holding
channels (sockets, threads, memory) without limit: the least recently used channel is closed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import grpc


class ChannelCache:
    """`call(address)`: the unary method `method` on a channel to `address`, channels kept for the `cap` latest addresses."""

    def __init__(self, options: list[tuple[str, int]], method: str, request_serializer: Callable,
                 response_deserializer: Callable, cap: int = 16):
        if cap < 1:
            raise ValueError(f"channel cache cap must be at least 1 (got {cap})")
        self.options = options
        self.cap = cap
        self._method = (method, request_serializer, response_deserializer)
        self._entries: OrderedDict[str, tuple[grpc.Channel, object]] = OrderedDict()
        self._lock = threading.Lock()

    def call(self, address: str):
        with self._lock:
            entry = self._entries.get(address)
            if entry is not None:
                self._entries.move_to_end(address)
                return entry[1]
            method, ser, de = self._method
            channel = grpc.insecure_channel(address, options=self.options)
            entry = self._entries[address] = (channel, channel.unary_unary(
                method, request_serializer=ser, response_deserializer=de))
            evicted = self._entries.popitem(last=False)[1][0] if len(self._entries) > self.cap else None
        if evicted is not None:
            evicted.close()  # calls still running on it end with CANCELLED
        return entry[1]

    def addresses(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), OrderedDict()
        for channel, _ in entries:
            channel.close()
