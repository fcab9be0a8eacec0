"""planner bench: time requests through the running ensemble (planner.local.bench), beside the
plan's prediction and the same placement predicted for this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from planner.cli.common import OutArg, err, out, user_errors


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


@user_errors
def bench(
    out_dir: OutArg,
    n: Annotated[int, typer.Option("-n", "--requests", min=1, help="requests to time")] = 100,
    warmup: Annotated[int, typer.Option(min=0, help="requests sent first and not timed")] = 3,
    timeout: Annotated[float, typer.Option(help="deadline of each request, seconds")] = 30.0,
    entry: Annotated[Optional[str], typer.Option(help="entry address (default: where `planner up OUT` serves the "
                                                 "entry site, else bundle.yaml's)")] = None,
    inputs: Annotated[Optional[list[str]], typer.Option("--input", help="SOURCE=FILE (.npy or image) instead of "
                                                        "random tensors; repeatable")] = None,
    predict: Annotated[bool, typer.Option("--predict/--no-predict", help="predict the same placement on this "
                                          "machine (host profiles, loopback links)")] = True,
    app_file: Annotated[Optional[Path], typer.Option("--app", help="the app.yaml to predict from "
                                                     "[default: the one plan.json was solved from]")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="measure the host profiles again (not from the "
                                          "cache) before the requests")] = False,
    wait: Annotated[float, typer.Option("--wait", min=0, help="seconds to wait for every site to be serving")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Time N requests through the running ensemble (`planner up OUT`): p50/p95/p99, per model and per hop,
    beside the plan's prediction and the same placement predicted for this machine."""
    from planner.local.bench import bench_inputs, run_bench
    from planner.local.prediction import host_prediction
    from planner.local.sites import wait_for_sites

    given = bench_inputs(out_dir, inputs or [])
    host = {"status": "not computed", "why": "--no-predict"}
    if predict:
        if not as_json:
            err.print("predicting the plan's placement on this machine (host profiles, loopback links)",
                      highlight=False)
        host = host_prediction(out_dir, app_file, refresh)
    if not entry:
        wait_for_sites(out_dir, wait, lambda: err.print("waiting for the sites to serve (`planner up OUT`)",
                                                        highlight=False))
    report = run_bench(out_dir, n, warmup, timeout, entry, inputs=given, host=host)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    show(report, n)


def show(report: dict, n: int) -> None:
    e = report["e2e_ms"]
    host = report["host_prediction"]
    out.print(f"{report['app']}: {n} requests via {report['entry']['site']} ({report['entry']['address']})",
              highlight=False)
    out.print(f"end-to-end ms: p50 {e['p50']}  p95 {e['p95']}  p99 {e['p99']}  mean {e['mean']}", highlight=False)
    if report["host_predicted_ms"] is not None:
        out.print(f"predicted on this machine: {report['host_predicted_ms']:g} ms "
                  f"(measured p50 {report['error_pct']:+g}%)", highlight=False)
        for line in host.get("assumptions", []) + host.get("notes", []):
            out.print(f"  - {line}", highlight=False)
    else:
        out.print(f"predicted on this machine: {host.get('status')} ({host.get('why', '')})", highlight=False)
    plan_ms = report["plan_latency_ms"]
    out.print("the plan's prediction (its sites' hardware and links): "
              + (f"{plan_ms:g} ms" if plan_ms is not None else "no OUT/plan.json"), highlight=False)
    t = Table(title="per model (ms)")
    for col in ("model", "site", "p50", "p95", "p99", "this machine", "plan"):
        t.add_column(col, justify="left" if col in ("model", "site") else "right")
    for m in report["models"]:
        t.add_row(m["model"], m["site"], *(_fmt(m[k]) for k in ("p50", "p95", "p99", "host_ms", "plan_ms")))
    out.print(t)
    t = Table(title="per hop (ms: round trip minus the receiver's handling)")
    for col in ("hop", "flows", "bytes", "p50", "p95", "p99", "this machine", "plan"):
        t.add_column(col, justify="left" if col in ("hop", "flows") else "right")
    for h in report["hops"]:
        t.add_row(h["hop"], h["flows"], str(h["bytes"]),
                  *(_fmt(h[k]) for k in ("p50", "p95", "p99", "host_ms", "plan_ms")))
    out.print(t)
