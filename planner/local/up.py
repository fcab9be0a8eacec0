"""Serving a plan's site bundles on this machine: one `python -m planner_runtime serve` process
per OUT/sites/<site>/ on loopback, supervised until stopped (`planner up`).

It waits until each of its own processes serves its port, records the addresses in
OUT/logs/endpoints.json while it runs (for `planner bench`), starts a site that exits again
while `--restarts` last, and stops every process on Ctrl-C, SIGTERM, the end of `--for`, or a
site that exits after that.
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
from planner.local.sites import ENDPOINTS, SiteBundle, entry_bundle, is_serving, site_bundles
from planner_runtime import handshake
from planner_runtime.bundle_format import Bundle

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class SiteProcess:
    site: str
    address: str
    metrics_url: str | None
    models: list[str]
    compiled_for: str  # the site's target, or what runs instead with --host-targets
    log: Path
    command: list[str] = field(default_factory=list, repr=False)  # how it was started (and restarts)


@dataclass
class Serving:
    """What `planner up` started: told to the caller once every site is ready."""

    app: str
    entry_site: str
    sites: list[SiteProcess] = field(default_factory=list)

    @property
    def entry_address(self) -> str:
        return next(s.address for s in self.sites if s.site == self.entry_site)


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
    for site, proc in procs.items():
        if proc.poll() is not None:
            raise _died(site, proc.returncode, logs / f"{site}.log", " while starting")


def _wait_ready(addresses: dict[str, str], procs: dict[str, subprocess.Popen], logs: Path, timeout: float) -> None:
    end = time.monotonic() + timeout
    for site, address in addresses.items():
        while not _serves_here(address, procs[site], handshake.port_file(logs, site)):
            if procs[site].poll() is not None:
                raise _died(site, procs[site].returncode, logs / f"{site}.log", f" while starting on {address}")
            if time.monotonic() > end:
                raise PlannerError(f"site {site} at {address} not ready after {timeout:g} s "
                                   f"(log: {logs / f'{site}.log'})")
            time.sleep(0.1)


def serve(out_dir: Path, *, host_targets: bool = False, seconds: float | None = None, metrics: bool = True,
          ready_timeout: float = 120.0, base_port: int | None = None, restarts: int = 0,
          on_ready: Callable[[Serving], None] = lambda serving: None,
          on_restart: Callable[[str, str], None] = lambda site, why: None) -> None:
    """Start every site of OUT, call `on_ready` once all serve, and keep them running until
    Ctrl-C, SIGTERM or `seconds`. A site that exits is started again, `restarts` times at most in
    all (`on_restart(site, why)` each time, on the port it had); then it is a PlannerError with its
    log's tail. base_port 0: every site on ports the OS picks (planner_runtime.handshake)."""
    bundles = site_bundles(out_dir)
    entry_site, entry = entry_bundle(bundles)
    _check_runnable(bundles, host_targets, base_port)
    addresses = {site: (f"127.0.0.1:{base_port + i}" if base_port else b.sites[site].address)
                 for i, (site, _, b) in enumerate(bundles)}
    logs = Path(out_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    serving = Serving(app=entry.app, entry_site=entry_site)
    try:
        with _stopped_by_signals():
            try:
                for site, directory, b in bundles:
                    serving.sites.append(_start(site, directory, b, addresses, entry_site, procs, logs,
                                                metrics=metrics, host_targets=host_targets,
                                                peers=base_port is not None, free=base_port == 0))
                if base_port == 0:
                    addresses = _learn_ports(serving, procs, logs, ready_timeout)
                _wait_ready(addresses, procs, logs, ready_timeout)
                (logs / ENDPOINTS).write_text(json.dumps(addresses))
                on_ready(serving)
                _watch(procs, {s.site: s for s in serving.sites}, logs, seconds, restarts, on_restart)
            except KeyboardInterrupt:
                pass
    finally:
        _stop(procs)
        (logs / ENDPOINTS).unlink(missing_ok=True)
        for site in procs:
            handshake.port_file(logs, site).unlink(missing_ok=True)


def _start(site: str, directory: Path, b: Bundle, addresses: dict[str, str], entry_site: str,
           procs: dict[str, subprocess.Popen], logs: Path, *, metrics: bool, host_targets: bool,
           peers: bool, free: bool) -> SiteProcess:
    cmd = [sys.executable, "-m", "planner_runtime", "serve", str(directory), "--host", "127.0.0.1",
           "--exit-with-launcher"]
    metrics_port = None
    if free:  # its ports and the others' come from the handshake (_learn_ports)
        cmd += handshake.site_options(logs, site, metrics)
    else:
        port = int(addresses[site].rsplit(":", 1)[1])
        port_file = handshake.port_file(logs, site)
        port_file.unlink(missing_ok=True)  # a previous run's
        cmd += ["--port", str(port), "--port-file", str(port_file)]
        if peers:  # every site learns where the others are, and where it is itself
            cmd += [f"--peer={s}={a}" for s, a in addresses.items()]
        metrics_port = port + 1000 if metrics else None
        if metrics_port:
            cmd += ["--metrics-port", str(metrics_port)]
    if host_targets:
        cmd.append("--host-targets")
    log = logs / f"{site}.log"
    log.unlink(missing_ok=True)
    procs[site] = _spawn(cmd, log)
    runs = (f"host build instead of {b.sites[site].target}" if host_targets and needs_host_targets(b)
            else b.sites[site].target)
    models = ([b.app] if site == entry_site else []) + b.local_nodes()
    return SiteProcess(site=site, address=addresses[site], log=log, models=models, compiled_for=runs, command=cmd,
                       metrics_url=f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None)


def _learn_ports(serving: Serving, procs: dict[str, subprocess.Popen], logs: Path, timeout: float) -> dict[str, str]:
    """The ports each site bound (port 0), told to every site: where each serves now."""
    try:
        ports = handshake.await_ports(logs, list(procs), lambda: _check_started(procs, logs), timeout)
    except handshake.HandshakeError as exc:
        raise PlannerError(f"{exc} (logs: {logs})") from None
    addresses = {site: f"127.0.0.1:{p.port}" for site, p in ports.items()}
    handshake.announce_peers(logs, addresses)
    for s in serving.sites:
        s.address = addresses[s.site]
        metrics_port = ports[s.site].metrics_port
        s.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None
        s.command = handshake.pinned(s.command, ports[s.site])  # a restart comes back where the others look
    return addresses


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:  # appended: a restarted site's log keeps what it said before
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)


def _watch(procs: dict[str, subprocess.Popen], sites: dict[str, SiteProcess], logs: Path, seconds: float | None,
           restarts: int, on_restart: Callable[[str, str], None]) -> None:
    """Until `seconds` have passed (or forever). A site that exits is started again while
    `restarts` last (it serves again once it has loaded; requests meanwhile get UNAVAILABLE);
    after that it ends the wait with its log's tail."""
    end = None if seconds is None else time.monotonic() + seconds
    while end is None or time.monotonic() < end:
        time.sleep(0.3)
        for site, p in procs.items():
            if p.poll() is None:
                continue
            log = logs / f"{site}.log"
            if restarts <= 0:
                raise _died(site, p.returncode, log, "")
            restarts -= 1
            why = f"exited with {_exit_text(p.returncode)}"
            on_restart(site, why)
            handshake.port_file(logs, site).unlink(missing_ok=True)
            with open(log, "a") as fh:
                fh.write(f"--- planner up: site {site} {why}; started again ---\n")
            procs[site] = _spawn(sites[site].command, log)
