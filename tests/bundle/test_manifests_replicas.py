"""The Kubernetes manifests run a working ensemble when sites have several replicas (issue 11).

Each pod of each StatefulSet is started as one runtime process with the exact command and args
its container gets; only what the cluster provides is played here: `$(POD_NAME)` is the pod's
name (the downward API), a pod's DNS name under its headless Service is a loopback port of its
own, the bundle mount is the site's folder, and the metrics port is one the OS picks. Requests go,
with tritonclient, to the pods the client Service selects, in turn (as a Service spreads its
clients' connections). The fan-in `d` (cloud) takes `r` from mec and `q` from cloud's own `c`:
with the cloud site at 2 replicas behind one Service, as the manifests had it, the two inputs of a
request could meet in different pods; here they must meet in the replica its entry picked, and the
answers are ONNX Runtime's. (No planner_runtime.proto in this process: its stubs clash with
tritonclient's.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import yaml

from planner.bundle import manifests
from planner.bundle.manifests import SiteDeploy
from tests import ROOT
from tests.conftest import refused_ports
from tests.runtime import fanapp

pytestmark = pytest.mark.timeout(180)
DELIVER = "__planner_deliver__"
SITES = [SiteDeploy(name="edge", tier="edge", target="host", replicas=2, memory_mb=10, models=("a",), entry=True),
         SiteDeploy(name="mec", tier="base-station", target="host", replicas=1, memory_mb=10, models=("b", "glue")),
         SiteDeploy(name="cloud", tier="cloud", target="host", replicas=2, memory_mb=10, models=("c", "d"))]


def _docs() -> list[dict]:
    """Every object of deploy/k8s/, as a cluster would read it."""
    return [doc for site in SITES
            for doc in yaml.safe_load_all(manifests.dump_all(manifests.k8s_site(fanapp.APP, site, SITES)))]


def _pods(docs: list[dict]) -> list[dict]:
    """The pods the StatefulSets make: name, labels, container, DNS name under the headless Service."""
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    pods = []
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        template = sts["spec"]["template"]
        governing = services[sts["spec"]["serviceName"]]
        # a pod has a DNS name only under a headless Service selecting it
        assert governing["spec"]["clusterIP"] == "None"
        assert governing["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        for i in range(sts["spec"]["replicas"]):
            name = f"{sts['metadata']['name']}-{i}"
            pods.append({"name": name, "labels": template["metadata"]["labels"],
                         "container": template["spec"]["containers"][0],
                         "dns": f"{name}.{governing['metadata']['name']}"})
    return pods


def _command(pod: dict, port: dict[str, int], out, run_dir) -> list[str]:
    """The container's command and args, the cluster's parts played on loopback."""
    container = pod["container"]
    env = {}
    for var in container.get("env", []):
        assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", var  # the only one played here
        env[var["name"]] = pod["name"]
    mounts = {m["mountPath"]: out / "sites" / m["mountPath"].rsplit("/", 1)[1] for m in container["volumeMounts"]}

    def resolve(address: str) -> str:
        host, _, p = address.rpartition(":")
        assert int(p) == manifests.RUNTIME_PORT and host in port, f"{address}: the name of no pod's gRPC port"
        return f"127.0.0.1:{port[host]}"

    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    for i, a in enumerate(args[:-1]):
        value = args[i + 1]
        if a == "--advertise":
            args[i + 1] = resolve(value)
        elif a == "--peer":
            site, _, addresses = value.partition("=")
            args[i + 1] = f"{site}={','.join(resolve(x) for x in addresses.split(','))}"
        elif a == "--port":
            assert int(value) == manifests.RUNTIME_PORT
            args[i + 1] = str(port[pod["dns"]])
        elif a == "--metrics-port":
            args[i + 1] = "0"  # told back in the port file
        elif value in mounts:
            args[i + 1] = str(mounts[value])
    assert container["command"][0] == "python"
    return [sys.executable, *container["command"][1:], *args, "--host", "127.0.0.1",
            "--port-file", str(run_dir / f"{pod['name']}.ports.json")]


def _metric(port: int, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))) == labels:
            return float(m.group(2))
    return 0.0


def _metrics_port(port_file) -> int:
    end = time.monotonic() + 30
    while True:
        try:
            return json.loads(port_file.read_text())["metrics_port"]
        except (OSError, ValueError, KeyError):
            assert time.monotonic() < end, f"no {port_file}"
            time.sleep(0.1)


def test_every_replica_of_the_manifests_serves_and_a_fan_in_meets_in_one(tmp_path):
    import tritonclient.grpc as triton

    docs = _docs()
    pods = _pods(docs)
    assert [p["name"] for p in pods] == ["fanapp-edge-0", "fanapp-edge-1", "fanapp-mec-0", "fanapp-cloud-0",
                                         "fanapp-cloud-1"]
    client_service = next(d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") != "None")
    entry_pods = [p for p in pods if client_service["spec"]["selector"].items() <= p["labels"].items()]
    assert [p["name"] for p in entry_pods] == ["fanapp-edge-0", "fanapp-edge-1"]

    onnx_paths = fanapp.make_models(tmp_path / "onnx")
    out, run_dir = tmp_path / "out", tmp_path / "run"
    run_dir.mkdir()
    procs = []
    with refused_ports(len(fanapp.SITES)) as unserved, refused_ports(len(pods), servable=True) as ports:
        fanapp.write_bundles(out, dict(zip(fanapp.SITES, unserved)), {}, onnx_paths, kind="onnx")
        port = {p["dns"]: n for p, n in zip(pods, ports)}
        try:
            for pod in pods:
                with open(run_dir / f"{pod['name']}.log", "wb") as log:
                    procs.append(subprocess.Popen(_command(pod, port, out, run_dir), stdout=log,
                                                  stderr=subprocess.STDOUT, cwd=ROOT))
            fanapp.wait_ready([f"127.0.0.1:{n}" for n in ports], timeout=120, procs=procs)
            reference = fanapp.reference(onnx_paths, tmp_path / "ref")
            rng = np.random.default_rng(17)
            for i in range(8):
                x = rng.standard_normal((1, 64)).astype(np.float32)
                # a Service hands each new connection to one of its pods: here in turn
                client = triton.InferenceServerClient(f"127.0.0.1:{port[entry_pods[i % 2]['dns']]}")
                inp = triton.InferInput("x", [1, 64], "FP32")
                inp.set_data_from_numpy(x)
                result = client.infer(fanapp.APP, [inp])
                expect = reference.run({"x": x})
                np.testing.assert_allclose(result.as_numpy("out"), expect["out"], atol=1e-4, rtol=0)
                np.testing.assert_allclose(result.as_numpy("p"), expect["p"], atol=1e-4, rtol=0)
                assert result.as_numpy("label").tolist() == expect["label"].tolist()
                client.close()
            metrics = {p["name"]: _metrics_port(run_dir / f"{p['name']}.ports.json") for p in pods}
            served = {name: _metric(m, "oip_requests_total", site=name.split("-")[1], model=fanapp.APP, code="OK")
                      for name, m in metrics.items()}
            assert served == {"fanapp-edge-0": 4, "fanapp-edge-1": 4, "fanapp-mec-0": 0, "fanapp-cloud-0": 0,
                              "fanapp-cloud-1": 0}
            # each entry pod spreads its requests over cloud's replicas: d ran in both, once a request
            assert [_metric(metrics[f"fanapp-cloud-{i}"], "runtime_model_duration_seconds_count", site="cloud",
                            model="d") for i in (0, 1)] == [4, 4]
            assert _metric(metrics["fanapp-mec-0"], "runtime_model_duration_seconds_count", site="mec",
                           model="glue") == 8
            # sinks came back to the pod each request entered: from mec and from cloud, twice a request
            assert [_metric(metrics[f"fanapp-edge-{i}"], "oip_requests_total", site="edge", model=DELIVER,
                            code="OK") for i in (0, 1)] == [8, 8]
        finally:
            fanapp.stop(procs)
