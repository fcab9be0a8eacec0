"""`planner up` runs each site's planned replicas (bundle.yaml `sites.<s>.replicas`, issue 11 item 4):
one process each, on ports that never collide; OUT/logs/services.json lists every replica; the
sequential bench spreads its requests over the entry's replicas, the entry spreads its forwards
over the other site's replicas, sinks come back to the replica a request entered; a replica that
dies is started again under --restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from planner.errors import InputError
from planner.local import up
from planner.local.sites import is_serving, site_bundles
from planner_runtime.bundle_format import Bundle
from tests import ROOT
from tests.processes import children, gone
from tests.up_process import planner_up
from tests.runtime import fanapp

pytestmark = pytest.mark.timeout(180)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
DELIVER = "__planner_deliver__"


def _with_replicas(out, replicas: dict[str, int]):
    """Every bundle of OUT saying how many replicas each site runs."""
    for site_dir in sorted((out / "sites").iterdir()):
        data = yaml.safe_load((site_dir / "bundle.yaml").read_text())
        for site, n in replicas.items():
            data["sites"][site]["replicas"] = n
        Bundle.model_validate(data).write(site_dir)
    return out


def test_fixed_ports_put_further_replicas_after_every_first_one(tmp_path):
    out = _with_replicas(fanapp.echo_bundles(tmp_path / "out", {"entry": 41000, "far": 41005}, nbytes=16),
                         {"entry": 2, "far": 3})
    bundles = site_bundles(out)
    replicas = up._replicas(bundles)
    assert replicas == {"entry": 2, "far": 3}
    # bundle.yaml's addresses for the first replicas, the others after the highest of those
    assert up._fixed_addresses(bundles, replicas, None, metrics=True) == {
        "entry": ["127.0.0.1:41000", "127.0.0.1:41006"],
        "far": ["127.0.0.1:41005", "127.0.0.1:41007", "127.0.0.1:41008"]}
    assert up._fixed_addresses(bundles, replicas, 50000, metrics=True) == {
        "entry": ["127.0.0.1:50000", "127.0.0.1:50002"],
        "far": ["127.0.0.1:50001", "127.0.0.1:50003", "127.0.0.1:50004"]}
    with pytest.raises(InputError, match="do not fit below port 65536"):
        up._fixed_addresses(bundles, replicas, 64533, metrics=True)  # the last metrics port would be 65537
    assert up._fixed_addresses(bundles, replicas, 64531, metrics=False)["far"][-1] == "127.0.0.1:64535"
    _with_replicas(out, {"far": up.MAX_PROCESSES})
    with pytest.raises(InputError, match=f"far: {up.MAX_PROCESSES} replicas.*at most {up.MAX_PROCESSES}"):
        up._replicas(site_bundles(out))


def _metric(address: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _bench(out, n: int) -> dict:
    r = subprocess.run([sys.executable, "-m", "planner", "bench", str(out), "-n", str(n), "--warmup", "0",
                        "--no-predict", "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def _pid(port_file, other_than: int | None = None) -> int:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            pid = json.loads(port_file.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            pid = None
        if pid is not None and pid != other_than:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"no new pid in {port_file}")


def test_up_runs_every_replica_and_requests_reach_all_of_them(tmp_path):
    out = _with_replicas(fanapp.echo_bundles(tmp_path / "out", {"entry": 1, "far": 2}, nbytes=16),
                         {"entry": 2, "far": 2})
    logs = out / "logs"
    with planner_up(out, "--base-port", "0", "--for", "150", "--restarts", "1", env=ENV) as up:
        table = "".join(up.started)
        assert "2 site(s), 4 processes" in table, table
        services = json.loads((logs / "services.json").read_text())
        assert sorted(services) == ["entry", "far"]
        addresses = [a for s in services.values() for key in ("grpc", "metrics") for a in s[key]]
        assert all(len(s["grpc"]) == len(s["metrics"]) == 2 for s in services.values()), services
        assert len(set(addresses)) == 8  # every process on ports of its own
        live = json.loads((logs / "endpoints.json").read_text())
        assert live == {site: s["grpc"][0] for site, s in services.items()}  # endpoints.json: the first replicas

        report = _bench(out, 8)  # in turn to each entry replica
        assert report["entry"]["addresses"] == services["entry"]["grpc"]
        entry_m, far_m = services["entry"]["metrics"], services["far"]["metrics"]
        assert [_metric(m, "oip_requests_total", site="entry", model="echo", code="OK") for m in entry_m] == [4, 4]
        # each entry replica spreads its forwards over far's replicas; the sinks come back to it (the
        # requests succeeded), never to the other entry replica
        assert [_metric(m, "oip_requests_total", site="far", model=DELIVER, code="OK") for m in far_m] == [4, 4]
        assert [_metric(m, "oip_requests_total", site="entry", model=DELIVER, code="OK") for m in entry_m] == [4, 4]

        # a replica that dies is started again where the others look for it
        first = _pid(logs / "far.1.ports.json")
        os.kill(first, signal.SIGKILL)
        _pid(logs / "far.1.ports.json", other_than=first)
        end = time.monotonic() + 60
        while not is_serving(services["far"]["grpc"][1]):
            assert time.monotonic() < end, "far.1 not serving again"
            time.sleep(0.1)
        assert _bench(out, 4)["e2e_ms"]["n"] == 4
    assert up.proc.returncode == 0, up.stdout + up.stderr
    assert "site far.1 exited with signal SIGKILL; starting it again" in up.stderr, up.stderr
    assert "started again" in (logs / "far.1.log").read_text()
    assert not (logs / "services.json").exists() and not (logs / "endpoints.json").exists()


def test_a_solved_plan_with_several_replicas_runs_a_process_each(tmp_path):
    from tests.step_app import write_step_app

    app = write_step_app(tmp_path / "app")  # a 5 ms step: 300 rps fill 1.5 replicas of 2 instances
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "planner", "solve", str(app), "-o", str(out), "--set",
                        "sources.cam.rate_rps=300", "--set", "sites.here.max_replicas=4", "--set",
                        "models.s.instances=2"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    # two for the load, or more where the queue's p99 needs them (the step's measured time decides)
    replicas = json.loads((out / "plan.json").read_text())["sites"]["here"]["replicas"]
    assert 2 <= replicas <= 4
    bundle = Bundle.read(out / "sites" / "here")
    assert bundle.sites["here"].replicas == replicas and bundle.nodes["s"].instances == 2
    with planner_up(out, "--base-port", "0", "--for", "100", env=ENV) as up:
        services = json.loads((out / "logs" / "services.json").read_text())
        assert len(services["here"]["grpc"]) == len(services["here"]["metrics"]) == replicas
        _bench(out, 2 * replicas)
        assert [_metric(m, "oip_requests_total", site="here", model="steps", code="OK")
                for m in services["here"]["metrics"]] == [2] * replicas
        # each replica runs the step's two instances in two worker processes of its own
        sites = children(up.proc.pid)
        workers = [w for site in sites for w in children(site)]
        assert len(sites) == replicas and len(workers) == 2 * replicas
    assert up.proc.returncode == 0
    assert gone(sites + workers) == [], "processes left running after planner up stopped (Ctrl-C)"
