"""Deploy manifests for the site bundles: Kubernetes and Docker Compose. Plain dicts dumped as
YAML; validated offline by kubernetes-validate in the tests.

Every replica of a site is a process with an address of its own, as under `planner up`: all of a
request's tensors bound for a site must reach one process (a node whose inputs come from two sites
meets them there), and its sink tensors come back to the entry replica that holds the request. The
entry replica picks one replica of every other site per request and sends that route along with its
forwards (runtime balance.py); every runtime is told each replica of every site (`--peer
SITE=A,B,...`, the only addresses it delivers to) and its own address (`--advertise`). A Service
spreading connections over a site's pods would split a request's tensors, so none stands between
sites:

- Kubernetes: a StatefulSet per site and a headless Service of the same name, which gives each pod
  a stable DNS name, `<app>-<site>-<i>.<app>-<site>`; a pod advertises its own (its pod name from
  the downward API). One ordinary Service, `<app>`, spreads clients over the pods of the entry
  site (a site hosting a source): any replica takes any request and balances the rest.
- Compose: a service per replica, `<site>-<i>`.
"""

from __future__ import annotations

import hashlib
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
ENTRY_LABEL = "planner.io/entry"  # on the pods of the entry site: the client Service selects them
# the runtime's own heap, gRPC buffers and the python interpreter, beside the models
RUNTIME_BASE_MB = 256
# a StatefulSet labels its pods controller-revision-hash=<name>-<10 characters>, at most 63
MAX_STATEFULSET_NAME = 52


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 label from the app and site names (Kubernetes object and Service names). A longer
    one keeps its start and ends with a hash of the whole: cut names stay apart."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-") or "site"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[:limit - len(digest) - 1].rstrip('-')}-{digest}"


def object_name(app: str, site: str) -> str:
    """The name of a site's StatefulSet and of its headless Service."""
    return dns_name(app, site, limit=MAX_STATEFULSET_NAME)


def client_service(app: str) -> str:
    """The Service clients call: the entry site's replicas."""
    return dns_name(app)


def compose_service(site: str, replica: int) -> str:
    return dns_name(site, str(replica))


@dataclass(frozen=True)
class SiteDeploy:
    """What the manifests need of one site of the plan."""

    name: str
    tier: str
    target: str
    replicas: int
    memory_mb: float  # the models' profiled memory on the site
    models: tuple[str, ...]
    entry: bool = False  # it hosts a source: clients send requests to it


def pod_addresses(app: str, site: SiteDeploy) -> list[str]:
    """Each replica's address in Kubernetes: its pod's name under the site's headless Service."""
    name = object_name(app, site.name)
    return [f"{name}-{i}.{name}:{RUNTIME_PORT}" for i in range(site.replicas)]


def name_clash(app: str, sites: list[SiteDeploy]) -> tuple[str | None, str, str] | None:
    """Two sites given the same name in the manifests, as (site or None for the client Service,
    other site, the name); None when every name is distinct."""
    objects: dict[str, str | None] = {client_service(app): None}
    files: dict[str, str | None] = {}  # deploy/k8s/<name>.yaml and the Compose services' stem
    for site in sites:
        for taken, name in ((objects, object_name(app, site.name)), (files, dns_name(site.name))):
            if name in taken:
                return taken[name], site.name, name
            taken[name] = site.name
    return None


def _labels(app: str, site: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": dns_name(app), "app.kubernetes.io/component": dns_name(site),
            "app.kubernetes.io/part-of": "planner"}


def _serve_args(site: str, advertise: str, peers: dict[str, list[str]]) -> list[str]:
    # --advertise: where the other sites send back the sink tensors of requests entering here;
    # --peer for every site, this one included: the replicas a forward may name as its entry or route
    args = ["serve", f"/bundle/{site}", "--port", str(RUNTIME_PORT), "--metrics-port", str(METRICS_PORT),
            "--advertise", advertise]
    for other, addresses in peers.items():
        args += ["--peer", f"{other}={','.join(addresses)}"]
    return args


def _memory_request_mb(site: SiteDeploy) -> int:
    return int(math.ceil(site.memory_mb + RUNTIME_BASE_MB))


def _grpc_port(**extra) -> dict:
    return {"name": "grpc", "port": RUNTIME_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc",
            **extra}


def k8s_site(app: str, site: SiteDeploy, sites: list[SiteDeploy]) -> list[dict]:
    """The headless Service and the StatefulSet of one site; for the first entry site, the client Service too."""
    labels = _labels(app, site.name)
    name = object_name(app, site.name)
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
        # Kubernetes puts the pod's name in $(POD_NAME): `<name>-<i>`, as in every site's peer list
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "args": _serve_args(site.name, f"$(POD_NAME).{name}:{RUNTIME_PORT}",
                            {s.name: pod_addresses(app, s) for s in sites}),
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
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        # a pod's name resolves as soon as it has an address, not once ready: a name looked up too
        # early would stay unknown for as long as DNS caches the miss; the runtime passes over a
        # replica that refuses its calls
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels,
                 "ports": [_grpc_port()]},
    }
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"planner.io/target": site.target,
                                     "planner.io/models": ",".join(site.models)}},
        "spec": {
            "serviceName": name,
            "replicas": site.replicas,
            "podManagementPolicy": "Parallel",  # replicas are alike: start them together, not one by one
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": {**labels, ENTRY_LABEL: "true"} if site.entry else labels,
                                      "annotations": {"prometheus.io/scrape": "true",
                                                      "prometheus.io/port": str(METRICS_PORT)}},
                         "spec": pod_spec},
        },
    }
    docs = [headless, stateful_set]
    if site.entry and site.name == next(s.name for s in sites if s.entry):
        docs.append(_client_service(app))
    return docs


def _client_service(app: str) -> dict:
    """Clients' way in: spread over the entry site's pods (each entry pod holds the requests it takes)."""
    labels = {"app.kubernetes.io/name": dns_name(app), "app.kubernetes.io/part-of": "planner"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": client_service(app), "labels": labels},
            "spec": {"selector": {**labels, ENTRY_LABEL: "true"}, "ports": [_grpc_port()]}}


def _host_ports(sites: list[SiteDeploy], base_port: int) -> dict[str, list[int]]:
    """Where each replica's gRPC port is published, as `planner up` lays them out: replica 0 of the
    i-th site at base_port + i, further replicas on the ports after those, site by site."""
    after = base_port + len(sites)
    ports = {}
    for i, site in enumerate(sites):
        ports[site.name] = [base_port + i, *range(after, after + site.replicas - 1)]
        after += site.replicas - 1
    return ports


def compose(app: str, sites: list[SiteDeploy], base_port: int = 50051) -> dict:
    """A service per replica on one Docker host, `<site>-<i>`; they reach each other by service name."""
    services = {}
    peers = {s.name: [f"{compose_service(s.name, i)}:{RUNTIME_PORT}" for i in range(s.replicas)] for s in sites}
    host_ports = _host_ports(sites, base_port)
    for site in sites:
        for i, address in enumerate(peers[site.name]):
            services[compose_service(site.name, i)] = {
                "image": IMAGE,
                "command": ["python", "-m", "planner_runtime"] + _serve_args(site.name, address, peers),
                "ports": [f"{host_ports[site.name][i]}:{RUNTIME_PORT}"],
                "volumes": [f"../sites/{site.name}:/bundle/{site.name}:ro"],
                "mem_limit": f"{_memory_request_mb(site)}m",
                "restart": "unless-stopped",
            }
    return {"name": dns_name(app), "services": services}


def dump_all(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)
