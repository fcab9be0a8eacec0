"""Serving a plan's site bundles on this machine: `python -m planner_runtime serve` processes for
each OUT/sites/<site>/ on loopback, one per replica the plan gives the site (bundle.yaml's
`sites.<site>.replicas`), supervised until stopped (`planner up`).

Each replica has its own port and knows every replica of every site (`--peer SITE=A,B,...`); a site
forwarding to another spreads its requests over that site's replicas (runtime.forward.Balancer).
Replica 0 of a site serves the site's address (bundle.yaml's, or `--base-port` P + its index in
name order); further replicas take the ports after the highest of those, site by site. Processes
are named after their site, replicas after the first with a suffix: `mec`, `mec.1`, `mec.2`
(logs/<name>.log; site names have no dots).

It waits until each of its own processes serves its port, records the addresses while it runs
(for `planner bench`): OUT/logs/endpoints.json ({site: the first replica's address}) and
OUT/logs/services.json ({site: {"grpc": [address, ...], "metrics": [address, ...]}}, every
replica), starts a process that exits again while `--restarts` last, and stops every process on
Ctrl-C, SIGTERM, the end of `--for`, or a process that exits after that.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import InputError, PlannerError
from planner.local.sites import ENDPOINTS, SERVICES, SiteBundle, entry_bundle, is_serving, site_bundles
from planner_runtime import handshake
from planner_runtime.bundle_format import Bundle

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_PROCESSES = 64  # replicas of all sites together that `planner up` starts on one machine
METRICS_OFFSET = 1000  # a process's metrics port with fixed ports: its gRPC port + this


@dataclass
class SiteProcess:
    site: str
    replica: int  # 0 for the first of its site
    address: str
    metrics_url: str | None
    models: list[str]
    compiled_for: str  # the site's target, or what runs instead with --host-targets
    log: Path
    command: list[str] = field(default_factory=list, repr=False)  # how it was started (and restarts)

    @property
    def name(self) -> str:
        """The process's name: its log (logs/<name>.log) and handshake files."""
        return process_name(self.site, self.replica)


def process_name(site: str, replica: int) -> str:
    return site if replica == 0 else f"{site}.{replica}"


@dataclass
class Serving:
    """What `planner up` started: told to the caller once every site is ready."""

    app: str
    entry_site: str
    sites: list[SiteProcess] = field(default_factory=list)

    @property
    def entry_address(self) -> str:
        return next(s.address for s in self.sites if s.site == self.entry_site and s.replica == 0)

    def services(self) -> dict[str, dict[str, list[str]]]:
        """{site: {"grpc": [address, ...], "metrics": [address, ...]}}, replicas in order (OUT/logs/services.json)."""
        out: dict[str, dict[str, list[str]]] = {}
        for p in sorted(self.sites, key=lambda p: p.replica):
            entry = out.setdefault(p.site, {"grpc": [], "metrics": []})
            entry["grpc"].append(p.address)
            if p.metrics_url:
                entry["metrics"].append(p.metrics_url.removeprefix("http://").removesuffix("/metrics"))
        return out

    def addresses(self) -> dict[str, list[str]]:
        """{site: every replica's gRPC address}."""
        return {site: s["grpc"] for site, s in self.services().items()}


def needs_host_targets(bundle: Bundle) -> list[str]:
    """The site's models compiled for its own hardware that have a build for this machine."""
    return [f"{n} ({s.compiled_for or 'its target'})" for n, s in bundle.nodes.items()
            if s.site == bundle.site and s.host_fallback and s.host_fallback != s.artifact]


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _check_runnable(bundles: list[SiteBundle], host_targets: bool, base_port: int | None) -> None:
    foreign = []
    for site, _, b in bundles:
        host = b.sites[site].address.rsplit(":", 1)[0]
        if host not in LOOPBACK and not base_port:
            raise InputError(f"site {site}: address {b.sites[site].address} is not on loopback; `planner up` "
                             "runs every site on this machine (--base-port P serves them on loopback ports)")
        if needs_host_targets(b):
            foreign.append(f"{site}: {', '.join(needs_host_targets(b))}")
    if foreign and not host_targets:
        raise InputError(f"models compiled for their site's hardware, not this machine ({'; '.join(foreign)}); "
                         "run `planner up OUT --host-targets` to use their host builds")


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGINT end the wait as Ctrl-C does (a shell script's `planner up OUT &`
    starts with SIGINT ignored; `kill -INT` must still stop it)."""
    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _died(site: str, code: int, log: Path, when: str) -> PlannerError:
    return PlannerError(f"site {site} exited with {_exit_text(code)}{when} (log: {log}):\n{_tail(log)}")


def _serves_here(address: str, proc: subprocess.Popen, port_file: Path) -> bool:
    """Our own process serves `address`: it wrote its pid to its port file once bound, and the
    address answers. The health check alone could be another process on that port (the site then
    failed to bind and exits)."""
    try:
        ready = json.loads(port_file.read_text())
    except (OSError, ValueError):
        return False
    return ready.get("pid") == proc.pid and is_serving(address)


def _check_started(procs: dict[str, subprocess.Popen], logs: Path) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise _died(name, proc.returncode, logs / f"{name}.log", " while starting")


def _wait_ready(serving: Serving, procs: dict[str, subprocess.Popen], logs: Path, timeout: float) -> None:
    end = time.monotonic() + timeout
    for p in serving.sites:
        while not _serves_here(p.address, procs[p.name], handshake.port_file(logs, p.name)):
            if procs[p.name].poll() is not None:
                raise _died(p.name, procs[p.name].returncode, p.log, f" while starting on {p.address}")
            if time.monotonic() > end:
                raise PlannerError(f"site {p.name} at {p.address} not ready after {timeout:g} s (log: {p.log})")
            time.sleep(0.1)


def _replicas(bundles: list[SiteBundle]) -> dict[str, int]:
    """{site: the replicas its bundle asks for}, at most MAX_PROCESSES in all."""
    replicas = {site: b.sites[site].replicas for site, _, b in bundles}
    if sum(replicas.values()) > MAX_PROCESSES:
        most = max(replicas, key=replicas.get)
        directory = next(d for site, d, _ in bundles if site == most)
        raise InputError(f"the plan runs {sum(replicas.values())} processes ({most}: {replicas[most]} replicas, "
                         f"sites.{most}.replicas in {directory / 'bundle.yaml'}); `planner up` starts at most "
                         f"{MAX_PROCESSES} on one machine")
    return replicas


def _fixed_addresses(bundles: list[SiteBundle], replicas: dict[str, int], base_port: int | None,
                     metrics: bool) -> dict[str, list[str]]:
    """Each site's replica addresses: replica 0 at bundle.yaml's address (or base_port + its index), the
    others on the ports after the highest of those, site by site (no two processes share a port)."""
    first = {site: (f"127.0.0.1:{base_port + i}" if base_port else b.sites[site].address)
             for i, (site, _, b) in enumerate(bundles)}
    port = max(int(a.rsplit(":", 1)[1]) for a in first.values())
    addresses = {}
    for site, address in first.items():
        host = address.rsplit(":", 1)[0]
        addresses[site] = [address]
        for _ in range(1, replicas[site]):
            port += 1
            addresses[site].append(f"{host}:{port}")
    if port + (METRICS_OFFSET if metrics else 0) > 65535:
        raise InputError(f"{sum(replicas.values())} processes do not fit below port 65536 from port "
                         f"{min(int(a.rsplit(':', 1)[1]) for a in first.values())} (metrics on port + "
                         f"{METRICS_OFFSET}); choose a lower --base-port, or --base-port 0")
    return addresses


def serve(out_dir: Path, *, host_targets: bool = False, seconds: float | None = None, metrics: bool = True,
          ready_timeout: float = 120.0, base_port: int | None = None, restarts: int = 0,
          on_ready: Callable[[Serving], None] = lambda serving: None,
          on_restart: Callable[[str, str], None] = lambda site, why: None) -> None:
    """Start every replica of every site of OUT, call `on_ready` once all serve, and keep them running
    until Ctrl-C, SIGTERM or `seconds`. A process that exits is started again, `restarts` times at most
    in all (`on_restart(name, why)` each time, on the port it had); then it is a PlannerError with its
    log's tail. base_port 0: every process on ports the OS picks (planner_runtime.handshake)."""
    bundles = site_bundles(out_dir)
    entry_site, entry = entry_bundle(bundles)
    _check_runnable(bundles, host_targets, base_port)
    replicas = _replicas(bundles)
    free = base_port == 0
    addresses = {} if free else _fixed_addresses(bundles, replicas, base_port, metrics)
    # without --base-port and one replica each, the sites find each other at bundle.yaml's addresses
    peers = base_port is not None or any(n > 1 for n in replicas.values())
    logs = Path(out_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    serving = Serving(app=entry.app, entry_site=entry_site)
    try:
        with _stopped_by_signals():
            try:
                for site, directory, b in bundles:
                    for replica in range(replicas[site]):
                        serving.sites.append(_start(site, replica, directory, b, addresses, entry_site, procs, logs,
                                                    metrics=metrics, host_targets=host_targets, peers=peers))
                if free:
                    _learn_ports(serving, procs, logs, ready_timeout)
                _wait_ready(serving, procs, logs, ready_timeout)
                (logs / ENDPOINTS).write_text(json.dumps({s: a[0] for s, a in serving.addresses().items()}))
                (logs / SERVICES).write_text(json.dumps(serving.services()))
                on_ready(serving)
                _watch(procs, {p.name: p for p in serving.sites}, logs, seconds, restarts, on_restart)
            except KeyboardInterrupt:
                pass
    finally:
        _stop(procs)
        (logs / ENDPOINTS).unlink(missing_ok=True)
        (logs / SERVICES).unlink(missing_ok=True)
        for name in procs:
            handshake.port_file(logs, name).unlink(missing_ok=True)


def _start(site: str, replica: int, directory: Path, b: Bundle, addresses: dict[str, list[str]], entry_site: str,
           procs: dict[str, subprocess.Popen], logs: Path, *, metrics: bool, host_targets: bool,
           peers: bool) -> SiteProcess:
    """Start one replica of a site: on its fixed port (addresses), or on port 0 when addresses is empty."""
    name = process_name(site, replica)
    cmd = [sys.executable, "-m", "planner_runtime", "serve", str(directory), "--host", "127.0.0.1",
           "--exit-with-launcher"]
    metrics_port = None
    address = ""
    if not addresses:  # its ports and the others' come from the handshake (_learn_ports)
        cmd += handshake.site_options(logs, name, metrics)
    else:
        address = addresses[site][replica]
        port = int(address.rsplit(":", 1)[1])
        port_file = handshake.port_file(logs, name)
        port_file.unlink(missing_ok=True)  # a previous run's
        cmd += ["--port", str(port), "--port-file", str(port_file)]
        if peers:  # every process learns where every replica is, and where it is itself
            cmd += [f"--peer={s}={','.join(a)}" for s, a in addresses.items()]
        metrics_port = port + METRICS_OFFSET if metrics else None
        if metrics_port:
            cmd += ["--metrics-port", str(metrics_port)]
    if host_targets:
        cmd.append("--host-targets")
    log = logs / f"{name}.log"
    log.unlink(missing_ok=True)
    procs[name] = _spawn(cmd, log)
    runs = (f"host build instead of {b.sites[site].target}" if host_targets and needs_host_targets(b)
            else b.sites[site].target)
    models = ([b.app] if site == entry_site else []) + b.local_nodes()
    return SiteProcess(site=site, replica=replica, address=address, log=log, models=models, compiled_for=runs,
                       command=cmd, metrics_url=f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None)


def _learn_ports(serving: Serving, procs: dict[str, subprocess.Popen], logs: Path, timeout: float) -> None:
    """The ports each process bound (port 0), told to every process: where each serves now."""
    try:
        ports = handshake.await_ports(logs, list(procs), lambda: _check_started(procs, logs), timeout)
    except handshake.HandshakeError as exc:
        raise PlannerError(f"{exc} (logs: {logs})") from None
    for p in serving.sites:
        got = ports[p.name]
        p.address = f"127.0.0.1:{got.port}"
        p.metrics_url = f"http://127.0.0.1:{got.metrics_port}/metrics" if got.metrics_port else None
        p.command = handshake.pinned(p.command, got)  # a restart comes back where the others look
    handshake.announce_peers(logs, serving.addresses())


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:  # appended: a restarted site's log keeps what it said before
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)


def _watch(procs: dict[str, subprocess.Popen], sites: dict[str, SiteProcess], logs: Path, seconds: float | None,
           restarts: int, on_restart: Callable[[str, str], None]) -> None:
    """Until `seconds` have passed (or forever). A process that exits is started again while
    `restarts` last (it serves again once it has loaded; requests meanwhile get UNAVAILABLE, and the
    other sites pass it over for its site's other replicas); after that it ends the wait with its log's tail."""
    end = None if seconds is None else time.monotonic() + seconds
    while end is None or time.monotonic() < end:
        time.sleep(0.3)
        for name, p in procs.items():
            if p.poll() is None:
                continue
            log = logs / f"{name}.log"
            if restarts <= 0:
                raise _died(name, p.returncode, log, "")
            restarts -= 1
            why = f"exited with {_exit_text(p.returncode)}"
            on_restart(name, why)
            handshake.port_file(logs, name).unlink(missing_ok=True)
            with open(log, "a") as fh:
                fh.write(f"--- planner up: site {name} {why}; started again ---\n")
            procs[name] = _spawn(sites[name].command, log)
