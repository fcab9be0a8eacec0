"""planner up / planner bench: run a plan's site bundles on this machine and measure them.

`planner up OUT` starts one `python -m runtime serve` process per OUT/sites/<site>/ on loopback,
waits until each answers its gRPC health check, prints the endpoints and stays in the foreground
until Ctrl-C (or `--for SECONDS`). `planner bench OUT -n N` sends N requests through the entry
site and reports end-to-end percentiles with the per-model and per-hop breakdown the runtime
returns, beside the prediction in OUT/plan.json.
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


def _site_bundles(out_dir: Path) -> list[tuple[str, Path, object]]:
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


def _entry(bundles) -> tuple[str, object]:
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
) -> None:
    """Start every site's runtime from OUT/sites/<site>/ on loopback (one process each) and wait for Ctrl-C."""
    bundles = _site_bundles(out_dir)
    entry_site, entry_bundle = _entry(bundles)
    foreign = []
    for site, _, b in bundles:
        host = b.sites[site].address.rsplit(":", 1)[0]
        if host not in LOOPBACK:
            raise InputError(f"site {site}: address {b.sites[site].address} is not on loopback; "
                             "`planner up` runs every site on this machine")
        if _needs_host_targets(b):
            foreign.append(f"{site}: {', '.join(_needs_host_targets(b))}")
    if foreign and not host_targets:
        raise InputError(f"models compiled for their site's hardware, not this machine ({'; '.join(foreign)}); "
                         "run `planner up OUT --host-targets` to use their host builds")
    logs = Path(out_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    rows = []
    stopping = {"signal": None}

    def on_term(signum, frame):
        stopping["signal"] = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        for site, d, b in bundles:
            port = int(b.sites[site].address.rsplit(":", 1)[1])
            cmd = [sys.executable, "-m", "runtime", "serve", str(d), "--host", "127.0.0.1"]
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
            rows.append((site, b.sites[site].address, f"http://127.0.0.1:{mport}/metrics" if mport else "-",
                         ", ".join(models) or "-", note, str(log)))
        _wait_ready({s: r[1] for s, r in zip(procs, rows)}, procs, logs, ready_timeout)
        table = Table(title=f"{entry_bundle.app}: {len(procs)} site(s) on loopback")
        for col in ("site", "gRPC (KServe v2)", "metrics", "models", "compiled for", "log"):
            table.add_column(col)
        for r in rows:
            table.add_row(*r)
        out.print(table)
        if host_targets:
            out.print("--host-targets: models of sites whose hardware is not this machine run their host builds; "
                      "latencies are this machine's, not the sites'.", highlight=False)
        out.print(f"ready: {entry_bundle.app} at {entry_bundle.sites[entry_site].address} "
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
        _stop(procs)
    out.print("stopped", highlight=False)


def _wait_ready(addresses: dict[str, str], procs: dict, logs: Path, timeout: float) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    end = time.monotonic() + timeout
    for site, address in addresses.items():
        with grpc.insecure_channel(address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                if procs[site].poll() is not None:
                    raise PlannerError(f"site {site} exited with code {procs[site].returncode} while starting:\n"
                                       f"{_tail(logs / f'{site}.log')}")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > end:
                    raise PlannerError(f"site {site} at {address} not ready after {timeout:g} s "
                                       f"(log: {logs / f'{site}.log'})")
                time.sleep(0.1)


# -- bench -------------------------------------------------------------------------------------
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


def _prediction(out_dir: Path) -> dict:
    path = Path(out_dir) / "plan.json"
    if not path.exists():
        return {}
    plan = json.loads(path.read_text())
    models, transfers = {}, {}
    for p in plan.get("paths") or []:
        for t in p.get("terms") or []:
            if t.get("kind") == "model":
                models[t["name"]] = {"site": t.get("site"), "ms": t.get("ms")}
            elif t.get("kind") == "transfer":
                transfers[t["name"]] = {"ms": t.get("ms"), "route": t.get("route"), "bytes": t.get("bytes")}
    return {"latency_ms": plan.get("latency_ms"), "models": models, "transfers": transfers}


def run_bench(out_dir: Path, n: int, warmup: int = 3, timeout_s: float = 30.0, entry: str | None = None,
              inputs: dict | None = None) -> dict:
    """Send `warmup` + n requests through the entry site; the report as a dict (also `planner bench --json`)."""
    import grpc

    from runtime.client import OipClient
    from runtime.executor import Graph

    bundles = _site_bundles(out_dir)
    entry_site, b = _entry(bundles)
    address = entry or b.sites[entry_site].address
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
    pred = _prediction(out_dir)
    report = {
        "app": b.app, "entry": {"site": entry_site, "address": address}, "requests": n, "warmup": warmup,
        "e2e_ms": _pct(e2e), "entry_server_ms": _pct(server),
        "predicted_latency_ms": pred.get("latency_ms"),
        "models": [{"model": name, "site": site, **_pct(v),
                    "predicted_ms": (pred.get("models", {}).get(name) or {}).get("ms")}
                   for (name, site), v in sorted(models.items(), key=lambda kv: kv[0])],
        "hops": [],
    }
    for (name, flows), h in sorted(hops.items()):
        terms = [pred.get("transfers", {}).get(f) for f in flows.split(",") if f]
        terms = [t for t in terms if t]
        report["hops"].append({"hop": name, "flows": flows, "bytes": h["bytes"], **_pct(h["ms"]),
                               "predicted_ms": max((t["ms"] for t in terms), default=None)})
    return report


@app.command()
@user_errors
def bench(
    out_dir: OutArg,
    n: Annotated[int, typer.Option("-n", "--requests", min=1, help="requests to time")] = 100,
    warmup: Annotated[int, typer.Option(min=0, help="requests sent first and not timed")] = 3,
    timeout: Annotated[float, typer.Option(help="deadline of each request, seconds")] = 30.0,
    entry: Annotated[Optional[str], typer.Option(help="entry address (default: the entry site's in bundle.yaml)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Time N requests through the running ensemble (`planner up OUT`): p50/p95/p99, per model and per hop."""
    report = run_bench(out_dir, n, warmup, timeout, entry)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    e = report["e2e_ms"]
    pred = report["predicted_latency_ms"]
    out.print(f"{report['app']}: {n} requests via {report['entry']['site']} ({report['entry']['address']})",
              highlight=False)
    out.print(f"end-to-end ms: p50 {e['p50']}  p95 {e['p95']}  p99 {e['p99']}  mean {e['mean']}"
              + (f"   plan predicts {pred:g}" if pred is not None else "   (no OUT/plan.json prediction)"),
              highlight=False)
    t = Table(title="per model (ms)")
    for col in ("model", "site", "p50", "p95", "p99", "predicted"):
        t.add_column(col, justify="left" if col in ("model", "site") else "right")
    for m in report["models"]:
        t.add_row(m["model"], m["site"], *(f"{m[k]:.3f}" for k in ("p50", "p95", "p99")),
                  "-" if m["predicted_ms"] is None else f"{m['predicted_ms']:.3f}")
    out.print(t)
    t = Table(title="per hop (ms: round trip minus the receiver's handling)")
    for col in ("hop", "flows", "bytes", "p50", "p95", "p99", "predicted"):
        t.add_column(col, justify="left" if col in ("hop", "flows") else "right")
    for h in report["hops"]:
        t.add_row(h["hop"], h["flows"], str(h["bytes"]), *(f"{h[k]:.3f}" for k in ("p50", "p95", "p99")),
                  "-" if h["predicted_ms"] is None else f"{h['predicted_ms']:.3f}")
    out.print(t)
