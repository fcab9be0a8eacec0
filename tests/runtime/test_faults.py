"""Faults across sites: a downstream site down (UNAVAILABLE, fast), slow (DEADLINE_EXCEEDED within
the deadline), request state cleaned up, the entry keeps serving and recovers when the site returns.

Real servers (subprocesses on loopback), tritonclient as the client; the slow python step is the
sample app's `glue`, told to sleep through a file the test writes (GLUE_SLEEP_FILE).
"""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.runtime import fanapp

pytestmark = pytest.mark.timeout(120)
DEADLINE_MS = 1200  # the bundles' default deadline


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    onnx_paths, libs = fanapp.cached_models(tmp_path_factory.getbasetemp().parent / "runtime-models")
    out = tmp_path_factory.mktemp("faults")
    ports = fanapp.free_ports(6)
    grpc_ports = dict(zip(fanapp.SITES, ports[:3]))
    metrics_ports = dict(zip(fanapp.SITES, ports[3:]))
    fanapp.write_bundles(out, grpc_ports, libs, deadline_ms=DEADLINE_MS)
    slow = out / "slow"
    env = {"GLUE_SLEEP_FILE": str(slow)}
    # the entry takes at most 2 requests at a time, and queues none (refused at once beyond that)
    procs = {s: fanapp.start_site(out / "sites" / s, env=env, metrics_port=metrics_ports[s], log=out / f"{s}.log",
                             extra=["--max-inflight", "2", "--max-queue", "0"] if s == "edge" else None)
             for s in fanapp.SITES}
    state = {"out": out, "procs": procs, "slow": slow, "metrics": metrics_ports, "env": env,
             "addr": {s: f"127.0.0.1:{p}" for s, p in grpc_ports.items()},
             "ref": fanapp.reference(onnx_paths, out / "ref")}
    try:
        fanapp.wait_ready(list(state["addr"].values()), procs=list(procs.values()))
        yield state
    finally:
        fanapp.stop(list(procs.values()))


X = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)


def _infer(addr, **kw):
    i = triton.InferInput("x", [1, 64], "FP32")
    i.set_data_from_numpy(X)
    return triton.InferenceServerClient(addr).infer("fanapp", [i], **kw)


def _timed_error(addr, **kw) -> tuple[InferenceServerException, float]:
    t0 = time.monotonic()
    with pytest.raises(InferenceServerException) as info:
        _infer(addr, **kw)
    return info.value, time.monotonic() - t0


def _pending(sites, site) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{sites['metrics'][site]}/metrics", timeout=5).read().decode()
    line = next(l for l in text.splitlines() if l.startswith("runtime_pending_requests{"))
    return float(line.rsplit(" ", 1)[1])


def _eventually(pred, timeout=5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_slow_site_deadline_exceeded_within_the_deadline(sites):
    edge = sites["addr"]["edge"]
    np.testing.assert_allclose(_infer(edge).as_numpy("out"), sites["ref"].run({"x": X})["out"], atol=1e-4)
    sites["slow"].write_text("2.5")
    try:
        # the client's own deadline (0.6 s) travels with the request
        e, took = _timed_error(edge, client_timeout=0.6)
        assert e.status() == "StatusCode.DEADLINE_EXCEEDED" and took < 0.6 + 0.6
        # no client deadline: the bundle's default (1.2 s) applies, and the entry answers itself
        e, took = _timed_error(edge)
        assert e.status() == "StatusCode.DEADLINE_EXCEEDED", e.message()
        assert DEADLINE_MS / 1000 - 0.1 < took < DEADLINE_MS / 1000 + 0.8  # 2 shared cores: some slack
        assert "deadline" in e.message()
        # the entry keeps serving meanwhile (metadata; a local model)
        client = triton.InferenceServerClient(edge)
        assert client.is_server_ready() and client.is_model_ready("fanapp")
        # a burst beyond what the entry takes is turned away at once, not queued into a deadlock
        codes = []

        def call():
            t0 = time.monotonic()
            try:
                _infer(edge, client_timeout=1.0)
                codes.append(("OK", 0))
            except InferenceServerException as exc:
                codes.append((exc.status(), time.monotonic() - t0))

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(c for c, _ in codes).count("StatusCode.RESOURCE_EXHAUSTED") >= 1, codes
        assert all(took < 0.5 for c, took in codes if c == "StatusCode.RESOURCE_EXHAUSTED")
        assert all(c in ("StatusCode.RESOURCE_EXHAUSTED", "StatusCode.DEADLINE_EXCEEDED") for c, _ in codes)
    finally:
        sites["slow"].unlink()
    # state held for the failed requests is dropped everywhere (cloud held q, waiting for r)
    assert _eventually(lambda: all(_pending(sites, s) == 0 for s in fanapp.SITES), timeout=6)
    out = _infer(edge).as_numpy("out")
    np.testing.assert_allclose(out, sites["ref"].run({"x": X})["out"], atol=1e-4)


def test_site_down_unavailable_fast_then_recovers(sites):
    edge = sites["addr"]["edge"]
    cloud = sites["procs"]["cloud"]
    cloud.kill()
    cloud.wait()
    try:
        e, took = _timed_error(edge, client_timeout=5)
        assert e.status() == "StatusCode.UNAVAILABLE", e.message()
        assert "cloud" in e.message() and took < 1.5
        # again (the channel is now in backoff), and the entry still serves
        e, took = _timed_error(edge, client_timeout=5)
        assert e.status() == "StatusCode.UNAVAILABLE" and took < 1.5
        assert triton.InferenceServerClient(edge).is_server_live()
        assert _eventually(lambda: _pending(sites, "edge") == 0 and _pending(sites, "mec") == 0)
    finally:
        # the site returns on the same port
        sites["procs"]["cloud"] = fanapp.start_site(sites["out"] / "sites" / "cloud", env=sites["env"],
                                               metrics_port=sites["metrics"]["cloud"],
                                               log=sites["out"] / "cloud.log")
    fanapp.wait_ready([sites["addr"]["cloud"]], procs=[sites["procs"]["cloud"]])
    recovered = None
    end = time.monotonic() + 5
    while recovered is None and time.monotonic() < end:
        try:
            recovered = _infer(edge, client_timeout=5).as_numpy("out")
        except InferenceServerException:
            time.sleep(0.2)
    assert recovered is not None, "the ensemble did not recover within 5 s of the site's return"
    np.testing.assert_allclose(recovered, sites["ref"].run({"x": X})["out"], atol=1e-4)
