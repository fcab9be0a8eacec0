"""planner up: run a plan's site bundles on this machine.

`planner up OUT` starts one `python -m runtime serve` process per OUT/sites/<site>/ on loopback,
waits until each answers its gRPC health check, prints the endpoints and stays in the foreground
until Ctrl-C (or `--for SECONDS`). `planner bench` (planner/commands/bench.py) measures them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from planner.cli import app, out, user_errors
from planner.errors import InputError, PlannerError

OutArg = Annotated[Path, typer.Argument(help="the output directory of `planner solve -o OUT`", show_default=False)]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
ENDPOINTS = "endpoints.json"  # OUT/logs/endpoints.json: where `planner up` serves, while it runs


def live_endpoints(out_dir: Path) -> dict[str, str]:
    """{site: address} of a running `planner up OUT`, or {} (then bundle.yaml's addresses hold)."""
    try:
        return json.loads((Path(out_dir) / "logs" / ENDPOINTS).read_text())
    except (OSError, ValueError):
        return {}


def site_bundles(out_dir: Path) -> list[tuple[str, Path, object]]:
    from pydantic import ValidationError

    from runtime.bundle_format import BUNDLE_FILE, Bundle

    files = sorted((Path(out_dir) / "sites").glob(f"*/{BUNDLE_FILE}"))
    if not files:
        raise InputError(f"no site bundles under {Path(out_dir) / 'sites'} (write them with `planner solve APP -o OUT`)")
    found = []
    for f in files:
        try:
            b = Bundle.read(f.parent)
        except (ValidationError, ValueError, OSError) as exc:
            raise InputError(f"{f}: not a valid bundle: {str(exc).splitlines()[0]}", file=str(f)) from None
        found.append((b.site, f.parent, b))
    return found


def entry_bundle(bundles) -> tuple[str, object]:
    """The site hosting a source: where the ensemble is served as one model."""
    for site, _, b in bundles:
        if any(s.site == site for s in b.sources.values()):
            return site, b
    raise InputError("no site bundle hosts a source: there is no entry to the ensemble")


def _needs_host_targets(b) -> list[str]:
    return [f"{n} ({s.compiled_for or 'its target'})" for n, s in b.nodes.items()
            if s.site == b.site and s.host_fallback and s.host_fallback != s.artifact]


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(procs: dict) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@app.command()
@user_errors
def up(
    out_dir: OutArg,
    host_targets: Annotated[bool, typer.Option("--host-targets", help="run models compiled for this machine "
                                               "(the bundles' host_fallback) at sites whose hardware is not this one")] = False,
    seconds: Annotated[Optional[float], typer.Option("--for", help="stop after this many seconds "
                                                     "(scripts and tests; default: until Ctrl-C)")] = None,
    metrics: Annotated[bool, typer.Option("--metrics/--no-metrics", help="Prometheus metrics on gRPC port + 1000")] = True,
    ready_timeout: Annotated[float, typer.Option(help="seconds to wait for every site to be ready")] = 120.0,
    base_port: Annotated[Optional[int], typer.Option("--base-port", min=1, max=65535 - 1100,
                                                     help="serve the sites on ports P, P+1, ... (in site name "
                                                     "order) instead of bundle.yaml's addresses")] = None,
) -> None:
    """Start every site's runtime from OUT/sites/<site>/ on loopback (one process each) and wait for Ctrl-C."""
    bundles = site_bundles(out_dir)
    entry_site, entry = entry_bundle(bundles)
    foreign = []
    for site, _, b in bundles:
        host = b.sites[site].address.rsplit(":", 1)[0]
        if host not in LOOPBACK and not base_port:
            raise InputError(f"site {site}: address {b.sites[site].address} is not on loopback; `planner up` "
                             "runs every site on this machine (--base-port P serves them on loopback ports)")
        if _needs_host_targets(b):
            foreign.append(f"{site}: {', '.join(_needs_host_targets(b))}")
    if foreign and not host_targets:
        raise InputError(f"models compiled for their site's hardware, not this machine ({'; '.join(foreign)}); "
                         "run `planner up OUT --host-targets` to use their host builds")
    addresses = {site: (f"127.0.0.1:{base_port + i}" if base_port else b.sites[site].address)
                 for i, (site, _, b) in enumerate(bundles)}
    logs = Path(out_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    rows = []
    stopping = {"signal": None}

    def on_term(signum, frame):
        stopping["signal"] = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    # a shell script's `planner up OUT &` starts with SIGINT ignored; `kill -INT` must still stop it
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for site, d, b in bundles:
            port = int(addresses[site].rsplit(":", 1)[1])
            cmd = [sys.executable, "-m", "runtime", "serve", str(d), "--host", "127.0.0.1", "--port", str(port)]
            if base_port:  # every site learns where the others are, and where it is itself
                cmd += [f"--peer={s}={a}" for s, a in addresses.items()]
            mport = port + 1000 if metrics else None
            if mport:
                cmd += ["--metrics-port", str(mport)]
            if host_targets:
                cmd.append("--host-targets")
            log = logs / f"{site}.log"
            with open(log, "wb") as fh:
                procs[site] = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
            note = (f"host build instead of {b.sites[site].target}" if host_targets and _needs_host_targets(b)
                    else b.sites[site].target)
            models = ([b.app] if site == entry_site else []) + b.local_nodes()
            rows.append((site, addresses[site], f"http://127.0.0.1:{mport}/metrics" if mport else "-",
                         ", ".join(models) or "-", note, str(log)))
        _wait_ready(addresses, procs, logs, ready_timeout)
        table = Table(title=f"{entry.app}: {len(procs)} site(s) on loopback")
        for col in ("site", "gRPC (KServe v2)", "metrics", "models", "compiled for", "log"):
            table.add_column(col)
        for r in rows:
            table.add_row(*r)
        out.print(table)
        if host_targets:
            out.print("--host-targets: models of sites whose hardware is not this machine run their host builds; "
                      "latencies are this machine's, not the sites'.", highlight=False)
        (logs / ENDPOINTS).write_text(json.dumps(addresses))
        out.print(f"ready: {entry.app} at {addresses[entry_site]} "
                  f"(entry site {entry_site}); Ctrl-C stops", highlight=False)
        sys.stdout.flush()
        end = None if seconds is None else time.monotonic() + seconds
        while end is None or time.monotonic() < end:
            time.sleep(0.3)
            dead = {s: p.returncode for s, p in procs.items() if p.poll() is not None}
            if dead:
                site, code = next(iter(dead.items()))
                raise PlannerError(f"site {site} exited with code {code}:\n{_tail(logs / f'{site}.log')}")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        _stop(procs)
        (logs / ENDPOINTS).unlink(missing_ok=True)
    out.print("stopped", highlight=False)


def is_serving(address: str) -> bool:
    """The gRPC server at `address` answers its health check as SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as ch:
        try:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1).status
        except grpc.RpcError:
            return False
    return status == health_pb2.HealthCheckResponse.SERVING


def _wait_ready(addresses: dict[str, str], procs: dict, logs: Path, timeout: float) -> None:
    end = time.monotonic() + timeout
    for site, address in addresses.items():
        while not is_serving(address):
            if procs[site].poll() is not None:
                raise PlannerError(f"site {site} exited with code {procs[site].returncode} while starting:\n"
                                   f"{_tail(logs / f'{site}.log')}")
            if time.monotonic() > end:
                raise PlannerError(f"site {site} at {address} not ready after {timeout:g} s "
                                   f"(log: {logs / f'{site}.log'})")
            time.sleep(0.1)
