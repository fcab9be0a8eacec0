"""Site servers on loopback (3 subprocesses), called with tritonclient (a real KServe v2 client).

This process never imports planner_runtime.proto (its stubs clash with tritonclient's): the servers
run in subprocesses, and only tritonclient, grpc health and reflection are used here.
"""

from __future__ import annotations

import json
import threading
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import refused_ports
from tests.runtime import fanapp

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return fanapp.cached_models(tmp_path_factory.getbasetemp().parent / "runtime-models")


@pytest.fixture(scope="module")
def sites(models, tmp_path_factory):
    onnx_paths, libs = models
    out = tmp_path_factory.mktemp("out")
    with refused_ports(len(fanapp.SITES)) as unserved:
        fanapp.write_bundles(out, dict(zip(fanapp.SITES, unserved)), libs)
        running = fanapp.start_sites({s: out / "sites" / s for s in fanapp.SITES}, out / "run")
        try:
            yield {"addr": running.addr, "metrics": running.metrics,
                   "ref": fanapp.reference(onnx_paths, out / "ref"), "onnx": onnx_paths}
        finally:
            running.stop()


def _input(x, name="x", datatype="FP32"):
    i = triton.InferInput(name, list(x.shape), datatype)
    i.set_data_from_numpy(x)
    return i


def _error(fn) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        fn()
    return info.value


def test_ensemble_through_three_sites_equals_onnxruntime(sites):
    client = triton.InferenceServerClient(sites["addr"]["edge"])
    rng = np.random.default_rng(11)
    for _ in range(5):
        x = rng.standard_normal((1, 64)).astype(np.float32)
        result = client.infer("fanapp", [_input(x)], request_id="r-1")
        expect = sites["ref"].run({"x": x})
        np.testing.assert_allclose(result.as_numpy("out"), expect["out"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(result.as_numpy("p"), expect["p"], atol=1e-4, rtol=0)
        assert result.as_numpy("label").tolist() == expect["label"].tolist()  # a BYTES tensor
    resp = result.get_response()
    assert resp.id == "r-1"
    timings = json.loads(resp.parameters["timings"].string_param)
    ran = {(t[1], t[2]) for t in timings if t[0] == "model"}
    assert ran == {("a", "edge"), ("b", "mec"), ("glue", "mec"), ("c", "cloud"), ("d", "cloud")}
    hops = {t[1] for t in timings if t[0] == "hop"}
    assert hops == {"edge->mec", "edge->cloud", "mec->cloud", "mec->edge", "cloud->edge"}
    # only the outputs asked for
    only = client.infer("fanapp", [_input(x)], outputs=[triton.InferRequestedOutput("out")])
    assert only.as_numpy("p") is None and only.as_numpy("out") is not None


def test_concurrent_requests(sites):
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(24)]
    results, errors = {}, []

    def worker(k):
        client = triton.InferenceServerClient(sites["addr"]["edge"])
        for i in range(k, len(xs), 6):
            try:
                results[i] = client.infer("fanapp", [_input(xs[i])]).as_numpy("out")
            except Exception as exc:  # collected, asserted below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, x in enumerate(xs):
        np.testing.assert_allclose(results[i], sites["ref"].run({"x": x})["out"], atol=1e-4, rtol=0)


def test_metadata_readiness_and_single_models(sites):
    edge = triton.InferenceServerClient(sites["addr"]["edge"])
    mec = triton.InferenceServerClient(sites["addr"]["mec"])
    assert edge.is_server_live() and edge.is_server_ready()
    assert edge.get_server_metadata().name == "planner-runtime"
    meta = edge.get_model_metadata("fanapp")
    assert meta.platform == "planner_ensemble"
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [("x", "FP32", [1, 64])]
    assert [(o.name, o.datatype) for o in meta.outputs] == [("out", "FP32"), ("p", "FP32"), ("label", "BYTES")]
    assert edge.is_model_ready("fanapp") and edge.is_model_ready("a")
    assert not edge.is_model_ready("b") and mec.is_model_ready("b")
    assert not mec.is_model_ready("fanapp")  # no source at mec: the ensemble enters at edge
    assert mec.get_model_metadata("glue").platform == "python"
    assert mec.get_model_metadata("b").platform == "tvm"
    # one node served alone (TVM-compiled b) equals ONNX Runtime's b
    import onnxruntime as ort

    h = np.abs(np.random.default_rng(2).standard_normal((1, 32))).astype(np.float32)
    got = mec.infer("b", [_input(h, "h")]).as_numpy("p")
    want = ort.InferenceSession(str(sites["onnx"]["b"]), providers=["CPUExecutionProvider"]).run(None, {"h": h})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_health_and_reflection(sites):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(sites["addr"]["cloud"]) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                               timeout=5))
        names = {s.name for s in reply.list_services_response.service}
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


def test_bad_input_is_invalid_argument_naming_the_tensor(sites):
    client = triton.InferenceServerClient(sites["addr"]["edge"])
    x = np.zeros((1, 64), np.float32)
    e = _error(lambda: client.infer("fanapp", [_input(np.zeros((1, 63), np.float32))]))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and "'x'" in e.message() and "shape [1, 63]" in e.message()
    e = _error(lambda: client.infer("fanapp", [_input(x.astype(np.float64), datatype="FP64")]))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and "'x'" in e.message() and "FP64" in e.message()
    short = _input(np.zeros((1, 60), np.float32))
    short.set_shape([1, 64])  # declared shape and content disagree
    e = _error(lambda: client.infer("fanapp", [short]))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and "'x'" in e.message() and "240 bytes" in e.message()
    e = _error(lambda: client.infer("fanapp", [_input(x, name="y")]))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and "'y'" in e.message()
    e = _error(lambda: client.infer("nope", [_input(x)]))
    assert e.status() == "StatusCode.NOT_FOUND" and "'nope'" in e.message()
    e = _error(lambda: client.get_model_metadata("nope"))
    assert e.status() == "StatusCode.NOT_FOUND"
    # and it keeps serving
    assert client.infer("fanapp", [_input(x)]).as_numpy("out").shape == (1, 8)


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_prometheus_metrics_per_model_and_hop(sites):
    client = triton.InferenceServerClient(sites["addr"]["edge"])
    client.infer("fanapp", [_input(np.ones((1, 64), np.float32))])
    # a bad request of its own: the count must not rest on another test of the module having sent one
    _error(lambda: client.infer("fanapp", [_input(np.ones((1, 63), np.float32))]))
    edge, mec = _scrape(sites["metrics"]["edge"]), _scrape(sites["metrics"]["mec"])
    assert 'runtime_model_duration_seconds_count{model="a",site="edge"}' in edge
    assert 'runtime_hop_duration_seconds_count{dst_site="mec",src_site="edge"}' in edge
    assert 'oip_requests_total{code="OK",model="fanapp",site="edge"}' in edge
    assert 'oip_requests_total{code="INVALID_ARGUMENT",model="fanapp",site="edge"}' in edge
    assert 'runtime_model_duration_seconds_count{model="glue",site="mec"}' in mec
    assert 'runtime_hop_bytes_total{dst_site="cloud",src_site="mec"}' in mec
    assert wait_for_metric(sites["metrics"]["mec"], 'runtime_pending_requests{site="mec"} 0.0')


def wait_for_metric(port: int, line: str, timeout: float = 30.0) -> bool:
    """Whether the line shows up in the site's metrics within the timeout (state is dropped after answers)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if line in _scrape(port):
            return True
        time.sleep(0.1)
    return False
