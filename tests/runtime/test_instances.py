"""A node's instances (bundle.yaml `nodes.<n>.instances`, issue 11 item 1): that many requests run
the node at once, the others wait for an instance in arrival order, a request cancelled or past its
deadline while it waits leaves the queue at once, and the wait comes back as a timing of its own
("queue") beside the run ("model").

Real site servers on loopback (tests.runtime.sitehost): the guard app's `hold` step, every node
at one site, waits while the test holds a file lock and then sleeps a fixed SLEEP_S. Requests are
sent one at a time, each seen in its place (the instance gauges) before the next, with the lock
held: the arrival order is known and the queue is real. The step logs when it ran (monotonic
clock, the same in every process); every bound below follows from those times and the request's
own send and answer times, with no tolerance.
"""

from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
import pytest

from tests.runtime import sitehost
from tests.runtime.sitehost import guard_inputs, infer_request, infer_stub, output

pytestmark = pytest.mark.timeout(120)
SLEEP_S = 0.05
N = 4


@pytest.fixture
def gate(tmp_path):
    g = sitehost.Gate(tmp_path / "gate")
    yield g
    g.open()


def _serve(tmp_path, gate, instances: int):
    out = sitehost.write_app(tmp_path / "app", far="entry", hold_instances=instances)
    times = tmp_path / "times"
    hosted = sitehost.Hosted(out, tmp_path / "sites.log", env={"HOLD_GATE": gate.path, "HOLD_TIMES": str(times),
                                                               "HOLD_SLEEP_S": str(SLEEP_S)})
    return hosted, times


def _at(hosted, busy: int, queued: int):
    def holds() -> bool:
        def gauge(name):
            return hosted.metric("entry", name, site="entry", model="hold")
        return gauge("runtime_instances_busy") == busy and gauge("runtime_instances_queued") == queued
    return holds


def _ran(times) -> dict[int, tuple[float, float]]:
    """{request: (start, end)} of the step's runs (time.monotonic())."""
    runs = {}
    for line in times.read_text().split("\n"):
        if line:
            k, start, end = line.split()
            runs[int(k)] = (float(start), float(end))
    return runs


def _timing(resp, kind: str, field: int = 3) -> float:
    [ms] = [t[field] for t in json.loads(resp.parameters["timings"].string_param) if t[0] == kind and t[1] == "hold"]
    return ms


def _queue_up(hosted, call, gate, instances: int, n: int):
    """n requests, each seen in its place before the next, while the gate holds the first ones in the
    step; then the gate opens. (futures, when each was sent, when each answered, when the gate opened)."""
    sent, done, futures = [], {}, []
    gate.close()
    try:
        for k in range(n):
            sent.append(time.monotonic())
            f = call.future(infer_request("guard", guard_inputs(k)), timeout=60)
            f.add_done_callback(lambda _, k=k: done.setdefault(k, time.monotonic()))
            futures.append(f)
            hosted.wait_for(f"request {k} in its place", _at(hosted, min(k + 1, instances), max(0, k + 1 - instances)))
        opened = time.monotonic()
    finally:
        gate.open()
    for k, f in enumerate(futures):
        np.testing.assert_array_equal(output(f.result(), "y"), guard_inputs(k)["x"])
    return futures, sent, done, opened


@pytest.mark.parametrize("instances", [1, 2])
def test_requests_beyond_the_instances_wait_in_arrival_order(tmp_path, gate, instances):
    hosted, times = _serve(tmp_path, gate, instances)
    try:
        with grpc.insecure_channel(hosted.address("entry")) as ch:
            futures, sent, done, opened = _queue_up(hosted, infer_stub(ch), gate, instances, N)
    finally:
        hosted.stop()
    runs = _ran(times)
    assert sorted(runs) == list(range(N))
    # never more than `instances` runs at once, and that many at once while the gate held them
    edges = sorted([(s, 1) for s, _ in runs.values()] + [(e, -1) for _, e in runs.values()])
    running = np.cumsum([d for _, d in edges])
    assert running.max() == instances
    ends = sorted(e for _, e in runs.values())
    queued = [_timing(f.result(), "queue") for f in futures]
    served = [_timing(f.result(), "model") for f in futures]
    handed = [_timing(f.result(), "queue", 7) for f in futures]
    for k in range(N):
        start, end = runs[k]
        if k < instances:  # an instance was free: no wait, no handover
            assert queued[k] == 0 and handed[k] == 0
        else:  # in the queue before the gate opened, granted once k - instances + 1 earlier runs had ended
            assert (ends[k - instances] - opened) * 1000 <= queued[k] <= (start - sent[k]) * 1000
            assert queued[k] >= SLEEP_S * 1000 * (k // instances)
            # handed on after the run it waited for ended, and running again before its own began
            assert 0 < handed[k] <= min(queued[k], (start - ends[k - instances]) * 1000)
        # the model timing is the run alone: the wait and the run are disjoint within the request
        assert served[k] >= (end - start) * 1000 >= SLEEP_S * 1000
        assert queued[k] + served[k] <= (done[k] - sent[k]) * 1000
    if instances == 1:  # one after another, in the order they came
        assert sorted(runs, key=lambda k: runs[k][0]) == list(range(N))
        assert all(runs[k][0] >= runs[k - 1][1] for k in range(1, N))
        assert ends[-1] - opened >= N * SLEEP_S
    # the k-th waits for k // instances services: 6 of them with one instance, 2 with two
    assert sum(queued) >= SLEEP_S * 1000 * sum(k // instances for k in range(N))


def test_a_request_cancelled_or_past_its_deadline_leaves_the_queue_at_once(tmp_path, gate):
    hosted, times = _serve(tmp_path, gate, 1)
    try:
        with grpc.insecure_channel(hosted.address("entry")) as ch:
            call = infer_stub(ch)
            gate.close()
            try:
                first = call.future(infer_request("guard", guard_inputs(0)), timeout=60)
                hosted.wait_for("the first running", _at(hosted, 1, 0))
                cancelled = call.future(infer_request("guard", guard_inputs(1)), timeout=60)
                hosted.wait_for("the second queued", _at(hosted, 1, 1))
                behind = call.future(infer_request("guard", guard_inputs(2)), timeout=60)
                hosted.wait_for("the third queued", _at(hosted, 1, 2))
                cancelled.cancel()
                hosted.wait_for("the cancelled one out of the queue, the gate still closed", _at(hosted, 1, 1))
                expired = threading.Event()
                late = call.future(infer_request("guard", guard_inputs(3)), timeout=1.0)
                late.add_done_callback(lambda _: expired.set())
                hosted.wait_for("the fourth queued", lambda: _at(hosted, 1, 2)() or expired.is_set())
                assert expired.wait(30)  # its deadline passes while the gate is still closed
                assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                hosted.wait_for("the expired one out of the queue", _at(hosted, 1, 1))
            finally:
                gate.open()
            np.testing.assert_array_equal(output(first.result(), "y"), guard_inputs(0)["x"])
            np.testing.assert_array_equal(output(behind.result(), "y"), guard_inputs(2)["x"])
            hosted.wait_for("idle", _at(hosted, 0, 0))
            waits = hosted.metric("entry", "runtime_queue_wait_seconds_count", site="entry", model="hold")
    finally:
        hosted.stop()
    runs = _ran(times)
    assert sorted(runs, key=lambda k: runs[k][0]) == [0, 2]  # the third ran right after the first
    assert waits == 2  # the two that ran; the two that left the queue are not counted as waits served


def test_a_tvm_node_with_two_instances_runs_two_calls_at_once(tmp_path_factory):
    """Two VMs: two calls are inside the library at the same time (with one VM and a lock the second
    call would wait for the first, and the barrier below would break)."""
    from tests.runtime import fanapp
    from planner_runtime.nodes import TvmNode

    onnx_paths, libs = fanapp.cached_models(tmp_path_factory.getbasetemp().parent / "runtime-models")
    spec = fanapp.graph_bundle({s: 1 for s in fanapp.SITES}, "edge").nodes["a"]
    node = TvmNode("a", libs["a"], spec.inputs, spec.outputs, instances=2)
    together = threading.Barrier(2, timeout=20)
    mains = [node._free.get() for _ in range(2)]
    assert mains[0] is not mains[1]
    for main in mains:
        node._free.put(lambda *args, main=main: (together.wait(), main(*args))[1])
    x = np.random.default_rng(5).standard_normal((1, 64)).astype(np.float32)
    results = [None, None]

    def call(i):
        results[i] = node({"x": x + i})["h"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not together.broken
    reference = fanapp.reference(onnx_paths, tmp_path_factory.mktemp("ref"))
    for i in range(2):
        np.testing.assert_allclose(results[i], reference.runners["a"]({"x": x + i})["h"], rtol=1e-4, atol=1e-5)
