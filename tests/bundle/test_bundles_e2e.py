"""From app.yaml to a served ensemble: `planner solve` profiles and places a fan-out/fan-in app
across three sites and writes the bundles and manifests; the site runtimes serve them on
loopback; tritonclient (a real KServe v2 client) gets the same answer as `planner run` with
ONNX Runtime executing the models (the truth) and with TVM, within 1e-4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import kubernetes_validate
import numpy as np
import pytest
import yaml

from tests import ROOT
from tests.runtime import fanapp

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

GLUE = '''import numpy as np


def glue(p):
    r = (p * 2.0 + 0.5).astype(np.float32)
    label = np.array([b"class-%d" % int(np.argmax(p))], dtype=object)
    return {"r": r, "label": label}
'''

APP = textwrap.dedent("""\
    name: fan
    sites:
      edge:  {tier: edge, target: host, max_replicas: 1}
      mec:   {tier: base-station, target: host, cost_per_hour: 0.4, max_replicas: 2}
      cloud: {tier: cloud, target: c7i-2xlarge, max_replicas: 4}
    links:
      - {between: [edge, mec], bandwidth_mbps: 100, rtt_ms: 5}
      - {between: [mec, cloud], bandwidth_mbps: 1000, rtt_ms: 20, cost_per_gb: 0.05}
    models:
      a: {onnx: models/a.onnx, inputs: {x: [1, 64]}, sites: [edge]}
      b: {onnx: models/b.onnx, inputs: {h: [1, 32]}, sites: [mec]}
      c: {onnx: models/c.onnx, inputs: {h: [1, 32]}, sites: [cloud]}
      glue: {python: glue.py:glue, inputs: {p: [1, 16]}, sites: [mec]}
      d: {onnx: models/d.onnx, inputs: {r: [1, 16], q: [1, 16]}, sites: [cloud]}
    sources: {cam: {site: edge, rate_rps: 5}}
    sinks: {screen: {site: edge}}
    flows:
      - {from: cam, to: a}
      - {from: a, to: b}
      - {from: a, to: c}
      - {from: b, to: glue}
      - {from: glue, output: r, to: d, input: r}
      - {from: c, to: d, input: q}
      - {from: d, to: screen}
      - {from: b, to: screen}
      - {from: glue, output: label, to: screen, bytes: 16}
    constraints: {latency_ms: 5000}
    """)


# bytes of each flow of APP: float32 tensors, and the label's declared 16
FLOW_BYTES = {"cam->a": 256, "a->b": 128, "a->c": 128, "b->glue": 64, "glue->d": 64, "c->d": 64,
              "d->screen": 32, "b->screen": 64, "glue->screen": 16}
SITE_OF = {"cam": "edge", "a": "edge", "b": "mec", "glue": "mec", "c": "cloud", "d": "cloud", "screen": "edge"}


def host_latency_by_hand(model_ms: dict[str, float]) -> tuple[dict[str, float], float, float]:
    """(each flow's ms, the ensemble's latency, the bench client's hop) of APP's placement on this
    machine: a model starts when its last input arrives; a flow across sites takes rtt/2 + bytes
    at the loopback bandwidth, within a site nothing; the latency is the last arrival at the sink."""
    from planner.local.prediction import LOOPBACK_BANDWIDTH_MBPS, LOOPBACK_RTT_MS

    def hop_ms(nbytes: int) -> float:
        return LOOPBACK_RTT_MS / 2 + nbytes * 8 / (LOOPBACK_BANDWIDTH_MBPS * 1e6) * 1000

    transfers = {f: 0.0 if SITE_OF[f.split("->")[0]] == SITE_OF[f.split("->")[1]] else hop_ms(n)
                 for f, n in FLOW_BYTES.items()}
    done = {"cam": 0.0}
    for node in ("a", "b", "c", "glue", "d"):  # in dataflow order
        done[node] = max(done[f.split("->")[0]] + ms for f, ms in transfers.items() if f.endswith(f"->{node}"))
        done[node] += model_ms[node]
    latency = max(done[f.split("->")[0]] + ms for f, ms in transfers.items() if f.endswith("->screen"))
    client = hop_ms(FLOW_BYTES["cam->a"] + sum(n for f, n in FLOW_BYTES.items() if f.endswith("->screen")))
    return transfers, latency, client


def planner(*args, env, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "planner", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    work = tmp_path_factory.mktemp("fan")
    fanapp.make_models(work / "models")
    (work / "glue.py").write_text(GLUE)
    (work / "app.yaml").write_text(APP)
    x = np.random.default_rng(3).standard_normal((1, 64)).astype(np.float32)
    np.save(work / "x.npy", x)
    env = {**os.environ, "PLANNER_CACHE_DIR": str(work / "cache"), "COLUMNS": "200"}
    planner("solve", work / "app.yaml", "-o", work / "out", "--time-limit", "10", env=env)
    return work, env, x


def test_solve_writes_a_bundle_per_site_and_valid_manifests(solved):
    work, _, _ = solved
    out = work / "out"
    assert sorted(p.name for p in (out / "sites").iterdir()) == ["cloud", "edge", "mec"]
    placement = {}
    for site in ("edge", "mec", "cloud"):
        bundle = yaml.safe_load((out / "sites" / site / "bundle.yaml").read_text())
        assert bundle["site"] == site and bundle["app"] == "fan"
        for name, node in bundle["nodes"].items():
            placement[name] = node["site"]
            if node["site"] != site:
                assert node.get("artifact") is None  # only the site's own nodes ship
                continue
            assert (out / "sites" / site / node["artifact"]).is_file()
            if node["kind"] == "tvm":
                target = "host" if site != "cloud" else "c7i-2xlarge"
                assert node["compiled_for"] == target
                assert (node.get("host_fallback") is not None) == (site == "cloud")
    assert placement == {"a": "edge", "b": "mec", "glue": "mec", "c": "cloud", "d": "cloud"}
    assert (out / "sites" / "mec" / "steps" / "glue.py").is_file()
    version = kubernetes_validate.latest_version()
    kinds = {}
    for manifest in sorted((out / "deploy" / "k8s").glob("*.yaml")):
        docs = list(yaml.safe_load_all(manifest.read_text()))
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
        kinds[manifest.stem] = [(d["kind"], d["metadata"]["name"]) for d in docs]
    expected = {s: [("Service", f"fan-{s}"), ("StatefulSet", f"fan-{s}")] for s in ("cloud", "edge", "mec")}
    expected["edge"].append(("Service", "fan"))  # the client Service, beside the entry site (the source's)
    assert kinds == expected
    compose = yaml.safe_load((out / "deploy" / "compose.yaml").read_text())
    assert set(compose["services"]) == {"edge-0", "mec-0", "cloud-0"}  # one replica each


def test_served_ensemble_equals_onnxruntime_and_planner_run(solved):
    import tritonclient.grpc as grpcclient

    work, env, x = solved
    out = work / "out"
    sites = ("edge", "mec", "cloud")
    running = fanapp.start_sites({s: out / "sites" / s for s in sites}, work / "run",
                                 extra={s: ["--host-targets"] for s in sites})
    try:
        client = grpcclient.InferenceServerClient(running.addr["edge"])
        meta = client.get_model_metadata("fan", as_json=True)
        assert [i["name"] for i in meta["inputs"]] == ["cam"]
        inp = grpcclient.InferInput("cam", [1, 64], "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("fan", [inp], client_timeout=60)
        served = {name: result.as_numpy(name) for name in ("out", "p", "label")}
        bench = json.loads(planner("bench", work / "out", "-n", "5", "--json", "--entry", running.addr["edge"],
                                   env=env).stdout)
    finally:
        running.stop()
    planner("run", work / "app.yaml", "--input", f"cam={work / 'x.npy'}", "--engine", "onnxruntime",
            "--save", work / "ort.npz", env=env)
    planner("run", work / "app.yaml", "--input", f"cam={work / 'x.npy'}", "--save", work / "tvm.npz", env=env)
    ort = np.load(work / "ort.npz", allow_pickle=True)
    tvm = np.load(work / "tvm.npz", allow_pickle=True)
    for name in ("out", "p"):
        np.testing.assert_allclose(served[name], ort[name], atol=1e-4, rtol=0)
        np.testing.assert_allclose(tvm[name], ort[name], atol=1e-4, rtol=0)
    assert list(served["label"].ravel()) == list(ort["label"].ravel()) == list(tvm["label"].ravel())
    assert served["label"].ravel()[0].startswith(b"class-")
    # `planner bench` measured the same ensemble beside the placement predicted for this machine
    host = bench["host_prediction"]
    assert host["status"] == "ok" and host["app"] == str((work / "app.yaml").resolve()), host
    assert {m: v["site"] for m, v in host["models"].items()} == {"a": "edge", "b": "mec", "glue": "mec",
                                                                   "c": "cloud", "d": "cloud"}
    assert all(v["provenance"] == "measured" and v["ms"] > 0 for v in host["models"].values())
    # the prediction, by hand from the README's latency rules (loopback links between all sites)
    assert {k: v["bytes"] for k, v in host["transfers"].items()} == FLOW_BYTES
    transfers, ensemble_ms, client_ms = host_latency_by_hand({m: v["ms"] for m, v in host["models"].items()})
    assert {k: v["ms"] for k, v in host["transfers"].items()} == pytest.approx(transfers, abs=1e-3)
    assert host["ensemble_ms"] == pytest.approx(ensemble_ms, abs=0.01)  # rounded per term to the microsecond
    assert host["client_hop_ms"] == pytest.approx(client_ms, abs=1e-3)
    assert bench["host_predicted_ms"] == host["latency_ms"] == pytest.approx(ensemble_ms + client_ms, abs=0.01)
    assert {m["model"]: m["host_ms"] for m in bench["models"]} == {m: v["ms"] for m, v in host["models"].items()}
    p50 = bench["e2e_ms"]["p50"]
    assert bench["error_pct"] == pytest.approx(100 * (p50 - host["latency_ms"]) / host["latency_ms"], abs=0.1)
