"""Timing requests through the ensemble `planner up OUT` serves, beside predictions (`planner bench`).

It sends N requests to the entry site and reports end-to-end percentiles with the per-model and
per-hop breakdown the runtime returns. Two predictions stand beside the measurement: the plan's
own (OUT/plan.json: the sites' hardware and links) and the same placement re-evaluated for this
machine (host profiles, loopback links; planner.local.prediction), which is the one a run on
loopback can confirm or refute.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from planner.errors import PlannerError
from planner.local.load_test import percentiles, request_times
from planner.local.prediction import plan_prediction, read_plan
from planner.local.run import load_inputs, match_inputs
from planner.local.sites import entry_bundle, live_endpoints, live_replicas, site_bundles
from planner_runtime.executor import Graph


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the entry's declared shapes: floats uniform in [0, 1), integers 0, bytes b"x"."""
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


def run_bench(out_dir: Path, n: int, warmup: int = 3, timeout_s: float = 30.0, entry: str | None = None,
              inputs: dict | None = None, host: dict | None = None, every_s: float = 0.0) -> dict:
    """Send `warmup` + n requests through the entry site, in turn to each of its replicas that `planner up`
    serves, one at a time, each `every_s` after the last one left or once that one answered,
    whichever is later; the report as a dict (also `planner bench --json`).

    `host` is host_prediction(out_dir), computed before the requests so it does not compete with them."""
    import grpc

    from planner_runtime.client import OipClient

    bundles = site_bundles(out_dir)
    entry_site, b = entry_bundle(bundles)
    addresses = ([entry] if entry else live_replicas(out_dir, entry_site)
                 or [live_endpoints(out_dir).get(entry_site) or b.sites[entry_site].address])
    graph = Graph(b)
    inputs = inputs or random_inputs(graph)
    dtypes = {t.key: t.tensor.dtype for t in graph.inputs}
    clients = [OipClient(a, b.runtime.max_message_bytes) for a in addresses]
    e2e, server, models, hops = [], [], {}, {}
    due = time.perf_counter()
    try:
        for i in range(warmup + n):
            client, address = clients[i % len(clients)], addresses[i % len(clients)]
            time.sleep(max(0.0, due - time.perf_counter()))
            t0 = time.perf_counter()
            due = t0 + every_s
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
            times = request_times(params.get("timings", []))
            for k, v in times.models.items():
                models.setdefault(k, []).append(v)
            for k, (v, nb) in times.hops.items():
                hops.setdefault(k, {"ms": [], "bytes": nb})["ms"].append(v)
    finally:
        for client in clients:
            client.close()
    planned = plan_prediction(read_plan(out_dir))
    host = host or {"status": "not computed"}
    here = host if host.get("status") == "ok" else {}
    e2e_ms = percentiles(e2e)
    p50 = e2e_ms["p50"]
    report = {
        "app": b.app, "entry": {"site": entry_site, "address": addresses[0], "addresses": addresses},
        "requests": n, "warmup": warmup, "every_s": every_s,
        "e2e_ms": e2e_ms, "e2e_samples_ms": e2e, "entry_server_ms": percentiles(server),
        "plan_latency_ms": planned.get("latency_ms"),
        "host_prediction": host,
        "host_predicted_ms": here.get("latency_ms"),
        "error_pct": round(100 * (p50 - here["latency_ms"]) / here["latency_ms"], 1) if here else None,
        "models": [{"model": name, "site": site, **percentiles(v),
                    "plan_ms": (planned["models"].get(name) or {}).get("ms"),
                    "host_ms": (here.get("models", {}).get(name) or {}).get("ms")}
                   for (name, site), v in sorted(models.items(), key=lambda kv: kv[0])],
        "hops": [],
    }
    for (name, flows), h in sorted(hops.items()):
        names = [f for f in flows.split(",") if f]

        def worst(table: dict) -> float | None:  # a hop carries its flows in one message
            return max((table[f]["ms"] for f in names if f in table), default=None)

        report["hops"].append({"hop": name, "flows": flows, "bytes": h["bytes"], **percentiles(h["ms"]),
                               "plan_ms": worst(planned["transfers"]),
                               "host_ms": worst(here.get("transfers", {}))})
    return report


def bench_inputs(out_dir: Path, items: list[str]) -> dict[str, np.ndarray] | None:
    """The entry's inputs from `--input SOURCE=FILE` options (None: random ones)."""
    if not items:
        return None
    _, b = entry_bundle(site_bundles(out_dir))
    return match_inputs(load_inputs(items), Graph(b))
