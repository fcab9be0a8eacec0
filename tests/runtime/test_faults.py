"""Faults across sites: a downstream site down (UNAVAILABLE, not a wait for the deadline), slow
(DEADLINE_EXCEEDED at the deadline: the client's, or the bundle's default), request state cleaned
up, the entry keeps serving and recovers when the site returns.

Real servers (subprocesses on loopback), tritonclient as the client; the slow python step is the
sample app's `glue`, held while a gate file the test creates exists (GLUE_GATE_FILE). No check
depends on how fast this machine is: each is an outcome, a lower bound a deadline sets, one
duration against another, or an order of events; waits for what must eventually happen are
generous (LIVENESS_S) and end as soon as it does.
"""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import refused_ports
from tests.runtime import fanapp

pytestmark = pytest.mark.timeout(180)
DEADLINE_MS = 3000  # the bundles' default deadline
LIVENESS_S = 30.0
DEADLINE_EXCEEDED, UNAVAILABLE = "StatusCode.DEADLINE_EXCEEDED", "StatusCode.UNAVAILABLE"
HANDLED = 'oip_request_duration_seconds_{}{{model="fanapp",site="edge"}}'  # the entry's handling of requests


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    onnx_paths, libs = fanapp.cached_models(tmp_path_factory.getbasetemp().parent / "runtime-models")
    out = tmp_path_factory.mktemp("faults")
    gate = out / "gate"
    env = {"GLUE_GATE_FILE": str(gate)}
    with refused_ports(len(fanapp.SITES)) as unserved:
        fanapp.write_bundles(out, dict(zip(fanapp.SITES, unserved)), libs, deadline_ms=DEADLINE_MS)
        # the entry takes at most 2 requests at a time, and queues none (refused at once beyond that)
        running = fanapp.start_sites({s: out / "sites" / s for s in fanapp.SITES}, out / "run", env=env,
                                     extra={"edge": ["--max-inflight", "2", "--max-queue", "0"]})
        try:
            yield {"out": out, "run": running, "gate": gate, "env": env,
                   "ref": fanapp.reference(onnx_paths, out / "ref")}
        finally:
            running.stop()


X = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)


def _infer(addr, **kw):
    i = triton.InferInput("x", [1, 64], "FP32")
    i.set_data_from_numpy(X)
    return triton.InferenceServerClient(addr).infer("fanapp", [i], **kw)


def _error(addr, **kw) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        _infer(addr, **kw)
    return info.value


def _metric(sites, site, series: str) -> float:
    port = sites["run"].metrics[site]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series + " ")), 0.0)


def _pending(sites, site) -> float:
    return _metric(sites, site, f'runtime_pending_requests{{site="{site}"}}')


def _eventually(pred, timeout=LIVENESS_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _entry_handling_s(sites, call) -> float:
    """How long the entry handled the one request `call` sends (its own histogram, once recorded)."""
    count, total = (_metric(sites, "edge", HANDLED.format(k)) for k in ("count", "sum"))
    call()
    assert _eventually(lambda: _metric(sites, "edge", HANDLED.format("count")) == count + 1)
    return _metric(sites, "edge", HANDLED.format("sum")) - total


def test_slow_site_fails_at_the_deadline_and_the_entry_keeps_serving(sites):
    edge = sites["run"].addr["edge"]
    np.testing.assert_allclose(_infer(edge).as_numpy("out"), sites["ref"].run({"x": X})["out"], atol=1e-4)
    sites["gate"].touch()  # glue (at mec) now waits until the test removes the file
    try:
        # no client deadline: the bundle's default applies, and the entry answers itself at it
        errors = []

        def default_deadline():
            t0 = time.monotonic()
            errors.append(_error(edge))
            errors.append(time.monotonic() - t0)

        default_s = _entry_handling_s(sites, default_deadline)
        e, took = errors
        assert e.status() == DEADLINE_EXCEEDED and "deadline" in e.message(), e.message()
        assert took >= DEADLINE_MS / 1000 - 0.05  # not an earlier failure (load can only add to it)
        # the client's own, shorter deadline travels with the request: the entry gives up at it, sooner
        errors.clear()
        client_s = _entry_handling_s(sites, lambda: errors.append(_error(edge, client_timeout=1.0)))
        assert errors[0].status() == DEADLINE_EXCEEDED
        assert client_s < default_s / 2, (client_s, default_s)  # a third of the default deadline, plus load
        # the entry keeps serving meanwhile (metadata; a local model)
        client = triton.InferenceServerClient(edge)
        assert client.is_server_ready() and client.is_model_ready("fanapp")
        # a burst beyond what the entry takes is turned away at once, not queued: while two
        # requests hold the entry (their glue held at the gate), two more are refused
        held: list[str] = []

        def hold():
            held.append(_error(edge).status())

        holders = [threading.Thread(target=hold) for _ in range(2)]
        for t in holders:
            t.start()
        assert _eventually(lambda: _pending(sites, "edge") == 2)
        refused = [_error(edge, client_timeout=DEADLINE_MS / 1000) for _ in range(2)]
        assert all(t.is_alive() for t in holders)  # the refusals came while both were still held
        assert [e.status() for e in refused] == ["StatusCode.RESOURCE_EXHAUSTED"] * 2, [e.message() for e in refused]
        for t in holders:
            t.join()
        assert held == [DEADLINE_EXCEEDED] * 2
    finally:
        sites["gate"].unlink()
    # state held for the failed requests is dropped everywhere (cloud held q, waiting for r)
    assert _eventually(lambda: all(_pending(sites, s) == 0 for s in fanapp.SITES))
    out = _infer(edge).as_numpy("out")
    np.testing.assert_allclose(out, sites["ref"].run({"x": X})["out"], atol=1e-4)


def test_site_down_unavailable_then_recovers(sites):
    run = sites["run"]
    edge = run.addr["edge"]
    run.procs["cloud"].kill()
    run.procs["cloud"].wait()
    try:
        # UNAVAILABLE naming the site, twice (the second time the channel is in backoff): the entry
        # does not wait for the deadline (a wait would end in DEADLINE_EXCEEDED), and still serves
        for _ in range(2):
            e = _error(edge, client_timeout=30)
            assert e.status() == UNAVAILABLE and "cloud" in e.message(), e.message()
        assert triton.InferenceServerClient(edge).is_server_live()
        assert _eventually(lambda: _pending(sites, "edge") == 0 and _pending(sites, "mec") == 0)
    finally:
        # the site returns at its address: the same ports again (the scenario itself: the others know
        # it there), told the others' addresses by the peers file of the first start
        port = run.addr["cloud"].rsplit(":", 1)[1]
        run.procs["cloud"] = fanapp.start_site(
            sites["out"] / "sites" / "cloud", env=sites["env"], log=run.run_dir / "cloud.log",
            extra=["--port", port, "--metrics-port", str(run.metrics["cloud"]),
                   "--peers-file", str(run.run_dir / "peers.json")])
    fanapp.wait_ready([run.addr["cloud"]], procs=[run.procs["cloud"]])
    recovered = []

    def infer_ok() -> bool:
        try:
            recovered.append(_infer(edge, client_timeout=30).as_numpy("out"))
            return True
        except InferenceServerException:
            return False

    assert _eventually(infer_ok), "the ensemble did not recover after the site's return"
    np.testing.assert_allclose(recovered[0], sites["ref"].run({"x": X})["out"], atol=1e-4)
