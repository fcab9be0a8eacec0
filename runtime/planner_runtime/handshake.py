"""Sites started together on ports the OS picks: `serve --port 0 --port-file F --peers-file P`.

A port found free by one process and bound later by another can be taken in between (by any
process binding port 0 or connecting out). So no launcher picks ports: each site binds port 0,
writes the ports it got to its port file, and waits for the peers file; the launcher reads
every port file, writes the peers file (every site's addresses, one per replica), and each site
then answers its health check as SERVING, knowing where the others are. Both sides live here: the site's
(`report_ports`, `await_peers`) and the launcher's (`site_options`, `await_ports`,
`announce_peers`). Files are written whole (a temporary file renamed), never seen half-written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PEERS_FILE = "peers.json"


class HandshakeError(RuntimeError):
    pass


@dataclass(frozen=True)
class SitePorts:
    port: int
    metrics_port: int | None


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def wait_for_json(path: Path, give_up: Callable[[], str | None], poll_s: float = 0.05) -> dict:
    """The JSON object at `path` once written; HandshakeError with give_up()'s reason as soon as it has one."""
    while True:
        try:
            return json.loads(Path(path).read_text())
        except FileNotFoundError:
            pass
        reason = give_up()
        if reason:
            raise HandshakeError(reason)
        time.sleep(poll_s)


# -- the site's side (python -m planner_runtime serve) -----------------------------------------
def report_ports(path: Path, port: int, metrics_port: int | None) -> None:
    """Also this process's pid: a launcher tells its own site from another process on the port."""
    write_json(path, {"pid": os.getpid(), "port": port, "metrics_port": metrics_port})


def await_peers(path: Path, launcher: int) -> dict[str, list[str]]:
    """The peers file's {site: [HOST:PORT, ...]} (an address per replica), once the launcher (this
    process's parent when it started, `launcher`) has written it; HandshakeError when the launcher
    exits first (this process would otherwise wait forever for a file nobody writes)."""
    peers = wait_for_json(path, lambda: "the launcher exited before writing it" if os.getppid() != launcher else None)
    peers = {s: [a] if isinstance(a, str) else a for s, a in peers.items()} if isinstance(peers, dict) else peers
    if not isinstance(peers, dict) or not all(isinstance(addresses, list) and addresses and
                                              all(isinstance(a, str) and ":" in a for a in addresses)
                                              for addresses in peers.values()):
        raise HandshakeError(f"expected {{site: [HOST:PORT, ...]}}, got {peers!r}")
    return peers


# -- the launcher's side ---------------------------------------------------------------------
def port_file(run_dir: Path, site: str) -> Path:
    return Path(run_dir) / f"{site}.ports.json"


def site_options(run_dir: Path, site: str, metrics: bool = True) -> list[str]:
    """`serve` options for a site started with the others on ports the OS picks (files in run_dir,
    where what an earlier launch left is removed first)."""
    own, peers_file = port_file(run_dir, site), Path(run_dir) / PEERS_FILE
    own.unlink(missing_ok=True)
    peers_file.unlink(missing_ok=True)
    return ["--port", "0", "--port-file", str(own), "--peers-file", str(peers_file),
            *(["--metrics-port", "0"] if metrics else [])]


def await_ports(run_dir: Path, sites: list[str], check: Callable[[], None], timeout_s: float) -> dict[str, SitePorts]:
    """Every site's ports once it has bound them. `check` raises when a site has died (the
    launcher knows its processes and how to report them); HandshakeError after timeout_s."""
    end = time.monotonic() + timeout_s
    ports = {}
    for site in sites:
        def give_up() -> str | None:
            check()
            return f"site {site} has not reported its ports after {timeout_s:g} s" if time.monotonic() > end else None

        got = wait_for_json(port_file(run_dir, site), give_up)
        ports[site] = SitePorts(port=int(got["port"]), metrics_port=got.get("metrics_port"))
    return ports


def announce_peers(run_dir: Path, addresses: dict[str, str | list[str]]) -> None:
    """Tell every waiting site where the others are: the sites go on to serve."""
    write_json(Path(run_dir) / PEERS_FILE, addresses)


def pinned(command: list[str], ports: SitePorts) -> list[str]:
    """A site's `serve` command with the ports it was given in place of port 0: started again,
    it comes back where the other sites (told once, by the peers file) look for it."""
    fixed = {"--port": ports.port, "--metrics-port": ports.metrics_port}
    return [str(fixed[prev]) if prev in fixed and arg == "0" and fixed[prev] is not None else arg
            for prev, arg in zip(["", *command], command)]
