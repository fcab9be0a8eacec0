"""`serve --port 0 --port-file F --peers-file P`: a site binds ports the OS picks, reports them,
and serves only once it knows where the other sites are (planner_runtime.handshake)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from planner_runtime import handshake
from tests import ROOT
from tests.conftest import refused_ports
from tests.runtime import fanapp

pytestmark = pytest.mark.timeout(120)


def _health(address: str) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def test_site_reports_its_ports_and_serves_once_told_its_peers(tmp_path):
    from grpc_health.v1 import health_pb2

    with refused_ports(1) as [unserved]:
        fanapp.echo_bundles(tmp_path / "out", {"entry": unserved}, nbytes=16)
        run = tmp_path / "run"
        run.mkdir()
        proc = fanapp.start_site(tmp_path / "out" / "sites" / "entry", log=run / "entry.log",
                                 extra=handshake.site_options(run, "entry"))
        try:
            def alive():
                assert proc.poll() is None, (run / "entry.log").read_text()

            ports = handshake.await_ports(run, ["entry"], alive, timeout_s=60)["entry"]
            address = f"127.0.0.1:{ports.port}"
            assert ports.port != unserved and ports.metrics_port not in (None, 0, ports.port)
            assert _health(address) == health_pb2.HealthCheckResponse.NOT_SERVING  # listening, not serving yet
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports.metrics_port}/metrics", timeout=10).read()
            assert b'runtime_pending_requests{site="entry"}' in metrics
            handshake.announce_peers(run, {"entry": address})
            fanapp.wait_ready([address], timeout=60, procs=[proc])
            assert _health(address) == health_pb2.HealthCheckResponse.SERVING
            assert json.loads((run / "entry.ports.json").read_text()) == {"pid": proc.pid, "port": ports.port,
                                                                         "metrics_port": ports.metrics_port}
        finally:
            fanapp.stop([proc])


def test_a_peers_file_naming_an_unknown_site_is_an_error(tmp_path):
    with refused_ports(1) as [unserved]:
        fanapp.echo_bundles(tmp_path / "out", {"entry": unserved}, nbytes=16)
    (tmp_path / "peers.json").write_text(json.dumps({"nowhere": "127.0.0.1:1"}))
    proc = subprocess.run([sys.executable, "-m", "planner_runtime", "serve", str(tmp_path / "out" / "sites" / "entry"),
                           "--host", "127.0.0.1", "--port", "0", "--peers-file", str(tmp_path / "peers.json")],
                          capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {tmp_path / 'peers.json'}: --peer nowhere: no site 'nowhere' in the bundle (sites: entry)" \
        in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_site_waiting_for_its_peers_exits_when_its_launcher_does(tmp_path):
    with refused_ports(1) as [unserved]:
        fanapp.echo_bundles(tmp_path / "out", {"entry": unserved}, nbytes=16)
    ports, log = tmp_path / "entry.ports.json", tmp_path / "entry.log"
    serve = [sys.executable, "-m", "planner_runtime", "serve", str(tmp_path / "out" / "sites" / "entry"),
             "--host", "127.0.0.1", "--port", "0", "--port-file", str(ports), "--peers-file", str(tmp_path / "peers")]
    # the launcher starts the site, waits until it listens, and exits without writing the peers file
    launcher = (f"import subprocess, sys, time, os\n"
                f"p = subprocess.Popen({serve!r}, stdout=open({str(log)!r}, 'w'), stderr=subprocess.STDOUT)\n"
                f"while not os.path.exists({str(ports)!r}) and p.poll() is None: time.sleep(0.05)\n"
                f"print(p.pid)\n")
    pid = int(subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, cwd=ROOT,
                             timeout=90, check=True).stdout)

    def gone() -> bool:  # exited (reaped, or a zombie of whoever adopted it)
        try:
            with open(f"/proc/{pid}/status") as f:
                return any(line.split()[:2] == ["State:", "Z"] for line in f)
        except FileNotFoundError:
            return True

    end = time.monotonic() + 60
    while not gone():
        assert time.monotonic() < end, "the orphaned site still waits for its peers"
        time.sleep(0.1)
    assert "the launcher exited before writing it" in log.read_text()


def test_metrics_listen_on_the_interface_of_the_grpc_port(tmp_path):
    """`--host` other than loopback (a pod's 0.0.0.0): Prometheus reaches the metrics there too."""
    with refused_ports(1) as [unserved]:
        fanapp.echo_bundles(tmp_path / "out", {"entry": unserved}, nbytes=16)
    ports = tmp_path / "entry.ports.json"
    proc = fanapp.start_site(tmp_path / "out" / "sites" / "entry", log=tmp_path / "entry.log",
                             extra=["--host", "127.0.0.2", "--port", "0", "--metrics-port", "0", "--port-file",
                                    str(ports)])  # the later --host wins
    try:
        def alive():
            assert proc.poll() is None, (tmp_path / "entry.log").read_text()

        got = handshake.await_ports(tmp_path, ["entry"], alive, timeout_s=60)["entry"]
        metrics = urllib.request.urlopen(f"http://127.0.0.2:{got.metrics_port}/metrics", timeout=10).read()
        assert b'runtime_pending_requests{site="entry"}' in metrics
    finally:
        fanapp.stop([proc])
