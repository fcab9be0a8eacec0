"""`planner up` and `planner bench` as a user runs them: real processes, real sites on loopback.

Both commands run in subprocesses: `planner bench` drives the runtime's own OIP stubs, which must
not share a process with tritonclient (imported by other tests of this session).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import yaml

from planner_runtime.bundle_format import Bundle
from tests.conftest import refused_ports
from tests.runtime import fanapp
from tests import ROOT

pytestmark = pytest.mark.timeout(150)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def planner(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "planner", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """The sample bundles, with edge's and cloud's models marked as built for other hardware."""
    onnx_paths, libs = fanapp.cached_models(tmp_path_factory.getbasetemp().parent / "runtime-models")
    out = tmp_path_factory.mktemp("up")
    with refused_ports(len(fanapp.SITES)) as unserved:  # bundle.yaml's addresses: nobody serves there
        fanapp.write_bundles(out, dict(zip(fanapp.SITES, unserved)), libs)
        for site, target in (("edge", "rpi5"), ("cloud", "c7i-2xlarge")):
            path = out / "sites" / site / "bundle.yaml"
            data = yaml.safe_load(path.read_text())
            for node in data["nodes"].values():
                if (node.get("artifact") or "").endswith(".so"):
                    host = node["artifact"].replace(".so", ".host.so")
                    shutil.copy2(out / "sites" / site / node["artifact"], out / "sites" / site / host)
                    node["compiled_for"], node["host_fallback"] = target, host
            data["sites"][site]["target"] = target
            Bundle.model_validate(data).write(path.parent)  # with the checksum of the new host build
        yield out


def test_up_needs_host_targets_for_foreign_builds(out, tmp_path):
    r = planner("up", out, "--for", "1")
    assert r.returncode == 2
    assert "--host-targets" in r.stderr and "rpi5" in r.stderr
    r = planner("up", tmp_path)
    assert r.returncode == 2 and "no site bundles" in r.stderr


def test_up_then_bench_then_ctrl_c(out):
    # not bundle.yaml's ports: --base-port 0 serves every site on ports the OS picks
    proc = subprocess.Popen([sys.executable, "-m", "planner", "up", str(out), "--host-targets", "--for", "120",
                             "--base-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=ENV)
    lines = []
    try:
        # `planner up OUT &` then `planner bench OUT` at once: bench waits until every site serves
        r = planner("bench", out, "-n", "20", "--json", "--wait", "90")
        end = time.monotonic() + 90
        while time.monotonic() < end:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("ready:"):
                break
        text = "".join(lines)
        live = json.loads((out / "logs" / "endpoints.json").read_text())
        assert sorted(live) == sorted(fanapp.SITES) and len(set(live.values())) == 3, live
        for site, address in live.items():  # the table: each site's address and its metrics, served
            [row] = [line for line in text.splitlines() if f"│ {address} " in line]
            url = re.search(r"http://127\.0\.0\.1:\d+/metrics", row).group(0)
            assert f'runtime_pending_requests{{site="{site}"}}' in urllib.request.urlopen(url, timeout=10).read().decode()
        assert f"ready: fanapp at {live['edge']} " in text, text
        assert "host build instead of rpi5" in text and "--host-targets" in text
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        assert report["requests"] == 20 and report["e2e_ms"]["n"] == 20
        samples = report["e2e_samples_ms"]  # every request's time, as the bench recorded it
        assert len(samples) == 20 and min(samples) > 0
        assert [report["e2e_ms"][f"p{q}"] for q in (50, 95, 99)] == pytest.approx(
            list(np.percentile(samples, [50, 95, 99])), abs=1e-3)
        assert report["plan_latency_ms"] == 2.6
        # the sample plan.json names no app.yaml: no prediction for this machine, and it says why
        assert report["host_prediction"]["status"] == "not available" and "--app" in report["host_prediction"]["why"]
        assert report["host_predicted_ms"] is None and report["error_pct"] is None
        assert {m["model"] for m in report["models"]} == {"a", "b", "c", "glue", "d"}
        assert next(m for m in report["models"] if m["model"] == "a")["plan_ms"] == 0.1
        hops = {h["hop"]: h for h in report["hops"]}
        assert set(hops) == {"edge->mec", "edge->cloud", "mec->cloud", "mec->edge", "cloud->edge"}
        assert hops["edge->mec"]["flows"] == "a->b" and hops["edge->mec"]["plan_ms"] == 0.5
        r = planner("bench", out, "-n", "5")
        assert r.returncode == 0 and "p50" in r.stdout and "per hop" in r.stdout, r.stdout + r.stderr
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            rest, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, rest
    assert "stopped" in rest
    assert not (out / "logs" / "endpoints.json").exists()
    for address in live.values():  # every site process is gone
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(address.rsplit(":", 1)[1]))) != 0


def test_bench_names_a_missing_app_before_sending_anything(out, tmp_path):
    moved = tmp_path / "out"
    shutil.copytree(out, moved)
    plan = json.loads((moved / "plan.json").read_text())
    plan["source"] = {"file": str(tmp_path / "gone" / "app.yaml"), "sha256": "0" * 64, "overrides": []}
    (moved / "plan.json").write_text(json.dumps(plan))
    r = planner("bench", moved, "-n", "1")  # no site is running: the prediction fails first, cleanly
    assert r.returncode == 2 and "gone/app.yaml" in r.stderr and "no longer exists" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = planner("bench", moved, "-n", "1", "--app", tmp_path / "nope.yaml")
    assert r.returncode == 2 and "--app" in r.stderr and "nope.yaml" in r.stderr, r.stderr
    r = planner("bench", moved, "-n", "1", "--no-predict", "--wait", "1")
    assert r.returncode == 1 and "not serving after 1 s" in r.stderr and "planner up" in r.stderr, r.stderr
    assert all(f"{site} (127.0.0.1:" in r.stderr for site in fanapp.SITES)


def test_serve_reports_bad_bundles_and_options(tmp_path):
    def serve(*args):
        return subprocess.run([sys.executable, "-m", "planner_runtime", "serve", *map(str, args)], capture_output=True,
                              text=True, timeout=60, cwd=ROOT, env=ENV)

    r = serve(tmp_path)
    assert r.returncode == 2 and "error:" in r.stderr and "bundle.yaml" in r.stderr
    (tmp_path / "bundle.yaml").write_text("format: 1\napp: x\n")
    r = serve(tmp_path)
    assert r.returncode == 2 and "error:" in r.stderr
    r = serve(tmp_path, "--peer", "nonsense")
    assert r.returncode == 2 and "SITE=HOST:PORT" in r.stderr
