"""Runs take this machine's cores in turn (runtime.executor's core gate over runtime.admission's
weighted FIFO): builds that each take every core never run side by side; a request's wait for the
cores is its queue time; the gate lends its cores in arrival order, never to a newcomer first."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from planner_runtime.admission import Admission, Cancellation, Refused
from planner_runtime.bundle_format import NodeSpec, Tensor
from planner_runtime.executor import Executor
from planner_runtime.nodes import cores_taken
from tests.runtime import fanapp

X = np.ones((1, 64), np.float32)


def sleeping_runners(intervals: list, ms: float = 60):
    """The fan app's nodes, each sleeping `ms` and recording (node, start, end)."""

    def node(name, outputs):
        def run(feeds):
            t0 = time.monotonic()
            time.sleep(ms / 1000)
            intervals.append((name, t0, time.monotonic()))
            return outputs(feeds)
        return run

    return {
        "a": node("a", lambda f: {"h": np.zeros((1, 32), np.float32)}),
        "b": node("b", lambda f: {"p": np.zeros((1, 10), np.float32)}),
        "c": node("c", lambda f: {"q": np.zeros((1, 10), np.float32)}),
        "glue": node("glue", lambda f: {"r": f["p"], "label": np.array([b"x"], dtype=object)}),
        "d": node("d", lambda f: {"out": np.zeros((1, 4), np.float32)}),
    }


def overlaps(intervals) -> int:
    """Pairs of runs that were running at the same time."""
    return sum(1 for i, (_, s1, e1) in enumerate(intervals) for _, s2, e2 in intervals[i + 1:]
               if s1 < e2 - 1e-3 and s2 < e1 - 1e-3)


def run_requests(ex: Executor, n: int) -> None:
    threads = [threading.Thread(target=ex.run, args=({"x": X},)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("taken, side_by_side", [(2, False), (1, True)])
def test_builds_that_take_every_core_run_one_after_another(taken, side_by_side):
    bundle = fanapp.graph_bundle({s: 1 for s in fanapp.SITES}, "edge")
    intervals: list = []
    nodes = list(bundle.nodes)
    ex = Executor(bundle, sleeping_runners(intervals), cores=2, cores_taken={n: taken for n in nodes})
    run_requests(ex, 4)
    assert len(intervals) == 4 * len(nodes)
    assert (overlaps(intervals) > 0) == side_by_side
    if not side_by_side:  # one after another: the runs fill the time, nothing left idle
        span = max(e for _, _, e in intervals) - min(s for _, s, _ in intervals)
        assert span >= sum(e - s for _, s, e in intervals) - 0.01


def test_a_nodes_wait_for_the_cores_is_its_queue_time():
    bundle = fanapp.graph_bundle({s: 1 for s in fanapp.SITES}, "edge")
    ex = Executor(bundle, sleeping_runners([], ms=50), cores=1, cores_taken={n: 1 for n in bundle.nodes})
    from planner_runtime.executor import RequestState

    first = threading.Thread(target=ex.run, args=({"x": X},))
    first.start()
    time.sleep(0.02)  # the first request's a holds the one core
    timings: list = []
    ex.advance(RequestState(), ex.source_deliveries({"x": X}), timings)
    first.join()
    queued = {t.name: t.ms for t in timings if t.kind == "queue"}
    assert queued["a"] >= 25  # waited for the first request's a (50 ms, 20 in)


def test_the_cores_go_in_arrival_order_and_a_newcomer_never_overtakes():
    gate = Admission(2, None)
    order = []
    gate.enter(None, weight=2)

    def take(name, weight):
        gate.enter(None, weight=weight)
        order.append(name)
        gate.leave(weight)

    big = threading.Thread(target=take, args=("needs two", 2))
    big.start()
    time.sleep(0.05)
    small = threading.Thread(target=take, args=("needs one", 1))
    small.start()
    time.sleep(0.05)
    gate.leave(2)  # both could start if the small one went first; FIFO: the big one first
    big.join()
    small.join()
    assert order == ["needs two", "needs one"]


def test_a_waiter_that_gives_up_lets_those_behind_it_through():
    gate = Admission(2, None)
    gate.enter(None, weight=1)  # one core free
    cancel = Cancellation()
    got = []
    head = threading.Thread(target=lambda: got.append(_refused(gate, cancel)))
    head.start()  # needs two: waits, and blocks the one behind it
    time.sleep(0.05)
    behind = threading.Thread(target=lambda: got.append(gate.enter(5, weight=1)))
    behind.start()
    time.sleep(0.05)
    assert got == []
    cancel.set()
    head.join(5)
    behind.join(5)
    assert got[0] == "cancelled" and got[1] < 5


def _refused(gate, cancel):
    try:
        gate.enter(None, cancel, weight=2)
    except Refused as exc:
        return exc.reason
    return "entered"


def test_which_nodes_take_cores():
    t = [Tensor(name="x", shape=[1], dtype="float32")]
    onnx = NodeSpec(site="s", kind="onnx", inputs=t, outputs=t, threads=4)
    assert cores_taken(onnx, False, 8) == 4
    assert cores_taken(onnx, False, 2) == 2  # never more than the machine has
    assert cores_taken(onnx.model_copy(update={"threads": None}), False, 8) == 8  # ONNX Runtime's default
    assert cores_taken(onnx.model_copy(update={"provider": "CUDAExecutionProvider"}), False, 8) == 0
    assert cores_taken(NodeSpec(site="s", kind="python", inputs=t, outputs=t, function="f"), False, 8) == 0
