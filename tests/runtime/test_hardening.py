"""Hostile and unlucky clients of a site (issue 12, items 8, 9, 10 and 13), on real servers on loopback.

- Malformed shapes (huge, negative, overflowing, wrong rank) get INVALID_ARGUMENT and no traceback.
- Cancelled requests free their slot and queue place at once, and the sites downstream drop them.
- `__planner_deliver__` delivers only to sites of the ensemble: no relay, no unbounded series.
- Admission: max-inflight at a time, a bounded FIFO queue behind, RESOURCE_EXHAUSTED beyond it.

The sites run in a `tests.runtime.sitehost` process (ports picked by the system); the far site's
python step stalls while the test holds a file lock, so every "while N requests are stuck" state
is reached by waiting on the sites' own gauges, never by sleeping.
"""

from __future__ import annotations

import select
import socket
import threading

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from tests.runtime import sitehost
from tests.runtime.sitehost import guard_inputs, infer_request, infer_stub, output

pytestmark = pytest.mark.timeout(180)
DELIVER = "__planner_deliver__"
HOLD_FLOW = "source:cam.x->node:hold.x"


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    g = sitehost.Gate(tmp_path_factory.mktemp("gate") / "gate")
    yield g
    g.open()


@pytest.fixture(scope="module")
def sites(tmp_path_factory, gate):
    out = sitehost.write_app(tmp_path_factory.mktemp("guard"))
    hosted = sitehost.Hosted(out, out / "sites.log", env={"HOLD_GATE": gate.path},
                             extra=["--max-inflight", "32", "--max-queue", "64"])
    try:
        yield hosted
    finally:
        gate.open()
        hosted.stop()


@pytest.fixture()
def channel(sites):
    with grpc.insecure_channel(sites.address("entry")) as ch:
        yield ch


def _status(call, req, timeout: float = 30) -> tuple[grpc.StatusCode, str]:
    try:
        call(req, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def _wire(name, datatype, shape, raw=None, **contents):
    """One input tensor: (message, raw bytes or None for typed contents)."""
    t = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(t.contents, field).extend(values)
    return t, raw


def _request(model, tensors):
    req = pb.ModelInferRequest(model_name=model)
    raws = [raw for _, raw in tensors]
    for t, _ in tensors:
        req.inputs.append(t)
    if any(r is not None for r in raws):
        req.raw_input_contents.extend(r or b"" for r in raws)
    return req


def _idle(sites):
    return (sites.metric("entry", "runtime_inflight_requests", site="entry") == 0
            and sites.metric("entry", "runtime_queued_requests", site="entry") == 0)


def _admitted(sites, running, queued):
    return lambda: (sites.metric("entry", "runtime_inflight_requests", site="entry") == running
                    and sites.metric("entry", "runtime_queued_requests", site="entry") == queued)


GOOD_X = np.zeros((1, 64), np.float32).tobytes()
GOOD_TAGS = _wire("tags", "BYTES", [1], b"\x01\x00\x00\x00a")
GOOD_W = _wire("w", "INT8", [1, 2], b"\x01\x02")
MALFORMED = {  # what: (model, tensors) -- each answered INVALID_ARGUMENT naming the tensor
    "a dimension of 2**62+12": ("guard", [_wire("x", "FP32", [2**62 + 12], GOOD_X), GOOD_TAGS, GOOD_W]),
    "2**62+12 BYTES elements": ("guard", [_wire("x", "FP32", [1, 64], GOOD_X), _wire("tags", "BYTES", [2**62 + 12], b""),
                                          GOOD_W]),
    "a product that wraps to 0": ("count", [_wire("tags", "BYTES", [2**62, 4], b""), _wire("w", "INT8", [2**62, 2], b"")]),
    "negative dims, typed": ("guard", [_wire("x", "FP32", [-1, -64], fp32_contents=[0.0] * 64),
                                       _wire("tags", "BYTES", [1], bytes_contents=[b"a"]),
                                       _wire("w", "INT8", [1, 2], int_contents=[1, 2])]),
    "negative dims where -1 is allowed, typed": ("count", [_wire("tags", "BYTES", [-1], bytes_contents=[]),
                                                           _wire("w", "INT8", [-1, 2], int_contents=[1, 2])]),
    "a negative dim where -1 is allowed, raw": ("count", [_wire("tags", "BYTES", [-3], b""), GOOD_W]),
    "2**31 x 2 elements": ("count", [GOOD_TAGS, _wire("w", "INT8", [2**31, 2], b"")]),
    "a value beyond INT8": ("count", [_wire("tags", "BYTES", [1], bytes_contents=[b"a"]),
                                      _wire("w", "INT8", [1, 2], int_contents=[1000, 1])]),
    "rank 3 for [1, 64]": ("guard", [_wire("x", "FP32", [1, 64, 1], GOOD_X), GOOD_TAGS, GOOD_W]),
    "rank 1 for [1, 64]": ("guard", [_wire("x", "FP32", [64], GOOD_X), GOOD_TAGS, GOOD_W]),
}


@pytest.mark.parametrize("what", list(MALFORMED))
def test_malformed_shapes_are_invalid_argument(sites, channel, what):
    model, tensors = MALFORMED[what]
    code, message = _status(infer_stub(channel), _request(model, tensors))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (what, code, message)
    assert "tensor '" in message, message


def test_rank_mismatch_names_shapes(sites, channel):
    for shape in ([1, 64, 1], [64]):
        req = _request("guard", [_wire("x", "FP32", shape, GOOD_X), GOOD_TAGS, GOOD_W])
        code, message = _status(infer_stub(channel), req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and f"shape {shape}, expected [1, 64]" in message, message


def test_huge_names_are_cut_from_the_answer(sites, channel):
    """A 200 kB tensor name echoed whole would overflow gRPC's header limit (the client saw RESOURCE_EXHAUSTED)."""
    req = _request("guard", [_wire("x" * 200_000, "FP32", [1, 64], GOOD_X), GOOD_TAGS, GOOD_W])
    code, message = _status(infer_stub(channel), req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "is not an input" in message and len(message) < 3000


def test_client_errors_leave_no_traceback_and_the_site_serves(sites, channel):
    for model, tensors in MALFORMED.values():
        _status(infer_stub(channel), _request(model, tensors))
    resp = infer_stub(channel)(infer_request("guard", guard_inputs(7)), timeout=30)
    np.testing.assert_array_equal(output(resp, "y"), guard_inputs(7)["x"])
    assert output(resp, "n").tolist() == [2 + 3]
    log = sites.log.read_text()
    assert "Traceback" not in log and "INTERNAL" not in log, log[-3000:]
    assert sites.metric("entry", "oip_requests_total", site="entry", model="guard", code="INTERNAL") == 0


def test_cancelled_requests_free_their_slots_and_far_drops_them(sites, channel, gate):
    """64 calls with no deadline stuck behind a stalled far site, cancelled: nothing stays held."""
    call = infer_stub(channel)

    def far(name, **labels):
        return sites.metric("far", name, site="far", **labels)

    held, cancelled = far("runtime_model_duration_seconds_count", model="hold"), \
        far("oip_requests_total", model=DELIVER, code="CANCELLED")
    gate.close()
    try:
        futures = [call.future(infer_request("guard", guard_inputs(k))) for k in range(64)]
        sites.wait_for("32 running, 32 queued, 32 held at far",
                       lambda: _admitted(sites, 32, 32)() and far("runtime_pending_requests") == 32)
        for f in futures:
            f.cancel()
        sites.wait_for("the entry's slots and queue empty", lambda: _idle(sites))
        # far was told: it drops what it holds while the steps are still stuck (the deadline is 10 min away)
        sites.wait_for("far holds nothing", lambda: far("runtime_pending_requests") == 0)
        fresh = call.future(infer_request("guard", guard_inputs(99)))  # admitted at once, stuck like the others
        sites.wait_for("the fresh request admitted", _admitted(sites, 1, 0))
    finally:
        gate.open()
    resp = fresh.result(timeout=60)
    np.testing.assert_array_equal(output(resp, "y"), guard_inputs(99)["x"])
    # the stuck steps finish into cancelled calls: far sends none of their sinks back to the entry
    sites.wait_for("far's calls all ended", lambda: far("oip_requests_in_progress") == 0)
    ran = far("runtime_model_duration_seconds_count", model="hold") - held
    assert ran >= 33  # the 32 stuck at first (slots freed while cancelling may have let a few more in), the fresh one
    assert far("oip_requests_total", model=DELIVER, code="CANCELLED") - cancelled >= ran - 1
    assert sites.metric("entry", "oip_requests_total", site="entry", model="guard", code="RESOURCE_EXHAUSTED") == 0
    assert [line for line in sites.metrics("entry").splitlines()
            if line.startswith("oip_requests_total") and DELIVER in line and 'code="OK"' not in line] == []


def test_forty_clients_queue_instead_of_being_refused(sites, gate):
    """40 concurrent clients against 32 slots and a queue of 64: 8 wait, none is refused, all answers right."""
    refused = sites.metric("entry", "oip_requests_total", site="entry", model="guard", code="RESOURCE_EXHAUSTED")
    results: dict[int, object] = {}

    def client(k):
        with grpc.insecure_channel(sites.address("entry")) as ch:
            try:
                results[k] = infer_stub(ch)(infer_request("guard", guard_inputs(k)), timeout=120)
            except grpc.RpcError as exc:
                results[k] = exc.code()

    gate.close()
    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(40)]
        for t in threads:
            t.start()
        sites.wait_for("32 running and 8 queued", _admitted(sites, 32, 8))
    finally:
        gate.open()
    for t in threads:
        t.join()
    codes = {k: r for k, r in results.items() if isinstance(r, grpc.StatusCode)}
    assert codes == {}, codes
    for k, resp in results.items():
        np.testing.assert_array_equal(output(resp, "y"), guard_inputs(k)["x"])
    assert sites.metric("entry", "oip_requests_total", site="entry", model="guard", code="RESOURCE_EXHAUSTED") == refused
    sites.wait_for("idle", lambda: _idle(sites))


def test_full_queue_refuses_at_once_and_the_queue_still_drains(sites, channel, gate):
    call = infer_stub(channel)
    gate.close()
    try:
        futures = [call.future(infer_request("guard", guard_inputs(k)), timeout=120) for k in range(96)]
        sites.wait_for("32 running and 64 queued", _admitted(sites, 32, 64))
        for _ in range(3):  # answered while the others still wait: the answer is not a deadline
            code, message = _status(call, infer_request("guard", guard_inputs(0)), 120)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, message)
            assert "32 requests running and 64 waiting" in message, message
        assert _admitted(sites, 32, 64)()
    finally:
        gate.open()
    for k, f in enumerate(futures):
        np.testing.assert_array_equal(output(f.result(), "y"), guard_inputs(k)["x"])
    sites.wait_for("idle", lambda: _idle(sites))


def test_queued_request_leaves_at_its_deadline(sites, channel, gate):
    call = infer_stub(channel)
    expired = sites.metric("entry", "oip_requests_total", site="entry", model="guard", code="DEADLINE_EXCEEDED")
    gate.close()
    try:
        futures = [call.future(infer_request("guard", guard_inputs(k)), timeout=120) for k in range(32)]
        sites.wait_for("32 running", _admitted(sites, 32, 0))
        code, _ = _status(call, infer_request("guard", guard_inputs(0)), 0.5)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        # it left the queue while the 32 still hold their slots, and the site counted a deadline
        sites.wait_for("the queue empty again", _admitted(sites, 32, 0))
        sites.wait_for("counted as DEADLINE_EXCEEDED", lambda: sites.metric(
            "entry", "oip_requests_total", site="entry", model="guard", code="DEADLINE_EXCEEDED") == expired + 1)
    finally:
        gate.open()
    for f in futures:
        f.result()
    sites.wait_for("idle", lambda: _idle(sites))


def test_queue_is_first_come_first_served(tmp_path, gate):
    out = sitehost.write_app(tmp_path / "fifo", hold_instances=1)
    order = tmp_path / "order"
    hosted = sitehost.Hosted(out, out / "sites.log", env={"HOLD_GATE": gate.path, "HOLD_ORDER": str(order)},
                             extra=["--max-inflight", "1", "--max-queue", "3"])
    try:
        with grpc.insecure_channel(hosted.address("entry")) as ch:
            call = infer_stub(ch)
            gate.close()
            try:
                futures = [call.future(infer_request("guard", guard_inputs(0)), timeout=120)]
                hosted.wait_for("the first running", _admitted(hosted, 1, 0))
                for k in (1, 2, 3):  # each one queued before the next is sent: the arrival order is known
                    futures.append(call.future(infer_request("guard", guard_inputs(k)), timeout=120))
                    hosted.wait_for(f"{k} queued", _admitted(hosted, 1, k))
                code, _ = _status(call, infer_request("guard", guard_inputs(4)), 120)
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            finally:
                gate.open()
            for k, f in enumerate(futures):
                np.testing.assert_array_equal(output(f.result(), "y"), guard_inputs(k)["x"])
        assert order.read_text().split() == ["0", "1", "2", "3"]
    finally:
        hosted.stop()


def _deliver(entry: str, flow: str = HOLD_FLOW, rid: str = "r-1"):
    req = pb.ModelInferRequest(model_name=DELIVER, id=rid)
    req.parameters["entry"].string_param = entry
    t = req.inputs.add(name="x", datatype="FP32", shape=[1, 64])
    t.parameters["flow"].string_param = flow
    req.raw_input_contents.append(GOOD_X)
    return req


def test_deliver_is_no_relay(sites):
    """A forward naming an entry outside the ensemble is refused before anything runs or connects."""
    victim = socket.socket()
    victim.bind(("127.0.0.1", 0))  # stays bound and listening: where a relay would connect
    victim.listen(8)
    try:
        with grpc.insecure_channel(sites.address("far")) as ch:
            call = infer_stub(ch)
            code, message = _status(call, _deliver(f"127.0.0.1:{victim.getsockname()[1]}"), 10)
            assert code == grpc.StatusCode.PERMISSION_DENIED, (code, message)
            assert "not the address of a site" in message
            assert select.select([victim], [], [], 0)[0] == [], "the site connected to the address it was given"
            # an address of the ensemble passes that check (and this flow, made up, is refused next)
            code, message = _status(call, _deliver(sites.address("entry"), flow="made-up"), 10)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown flow" in message
            # many distinct addresses add no metric series (nor channels: nothing is dialled)
            series = _series(sites.metrics("far"))
            for port in range(40000, 40050):
                assert _status(call, _deliver(f"10.0.0.1:{port}"), 10)[0] == grpc.StatusCode.PERMISSION_DENIED
            after = sites.metrics("far")
            assert _series(after) == series
            assert "10.0.0.1" not in after
    finally:
        victim.close()


def test_deliver_takes_only_what_is_for_this_site(sites):
    """Sink tensors only for a request waiting at this entry; node tensors only for nodes here."""
    far = sites.address("far")
    with grpc.insecure_channel(far) as ch:
        # far named as the entry of its own request: hold runs, its sink tensor is refused, no loop
        code, message = _status(infer_stub(ch), _deliver(far, rid="loop"))
        assert code == grpc.StatusCode.NOT_FOUND and "not pending at this entry" in message, (code, message)
        sink = _deliver(far, flow="node:hold.y->sink:screen.y", rid="no-such-request")
        assert _status(infer_stub(ch), sink)[0] == grpc.StatusCode.NOT_FOUND
    sites.wait_for("far holds nothing", lambda: sites.metric("far", "runtime_pending_requests", site="far") == 0)
    with grpc.insecure_channel(sites.address("entry")) as ch:  # hold's input, sent to the entry
        code, message = _status(infer_stub(ch), _deliver(far))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "ends at site far" in message, (code, message)


def _series(metrics_text: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in metrics_text.splitlines() if line and not line.startswith("#")}


def test_channel_cache_keeps_the_latest_addresses_and_closes_the_rest():
    from planner_runtime.channels import ChannelCache

    def same(b):
        return b

    cache = ChannelCache([], "/x/y", same, same, cap=2)
    a, b = cache.call("127.0.0.1:1"), cache.call("127.0.0.1:2")
    assert cache.call("127.0.0.1:1") is a  # reused, and now the most recent
    cache.call("127.0.0.1:3")
    assert cache.addresses() == ["127.0.0.1:1", "127.0.0.1:3"]
    with pytest.raises(ValueError, match="closed channel"):
        b(b"", timeout=1)
    cache.close()
    with pytest.raises(ValueError, match="closed channel"):
        a(b"", timeout=1)
