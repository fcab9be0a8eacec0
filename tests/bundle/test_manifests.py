"""Deploy manifests validate offline against the Kubernetes schemas (strict: typos fail), and name
every replica of every site: a StatefulSet and a headless Service per site, each pod advertising its
own DNS name, one Service for clients in front of the entry site. That these args run a working
ensemble is tests/bundle/test_manifests_replicas.py."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from planner.bundle import manifests
from planner.bundle.manifests import SiteDeploy

VERSION = kubernetes_validate.latest_version()
SITES = [
    SiteDeploy(name="phone", tier="edge", target="rpi5", replicas=1, memory_mb=120.5, models=("preprocess",),
               entry=True),
    SiteDeploy(name="mec", tier="base-station", target="xeon-d", replicas=3, memory_mb=900, models=("det", "cls")),
    SiteDeploy(name="cloud", tier="cloud", target="c7i-2xlarge", replicas=2, memory_mb=0, models=()),
]
NAMES = [s.name for s in SITES]
PORT = manifests.RUNTIME_PORT


def _pods(site: SiteDeploy) -> list[str]:
    return [f"ocr-app-{site.name}-{i}.ocr-app-{site.name}:{PORT}" for i in range(site.replicas)]


@pytest.mark.parametrize("site", SITES, ids=NAMES)
def test_k8s_manifests_validate_strictly(site):
    docs = list(yaml.safe_load_all(manifests.dump_all(manifests.k8s_site("OCR_app", site, SITES))))
    assert [d["kind"] for d in docs] == ["Service", "StatefulSet"] + (["Service"] if site.entry else [])
    for doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)
    headless, stateful = docs[:2]
    spec = stateful["spec"]["template"]["spec"]
    assert stateful["spec"]["replicas"] == site.replicas
    assert stateful["metadata"]["name"] == headless["metadata"]["name"] == stateful["spec"]["serviceName"] \
        == f"ocr-app-{site.name}"
    assert headless["spec"]["clusterIP"] == "None"
    if site.tier == "edge":
        assert spec["nodeSelector"] == {"node-role.kubernetes.io/edge": ""}
    else:
        assert spec["nodeSelector"] == {"planner.io/tier": site.tier}
    container = spec["containers"][0]
    assert container["readinessProbe"]["grpc"]["port"] == PORT
    expected_mb = int(-(-(site.memory_mb + manifests.RUNTIME_BASE_MB) // 1))
    assert container["resources"]["requests"]["memory"] == f"{expected_mb}Mi"
    args = container["args"]
    # each pod its own name: $(POD_NAME) is the downward API's pod name, <statefulset>-<i>
    assert args[args.index("--advertise") + 1] == f"$(POD_NAME).ocr-app-{site.name}:{PORT}"
    assert container["env"] == [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    peers = [args[i + 1] for i, a in enumerate(args) if a == "--peer"]
    assert peers == [f"{o.name}={','.join(_pods(o))}" for o in SITES]  # every replica of every site, its own too
    if site.entry:
        client = docs[2]
        assert client["metadata"]["name"] == "ocr-app"
        assert client["spec"]["selector"].items() <= stateful["spec"]["template"]["metadata"]["labels"].items()
    else:  # the client Service selects no pod of another site
        assert "planner.io/entry" not in stateful["spec"]["template"]["metadata"]["labels"]


def test_strict_validation_catches_a_typo():
    _, stateful, _ = manifests.k8s_site("ocr", SITES[0], SITES)
    stateful["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(stateful, VERSION, strict=True)


def test_long_names_are_cut_to_distinct_labels_a_statefulset_can_carry():
    long_site = "s" * 63
    a, b = manifests.object_name("app" * 20, long_site), manifests.object_name("app" * 20, long_site[:-1] + "t")
    assert a != b and len(a) == len(b) == manifests.MAX_STATEFULSET_NAME
    site = SiteDeploy(name=long_site, tier="cloud", target="x", replicas=2, memory_mb=0, models=(), entry=True)
    for doc in manifests.k8s_site("app" * 20, site, [site]):
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_sites_with_the_same_manifest_name_are_found():
    def site(name):
        return SiteDeploy(name=name, tier="cloud", target="x", replicas=1, memory_mb=0, models=())

    assert manifests.name_clash("ocr", SITES) is None
    assert manifests.name_clash("ocr", [site("mec"), site("a_b"), site("A-b")]) == ("a_b", "A-b", "ocr-a-b")
    assert manifests.name_clash("ocr", [site("_")]) == (None, "_", "ocr")  # the client Service's name


def test_compose_has_a_service_per_replica_with_peers_by_service_name():
    doc = manifests.compose("ocr", SITES, base_port=50051)
    replicas = {s.name: [f"{s.name}-{i}" for i in range(s.replicas)] for s in SITES}
    assert list(doc["services"]) == [r for s in SITES for r in replicas[s.name]]
    # the first replicas where `planner up` puts them (base port + the site's index), the others after
    ports = {name: svc["ports"] for name, svc in doc["services"].items()}
    assert ports == {"phone-0": ["50051:8001"], "mec-0": ["50052:8001"], "mec-1": ["50054:8001"],
                     "mec-2": ["50055:8001"], "cloud-0": ["50053:8001"], "cloud-1": ["50056:8001"]}
    for site in SITES:
        for name in replicas[site.name]:
            cmd = doc["services"][name]["command"]
            assert cmd[:4] == ["python", "-m", "planner_runtime", "serve"]
            assert cmd[cmd.index("--advertise") + 1] == f"{name}:{PORT}"
            assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--peer"] == \
                [f"{o.name}={','.join(f'{r}:{PORT}' for r in replicas[o.name])}" for o in SITES]


def test_solve_refuses_a_site_named_like_the_app_in_the_manifests(isolated_dirs):
    import subprocess
    import sys

    from tests import ROOT
    from tests.step_app import write_step_app

    app = write_step_app(isolated_dirs / "app")
    app.write_text(app.read_text().replace("here", "_"))  # Kubernetes name `steps`: the client Service's
    out = isolated_dirs / "out"
    r = subprocess.run([sys.executable, "-m", "planner", "solve", str(app), "-o", str(out)], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{app}:3: sites._: site '_' gets the same name 'steps' in the deploy manifests as the app" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
