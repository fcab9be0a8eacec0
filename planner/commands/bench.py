"""planner bench: time requests through the ensemble `planner up OUT` serves, beside predictions.

It sends N requests to the entry site and reports end-to-end percentiles with the per-model and
per-hop breakdown the runtime returns. Two predictions stand beside the measurement: the plan's
own (OUT/plan.json: the sites' hardware and links) and the same placement re-evaluated for this
machine (host profiles, loopback links; planner/host_prediction.py), which is the one a run on
loopback can confirm or refute.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from planner.cli import app, err, out, user_errors
from planner.commands.runtime_cmds import OutArg, entry_bundle, is_serving, live_endpoints, site_bundles
from planner.errors import InputError, PlannerError


def _random_inputs(graph, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = {}
    for t in graph.inputs:
        shape = [max(1, d) for d in t.tensor.shape]
        dt = t.tensor.dtype
        if dt == "bytes":
            inputs[t.key] = np.full(shape, b"x", dtype=object)
        elif dt.startswith("float"):
            inputs[t.key] = rng.random(shape).astype(dt)
        else:
            inputs[t.key] = np.zeros(shape, dtype=dt)
    return inputs


def _pct(values: list[float]) -> dict:
    import numpy as np

    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "n": 0}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "mean": round(float(a.mean()), 3), "n": len(values)}


def _read_plan(out_dir: Path) -> dict:
    path = Path(out_dir) / "plan.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a plan.json: {exc}", file=str(path)) from None


def plan_prediction(plan: dict) -> dict:
    """The plan's own numbers per model and per transfer (the sites' hardware and links)."""
    models, transfers = {}, {}
    for p in plan.get("paths") or []:
        for t in p.get("terms") or []:
            if t.get("kind") == "model":
                models[t["name"]] = {"site": t.get("site"), "ms": t.get("ms")}
            elif t.get("kind") == "transfer":
                transfers[t["name"]] = {"ms": t.get("ms"), "route": t.get("route"), "bytes": t.get("bytes")}
    return {"latency_ms": plan.get("latency_ms"), "models": models, "transfers": transfers}


def host_prediction(out_dir: Path, app_file: Path | None = None, refresh: bool = False) -> dict:
    """The plan's placement re-evaluated with this machine's profiles and loopback links; or why not."""
    from planner.ensemble_run import host_profiles
    from planner.host_prediction import predict_on_host
    from planner.loader import load_app
    from planner.profiling.cache import sha256_file

    plan = _read_plan(out_dir)
    if not plan.get("placement"):
        return {"status": "not available", "why": f"no placement in {Path(out_dir) / 'plan.json'}"}
    source = plan.get("source") or {}
    if not app_file and not source.get("file"):
        return {"status": "not available", "why": "plan.json does not name its app.yaml (pass --app)"}
    path = Path(app_file or source["file"])
    if not path.is_file():
        raise InputError(f"--app: {path} not found" if app_file else
                         f"{Path(out_dir) / 'plan.json'} was solved from {path}, which no longer exists "
                         "(pass --app APP, or --no-predict)")
    notes = []
    if source.get("sha256") and sha256_file(path) != source["sha256"]:
        notes.append(f"{path} changed since `planner solve`; the prediction uses the file as it is now")
    la = load_app(path, check=False, overrides=source.get("overrides") or ())
    profiles = host_profiles(la, refresh=refresh)
    pred = predict_on_host(la, plan["placement"], profiles)
    return {"status": "ok", "app": str(path), **pred.as_dict(), "notes": notes}


def wait_for_sites(out_dir: Path, timeout_s: float, on_wait=lambda: None) -> dict[str, str]:
    """Until every site answers its gRPC health check as SERVING (so `planner up OUT &` then
    `planner bench OUT` works); the addresses, from a running `planner up` or bundle.yaml."""
    bundles = site_bundles(out_dir)
    end = time.monotonic() + timeout_s
    told = False
    while True:
        addresses = {site: b.sites[site].address for site, _, b in bundles} | live_endpoints(out_dir)
        down = [f"{site} ({address})" for site, address in sorted(addresses.items()) if not is_serving(address)]
        if not down:
            return addresses
        if time.monotonic() > end:
            raise PlannerError(f"not serving after {timeout_s:g} s: {', '.join(down)}; start the sites with "
                               f"`planner up {out_dir}`")
        if not told:
            on_wait()
            told = True
        time.sleep(0.5)


def run_bench(out_dir: Path, n: int, warmup: int = 3, timeout_s: float = 30.0, entry: str | None = None,
              inputs: dict | None = None, host: dict | None = None) -> dict:
    """Send `warmup` + n requests through the entry site; the report as a dict (also `planner bench --json`).

    `host` is host_prediction(out_dir), computed before the requests so it does not compete with them."""
    import grpc

    from runtime.client import OipClient
    from runtime.executor import Graph

    bundles = site_bundles(out_dir)
    entry_site, b = entry_bundle(bundles)
    address = entry or live_endpoints(out_dir).get(entry_site) or b.sites[entry_site].address
    graph = Graph(b)
    inputs = inputs or _random_inputs(graph)
    dtypes = {t.key: t.tensor.dtype for t in graph.inputs}
    client = OipClient(address, b.runtime.max_message_bytes)
    e2e, server, models, hops = [], [], {}, {}
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            try:
                _, params = client.infer(b.app, inputs, timeout=timeout_s, dtypes=dtypes)
            except grpc.RpcError as exc:
                raise PlannerError(f"request {i + 1} to {b.app} at {address} failed: "
                                   f"{exc.code().name}: {exc.details()}") from None
            ms = (time.perf_counter() - t0) * 1000
            if i < warmup:
                continue
            e2e.append(ms)
            server.append(params.get("server_ms", 0.0))
            per_model, per_hop = {}, {}
            for kind, name, site, t_ms, nbytes, *rest in params.get("timings", []):
                if kind == "model":
                    per_model.setdefault((name, site), 0.0)
                    per_model[(name, site)] += t_ms
                else:
                    key = (name, rest[0] if rest else "")
                    acc = per_hop.setdefault(key, [0.0, 0])
                    acc[0] += t_ms
                    acc[1] += nbytes
            for k, v in per_model.items():
                models.setdefault(k, []).append(v)
            for k, (v, nb) in per_hop.items():
                hops.setdefault(k, {"ms": [], "bytes": nb})["ms"].append(v)
    finally:
        client.close()
    planned = plan_prediction(_read_plan(out_dir))
    host = host or {"status": "not computed"}
    here = host if host.get("status") == "ok" else {}
    e2e_ms = _pct(e2e)
    p50 = e2e_ms["p50"]
    report = {
        "app": b.app, "entry": {"site": entry_site, "address": address}, "requests": n, "warmup": warmup,
        "e2e_ms": e2e_ms, "entry_server_ms": _pct(server),
        "plan_latency_ms": planned.get("latency_ms"),
        "host_prediction": host,
        "host_predicted_ms": here.get("latency_ms"),
        "error_pct": round(100 * (p50 - here["latency_ms"]) / here["latency_ms"], 1) if here else None,
        "models": [{"model": name, "site": site, **_pct(v),
                    "plan_ms": (planned["models"].get(name) or {}).get("ms"),
                    "host_ms": (here.get("models", {}).get(name) or {}).get("ms")}
                   for (name, site), v in sorted(models.items(), key=lambda kv: kv[0])],
        "hops": [],
    }
    for (name, flows), h in sorted(hops.items()):
        names = [f for f in flows.split(",") if f]

        def worst(table: dict) -> float | None:  # a hop carries its flows in one message
            return max((table[f]["ms"] for f in names if f in table), default=None)

        report["hops"].append({"hop": name, "flows": flows, "bytes": h["bytes"], **_pct(h["ms"]),
                               "plan_ms": worst(planned["transfers"]),
                               "host_ms": worst(here.get("transfers", {}))})
    return report


def bench_inputs(out_dir: Path, items: list[str]) -> dict | None:
    from planner.ensemble_run import load_inputs, match_inputs
    from runtime.executor import Graph

    if not items:
        return None
    _, b = entry_bundle(site_bundles(out_dir))
    return match_inputs(load_inputs(items), Graph(b))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


@app.command()
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
