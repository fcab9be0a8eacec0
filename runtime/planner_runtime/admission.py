"""Admission of requests entering the ensemble at a site: a few run at once, a bounded FIFO queue waits.

`Admission(slots, queue)`: at most `slots` requests hold a slot; up to `queue` more wait for one
in arrival order; beyond that a request is refused at once. A waiting request leaves the queue
when a slot is handed to it, when its deadline passes, or when it is cancelled, whichever comes
first. A freed slot goes straight to the oldest waiter, so a newcomer never overtakes the queue.
The same gate, with an unbounded queue, holds a node's instances (runtime.executor): a ticket
gate, because neither threading.Lock nor Semaphore wakes its waiters in arrival order.
A slot handed to a waiter stays held, unused, until the waiter's thread runs again: `enter`
reports that handover apart (`Admitted`), because a queue of such turns serves each request
that much slower than its run alone, and a replay of the queue needs it.

`Cancellation` is one call's cancel signal: what waits on the call (a queue turn, a forward, the
sinks) registers how to be woken, and is woken at once when the client goes away.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class Cancellation:
    """Set once, when the call is cancelled: runs the callbacks registered so far, and later ones at once."""

    def __init__(self):
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []
        self._set = False

    @property
    def is_set(self) -> bool:
        return self._set

    def add(self, callback: Callable[[], object]) -> None:
        with self._lock:
            if not self._set:
                self._callbacks.append(callback)
                return
        callback()

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class Refused(Exception):
    """Not admitted: `reason` is "full" (queue at its bound), "deadline" or "cancelled" (while waiting)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Admitted:
    """A slot taken: `waited_s` from the call until the caller ran again holding it; of which
    `handover_s` from the slot's hand-on by its previous holder (0 where a slot was free)."""

    waited_s: float
    handover_s: float = 0.0


class _Turn:
    __slots__ = ("event", "granted", "granted_at")

    def __init__(self):
        self.event = threading.Event()
        self.granted = False
        self.granted_at = 0.0


class Admission:
    """`queue` None: no bound; `what`: what the slots are, in the messages of Refused."""

    def __init__(self, slots: int, queue: int | None,
                 on_change: Callable[[int, int], None] = lambda running, queued: None, what: str = "slots"):
        if slots < 1 or (queue is not None and queue < 0):
            raise ValueError(f"max-inflight must be 1 or more and max-queue 0 or more (got {slots} and {queue})")
        self.slots = slots
        self.queue = queue
        self.what = what
        self._on_change = on_change
        self._lock = threading.Lock()
        self._free = slots
        self._waiting: deque[_Turn] = deque()

    def enter(self, timeout_s: float | None, cancel: Cancellation | None = None) -> Admitted:
        """Take a slot, waiting up to `timeout_s` (None: without limit) in the queue. Raises Refused."""
        t0 = time.monotonic()  # before the queue shows this request: the wait counted is never shorter than seen
        with self._lock:
            if self._free > 0:
                self._free -= 1
                self._changed()
                return Admitted(0.0)
            if self.queue is not None and len(self._waiting) >= self.queue:
                raise Refused("full", f"{self.slots} requests running and {len(self._waiting)} waiting, "
                                      f"the most it takes; retry later")
            turn = _Turn()
            self._waiting.append(turn)
            self._changed()
        if cancel is not None:
            cancel.add(turn.event.set)
        turn.event.wait(None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - t0)))
        woke = time.monotonic()
        waited = woke - t0
        with self._lock:
            if turn.granted:
                if cancel is None or not cancel.is_set:
                    return Admitted(waited, max(0.0, woke - turn.granted_at))
                self._hand_on()  # cancelled just as the slot came: pass it to the next in line
            else:
                self._waiting.remove(turn)
                self._changed()
        if cancel is not None and cancel.is_set:
            raise Refused("cancelled", f"cancelled while waiting for one of {self.slots} {self.what}")
        bound = f" (queue of {self.queue})" if self.queue is not None else ""
        raise Refused("deadline", f"deadline exceeded after waiting {waited * 1000:.0f} ms for one of "
                                  f"{self.slots} {self.what}{bound}")

    def leave(self) -> None:
        with self._lock:
            self._hand_on()

    def _hand_on(self) -> None:
        if self._waiting:
            turn = self._waiting.popleft()
            turn.granted = True
            turn.granted_at = time.monotonic()
            turn.event.set()
        else:
            self._free += 1
        self._changed()

    def _changed(self) -> None:
        self._on_change(self.slots - self._free, len(self._waiting))
