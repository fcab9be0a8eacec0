"""Deploy manifests validate offline against the Kubernetes schemas (strict: typos fail)."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from planner.bundle import manifests
from planner.bundle.manifests import SiteDeploy

VERSION = kubernetes_validate.latest_version()
SITES = [
    SiteDeploy(name="phone", tier="edge", target="rpi5", replicas=1, memory_mb=120.5, models=("preprocess",)),
    SiteDeploy(name="mec", tier="base-station", target="xeon-d", replicas=3, memory_mb=900, models=("det", "cls")),
    SiteDeploy(name="cloud", tier="cloud", target="c7i-2xlarge", replicas=2, memory_mb=0, models=()),
]
NAMES = [s.name for s in SITES]


@pytest.mark.parametrize("site", SITES, ids=NAMES)
def test_k8s_manifests_validate_strictly(site):
    docs = list(yaml.safe_load_all(manifests.dump_all(manifests.k8s_site("OCR_app", site, NAMES))))
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)
    deployment, service = docs
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == site.replicas
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == f"ocr-app-{site.name}"
    if site.tier == "edge":
        assert spec["nodeSelector"] == {"node-role.kubernetes.io/edge": ""}
    else:
        assert spec["nodeSelector"] == {"planner.io/tier": site.tier}
    container = spec["containers"][0]
    assert container["readinessProbe"]["grpc"]["port"] == manifests.RUNTIME_PORT
    expected_mb = int(-(-(site.memory_mb + manifests.RUNTIME_BASE_MB) // 1))
    assert container["resources"]["requests"]["memory"] == f"{expected_mb}Mi"
    args = container["args"]
    assert args[args.index("--advertise") + 1] == f"ocr-app-{site.name}:{manifests.RUNTIME_PORT}"
    peers = [a for a in args if "=" in a]
    assert sorted(peers) == sorted(f"{o}=ocr-app-{o}:{manifests.RUNTIME_PORT}" for o in NAMES if o != site.name)


def test_strict_validation_catches_a_typo():
    deployment, _ = manifests.k8s_site("ocr", SITES[0], NAMES)
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSION, strict=True)


def test_compose_has_a_service_per_site_with_peers_by_service_name():
    doc = manifests.compose("ocr", SITES, base_port=50051)
    assert list(doc["services"]) == NAMES
    for i, site in enumerate(SITES):
        svc = doc["services"][site.name]
        assert svc["ports"] == [f"{50051 + i}:{manifests.RUNTIME_PORT}"]
        cmd = svc["command"]
        assert cmd[:4] == ["python", "-m", "planner_runtime", "serve"]
        assert {a for a in cmd if "=" in a} == {f"{o}={o}:{manifests.RUNTIME_PORT}" for o in NAMES if o != site.name}
        assert cmd[cmd.index("--advertise") + 1] == f"{site.name}:{manifests.RUNTIME_PORT}"
