"""`planner up` says "ready" only when its own processes serve every site: not when another
process answers the health check on a site's port, not with a site bundle missing, and a site
that dies while starting is named with how it died and its log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent import futures

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from planner.local.sites import is_serving
from planner_runtime.bundle_format import Bundle
from tests import ROOT
from tests.runtime import fanapp

pytestmark = pytest.mark.timeout(120)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def up(out, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "planner", "up", str(out), "--no-metrics", *map(str, args)],
                          capture_output=True, text=True, timeout=90, cwd=ROOT, env=ENV)


@pytest.fixture
def reserved_port():
    """A port only this test's site takes: held by a socket that binds without listening, with
    SO_REUSEADDR (a server with SO_REUSEADDR, as gRPC's, may still bind it; nothing else can)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def impostor():
    """Another gRPC server answering SERVING on a port (held for the whole test)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


def test_another_process_answering_on_the_port_is_not_ready(tmp_path, impostor):
    out = fanapp.echo_bundles(tmp_path / "out", {"entry": impostor}, nbytes=16)
    r = up(out, "--for", "5")
    assert "ready:" not in r.stdout, r.stdout
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"site entry exited with code 2 while starting on 127.0.0.1:{impostor}" in r.stderr, r.stderr
    assert f"cannot listen on 127.0.0.1:{impostor}" in r.stderr and str(out / "logs" / "entry.log") in r.stderr
    assert "Traceback" not in r.stderr
    assert not (out / "logs" / "endpoints.json").exists() and not (out / "logs" / "entry.ports.json").exists()


def test_a_missing_site_bundle_is_refused_before_starting(tmp_path):
    out = fanapp.echo_bundles(tmp_path / "out", {"entry": 1, "far": 2}, nbytes=16)  # ports never bound
    shutil.rmtree(out / "sites" / "far")
    r = up(out, "--for", "1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{out / 'sites' / 'far' / 'bundle.yaml'} is missing" in r.stderr, r.stderr
    assert "ready:" not in r.stdout and not (out / "logs").exists()


def test_a_site_killed_by_a_signal_while_starting_is_named_with_its_log(tmp_path, reserved_port):
    out = fanapp.echo_bundles(tmp_path / "out", {"entry": reserved_port}, nbytes=16)
    site = out / "sites" / "entry"
    (site / "echo.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGBUS)\n")
    Bundle.model_validate(yaml.safe_load((site / "bundle.yaml").read_text())).write(site)
    r = up(out, "--for", "5", "--restarts", "3")  # restarts are for sites that served: not a crash at start
    assert r.returncode == 1 and "ready:" not in r.stdout, r.stdout + r.stderr
    log = out / "logs" / "entry.log"
    assert f"site entry exited with signal SIGBUS while starting on 127.0.0.1:{reserved_port} (log: {log})" in r.stderr
    assert "starting it again" not in r.stderr


def _pid_other_than(ready_file, old: int | None, proc: subprocess.Popen) -> int:
    for _ in range(600):  # at most a minute: the site loads, binds, writes its pid
        assert proc.poll() is None, proc.communicate()
        try:
            pid = json.loads(ready_file.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            pid = None
        if pid is not None and pid != old:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"no new pid in {ready_file}")


@pytest.mark.parametrize("ports", ["bundle", "picked by the OS"])
def test_restarts_start_a_killed_site_again_then_stop(tmp_path, reserved_port, ports):
    out = fanapp.echo_bundles(tmp_path / "out", {"entry": reserved_port}, nbytes=16)
    ready = out / "logs" / "entry.ports.json"
    free = ["--base-port", "0"] if ports != "bundle" else []
    proc = subprocess.Popen([sys.executable, "-m", "planner", "up", str(out), "--no-metrics", "--for", "100",
                             "--restarts", "1", *free], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=ENV)
    try:
        for line in proc.stdout:  # up has seen every site serve
            if line.startswith("ready:"):
                break
        address = json.loads((out / "logs" / "endpoints.json").read_text())["entry"]
        assert (address == f"127.0.0.1:{reserved_port}") == (ports == "bundle")
        first = _pid_other_than(ready, None, proc)
        os.kill(first, signal.SIGKILL)
        second = _pid_other_than(ready, first, proc)
        # the new process serves the same port, where the other sites look for it (its health check:
        # no OIP client here, this test process may hold tritonclient's stubs, which clash with the runtime's)
        assert json.loads(ready.read_text())["port"] == int(address.rsplit(":", 1)[1])
        _wait_serving(address)
        os.kill(second, signal.SIGKILL)  # no restart left: up stops, naming the site
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, stdout + stderr
    assert "site entry exited with signal SIGKILL; starting it again" in stderr
    assert f"site entry exited with signal SIGKILL (log: {out / 'logs' / 'entry.log'})" in stderr
    log = (out / "logs" / "entry.log").read_text()
    assert log.count("listening on") == 2 and "started again" in log, log
    assert not ready.exists()


def _wait_serving(address: str, timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while not is_serving(address):
        assert time.monotonic() < end, f"nothing serves {address} after {timeout_s} s"
        time.sleep(0.1)


def test_sites_stop_when_up_is_killed_outright(tmp_path, reserved_port):
    # SIGKILL leaves up no chance to stop its sites: each notices it has lost its launcher
    out = fanapp.echo_bundles(tmp_path / "out", {"entry": reserved_port}, nbytes=16)
    proc = subprocess.Popen([sys.executable, "-m", "planner", "up", str(out), "--no-metrics", "--for", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    try:
        for line in proc.stdout:
            if line.startswith("ready:"):
                break
        site = _pid_other_than(out / "logs" / "entry.ports.json", None, proc)
        assert not _gone(site)
        proc.kill()
        proc.wait()
        end = time.monotonic() + 60
        while not _gone(site):
            assert time.monotonic() < end, f"site process {site} still runs 60 s after up was killed"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "the process that started this site" in (out / "logs" / "entry.log").read_text()


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return True
