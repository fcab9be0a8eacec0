"""planner up: run a plan's site bundles on this machine (planner.local.up); `planner bench`
measures them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from planner.cli.common import OutArg, err, out, user_errors


@user_errors
def up(
    out_dir: OutArg,
    host_targets: Annotated[bool, typer.Option("--host-targets", help="run models compiled for this machine "
                                               "(the bundles' host_fallback) at sites whose hardware is not this one")] = False,
    seconds: Annotated[Optional[float], typer.Option("--for", help="stop after this many seconds "
                                                     "(scripts and tests; default: until Ctrl-C)")] = None,
    metrics: Annotated[bool, typer.Option("--metrics/--no-metrics", help="Prometheus metrics on gRPC port + 1000")] = True,
    ready_timeout: Annotated[float, typer.Option(help="seconds to wait for every site to be ready")] = 120.0,
    base_port: Annotated[Optional[int], typer.Option("--base-port", min=0, max=65535 - 1100,
                                                     help="serve the sites on ports P, P+1, ... (in site name "
                                                     "order; further replicas of a site on the ports after those) "
                                                     "instead of bundle.yaml's addresses; 0: on free ports the OS "
                                                     "picks")] = None,
    restarts: Annotated[int, typer.Option("--restarts", min=0, help="start a site (replica) that exits again, this "
                                          "many times at most in all (default 0: a site that exits stops every "
                                          "site)")] = 0,
) -> None:
    """Start every site's runtime from OUT/sites/<site>/ on loopback (one process per replica the plan gives
    the site) and wait for Ctrl-C."""
    from planner.local.up import Serving, serve

    def ready(serving: Serving) -> None:
        sites = len({s.site for s in serving.sites})
        replicas = f", {len(serving.sites)} processes" if len(serving.sites) > sites else ""
        table = Table(title=f"{serving.app}: {sites} site(s){replicas} on loopback")
        for col in ("site", "gRPC (KServe v2)", "metrics", "models", "compiled for", "log"):
            table.add_column(col)
        for s in serving.sites:
            table.add_row(s.name, s.address, s.metrics_url or "-", ", ".join(s.models) or "-", s.compiled_for,
                          str(s.log))
        out.print(table)
        if host_targets:
            out.print("--host-targets: models of sites whose hardware is not this machine run their host builds; "
                      "latencies are this machine's, not the sites'.", highlight=False)
        out.print(f"ready: {serving.app} at {serving.entry_address} "
                  f"(entry site {serving.entry_site}); Ctrl-C stops", highlight=False)
        sys.stdout.flush()

    def restarted(site: str, why: str) -> None:
        err.print(f"site {site} {why}; starting it again", highlight=False)

    serve(Path(out_dir), host_targets=host_targets, seconds=seconds, metrics=metrics, ready_timeout=ready_timeout,
          base_port=base_port, restarts=restarts, on_ready=ready, on_restart=restarted)
    out.print("stopped", highlight=False)
