"""Deploy manifests for the site bundles: Kubernetes (a Deployment and a Service per site)
and Docker Compose. Plain dicts dumped as YAML; validated offline by kubernetes-validate
in the tests."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import yaml

RUNTIME_PORT = 8001
METRICS_PORT = 9090
IMAGE = "planner-runtime:latest"  # runtime/Dockerfile; see README "Bundles and deployment"
# edge sites run on KubeEdge nodes; the others on nodes labelled with their tier
EDGE_NODE_LABEL = "node-role.kubernetes.io/edge"
TIER_LABEL = "planner.io/tier"
# the runtime's own heap, gRPC buffers and the python interpreter, beside the models
RUNTIME_BASE_MB = 256


def dns_name(*parts: str) -> str:
    """A DNS-1123 label from the app and site names (Kubernetes object and Service names)."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return name[:63].rstrip("-") or "site"


def service_address(app: str, site: str) -> str:
    return f"{dns_name(app, site)}:{RUNTIME_PORT}"


@dataclass(frozen=True)
class SiteDeploy:
    """What the manifests need of one site of the plan."""

    name: str
    tier: str
    target: str
    replicas: int
    memory_mb: float  # the models' profiled memory on the site
    models: tuple[str, ...]


def _labels(app: str, site: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": dns_name(app), "app.kubernetes.io/component": dns_name(site),
            "app.kubernetes.io/part-of": "planner"}


def _serve_args(site: str, peers: dict[str, str]) -> list[str]:
    # --advertise: the address other sites send this site's results back to
    args = ["serve", f"/bundle/{site}", "--port", str(RUNTIME_PORT), "--metrics-port", str(METRICS_PORT),
            "--advertise", peers[site]]
    for other, address in peers.items():
        if other != site:
            args += ["--peer", f"{other}={address}"]
    return args


def _memory_request_mb(site: SiteDeploy) -> int:
    return int(math.ceil(site.memory_mb + RUNTIME_BASE_MB))


def k8s_site(app: str, site: SiteDeploy, sites: list[str]) -> list[dict]:
    """The Deployment and Service of one site."""
    labels = _labels(app, site.name)
    name = dns_name(app, site.name)
    if site.tier == "edge":
        node_selector = {EDGE_NODE_LABEL: ""}
        tolerations = [{"key": EDGE_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]
    else:
        node_selector = {TIER_LABEL: site.tier}
        tolerations = []
    memory = f"{_memory_request_mb(site)}Mi"
    container = {
        "name": "runtime",
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "planner_runtime"],
        "args": _serve_args(site.name, {o: service_address(app, o) for o in sites}),
        "ports": [{"name": "grpc", "containerPort": RUNTIME_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": {"grpc": {"port": RUNTIME_PORT}, "initialDelaySeconds": 2, "periodSeconds": 5},
        "livenessProbe": {"grpc": {"port": RUNTIME_PORT}, "initialDelaySeconds": 10, "periodSeconds": 10},
        "resources": {"requests": {"memory": memory, "cpu": "1"}, "limits": {"memory": memory}},
        "volumeMounts": [{"name": "bundle", "mountPath": f"/bundle/{site.name}", "readOnly": True}],
    }
    pod_spec: dict = {
        "nodeSelector": node_selector,
        "containers": [container],
        # the bundle (OUT/sites/<site>) is baked into a per-site image or copied to the node
        "volumes": [{"name": "bundle", "hostPath": {"path": f"/opt/planner/{app}/sites/{site.name}",
                                                    "type": "Directory"}}],
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"planner.io/target": site.target,
                                     "planner.io/models": ",".join(site.models)}},
        "spec": {
            "replicas": site.replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels,
                                      "annotations": {"prometheus.io/scrape": "true",
                                                      "prometheus.io/port": str(METRICS_PORT)}},
                         "spec": pod_spec},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": labels,
                 "ports": [{"name": "grpc", "port": RUNTIME_PORT, "targetPort": "grpc", "protocol": "TCP",
                            "appProtocol": "grpc"}]},
    }
    return [deployment, service]


def compose(app: str, sites: list[SiteDeploy], base_port: int = 50051) -> dict:
    """One service per site on one Docker host; sites reach each other by service name."""
    services = {}
    peers = {s.name: f"{dns_name(s.name)}:{RUNTIME_PORT}" for s in sites}  # compose's own DNS names
    for i, site in enumerate(sites):
        services[dns_name(site.name)] = {
            "image": IMAGE,
            "command": ["python", "-m", "planner_runtime"] + _serve_args(site.name, peers),
            "ports": [f"{base_port + i}:{RUNTIME_PORT}"],
            "volumes": [f"../sites/{site.name}:/bundle/{site.name}:ro"],
            "mem_limit": f"{_memory_request_mb(site)}m",
            "restart": "unless-stopped",
        }
    return {"name": dns_name(app), "services": services}


def dump_all(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)
