"""Seeded random ensembles that look like real ones, as app dicts (the app.yaml structure).

An ensemble of N models in layers (each model takes 1-3 inputs from earlier layers, mostly
the previous one: fan-out and fan-in), fed by 1-2 sources on edge sites and drained by 1-2
sinks. S sites in tiers: 1-2 edge devices (free, slow, little memory, one replica), some base
stations (MEC servers), the rest cloud regions. Links form a multi-hop topology: edge -- base
station -- cloud, cloud regions joined in a ring with a few chords (not a complete graph).

Numbers:
- latency(m, s) = work(m) x speed(s) x noise(m, s), work log-uniform 2-40 ms on a base
  station, speed: edge 3-6x slower, base station 0.8-1.2, cloud 0.3-0.6 (accelerators);
- memory log-uniform 20-1500 MB per model;
- flow bytes: camera frame 0.3-3 MB from a source, 1 KB-2 MB between models, 0.1-10 KB to a sink;
- rates such that the whole ensemble on base-station speed needs ~max(3, N/20) replicas, so
  several replicas are needed and the per-site `max_replicas` (edge 1, base station 2-4,
  cloud 3-10) binds for the cheap single-site plans;
- SLO = factor (default 1.2) x the latency of a capacity-aware greedy plan (the planner's
  HEFT-style greedy, restricted at each step to sites with room left), kept below the
  all-on-edge latency so that it binds. That plan is a feasibility witness: the instance is
  feasible by construction, and `generate` checks it with the independent evaluator. (The
  planner's plain greedy ignores capacity, so it is often infeasible here; the planner's
  `greedy-capacity` baseline is this very plan, so the solver always gets it, or a better
  baseline, as hint, exactly as in the CLI.)

`python benchmarks/gen_dag.py 30 5 --seed 1` prints one app as YAML.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _logu(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def tiers(n_sites: int, rng: random.Random) -> tuple[int, int, int]:
    """(edge, base station, cloud) counts: 1-2 edge, ~a quarter base stations, the rest cloud."""
    n_edge = 1 if n_sites <= 5 else 2
    n_bs = max(1, round((n_sites - n_edge) * 0.35))
    n_cloud = n_sites - n_edge - n_bs
    if n_cloud < 1:
        n_bs, n_cloud = n_bs - 1, 1
    return n_edge, n_bs, n_cloud


def _sites_and_links(n_sites: int, rng: random.Random) -> tuple[dict, list, dict]:
    n_edge, n_bs, n_cloud = tiers(n_sites, rng)
    edge = [f"edge{i}" for i in range(n_edge)]
    bs = [f"bs{i}" for i in range(n_bs)]
    cloud = [f"cloud{i}" for i in range(n_cloud)]
    sites, speed = {}, {}
    for s in edge:
        sites[s] = {"tier": "edge", "target": "host", "cost_per_hour": 0, "memory_mb": rng.choice([3072, 4096, 6144]),
                    "max_replicas": 1}
        speed[s] = rng.uniform(3.0, 6.0)
    for s in bs:
        sites[s] = {"tier": "base-station", "target": "host", "cost_per_hour": round(rng.uniform(0.25, 0.6), 3),
                    "memory_mb": rng.choice([16384, 32768]), "max_replicas": rng.randint(2, 4)}
        speed[s] = rng.uniform(0.8, 1.2)
    for s in cloud:
        sites[s] = {"tier": "cloud", "target": "host", "cost_per_hour": round(rng.uniform(0.2, 1.0), 3),
                    "memory_mb": rng.choice([32768, 65536]), "max_replicas": rng.randint(3, 10)}
        speed[s] = rng.uniform(0.3, 0.6)

    links = []

    def link(a: str, b: str, bw: float, rtt: float, gb: float) -> None:
        links.append({"between": [a, b], "bandwidth_mbps": bw, "rtt_ms": rtt, "cost_per_gb": gb})

    # each edge device reaches one or two base stations over radio
    for i, e in enumerate(edge):
        first = bs[i % n_bs]
        link(e, first, rng.choice([20, 50, 100]), rng.choice([6, 8, 12]), 0)
        if n_bs > 1 and rng.random() < 0.5:
            other = rng.choice([b for b in bs if b != first])
            link(e, other, rng.choice([20, 50]), rng.choice([10, 15]), 0)
    # each base station backhauls to one cloud region (two for some)
    for i, b in enumerate(bs):
        first = cloud[i % n_cloud]
        link(b, first, rng.choice([500, 1000]), rng.choice([15, 25, 35]), round(rng.uniform(0.02, 0.09), 3))
        if n_cloud > 1 and rng.random() < 0.3:
            other = rng.choice([c for c in cloud if c != first])
            link(b, other, rng.choice([200, 500]), rng.choice([30, 45]), round(rng.uniform(0.02, 0.09), 3))
    # cloud regions: a ring (a chain for two), plus a chord for every four regions
    if n_cloud == 2:
        link(cloud[0], cloud[1], 5000, rng.choice([10, 20, 40]), 0.02)
    elif n_cloud > 2:
        for i in range(n_cloud):
            link(cloud[i], cloud[(i + 1) % n_cloud], 5000, rng.choice([10, 20, 40, 70]), round(rng.uniform(0.01, 0.02), 3))
        have = {frozenset(x["between"]) for x in links}
        for _ in range(n_cloud // 4):
            a, b = rng.sample(cloud, 2)
            if frozenset((a, b)) not in have:
                link(a, b, 2000, rng.choice([40, 80]), 0.02)
                have.add(frozenset((a, b)))
    return sites, links, speed


def _layers(n_models: int, rng: random.Random) -> list[list[str]]:
    names = [f"m{i}" for i in range(n_models)]
    out, i = [], 0
    while i < n_models:
        width = min(n_models - i, rng.choice([1, 1, 2, 2, 3, 4]))
        out.append(names[i:i + width])
        i += width
    return out


def random_app(n_models: int, n_sites: int, seed: int) -> dict:
    """A random app dict without the SLO (see `generate`)."""
    rng = random.Random(seed * 1_000_003 + n_models * 101 + n_sites)
    sites, links, speed = _sites_and_links(n_sites, rng)
    edge = [s for s, d in sites.items() if d["tier"] == "edge"]
    layers = _layers(n_models, rng)

    n_src = 1 if n_models < 10 else rng.choice([1, 2])
    sources = {f"cam{i}": {"site": edge[i % len(edge)]} for i in range(n_src)}
    flows = []
    # first layer: each model reads one source (the first models of the layer cover all sources)
    for j, m in enumerate(layers[0]):
        src = list(sources)[j % n_src] if j < n_src else rng.choice(list(sources))
        flows.append({"from": src, "to": m, "bytes": int(_logu(rng, 3e5, 3e6))})
    if len(layers[0]) < n_src:  # a second source feeds the first model too (fan-in of streams)
        for src in list(sources)[len(layers[0]):]:
            flows.append({"from": src, "to": layers[0][0], "bytes": int(_logu(rng, 3e5, 3e6))})
    for li in range(1, len(layers)):
        for m in layers[li]:
            k = rng.choice([1, 1, 2, 2, 3])
            prev = layers[li - 1]
            earlier = [x for layer in layers[max(0, li - 4):li - 1] for x in layer]
            preds = {rng.choice(prev)}  # mostly the previous layer, some skip connections
            while len(preds) < k and len(preds) < len(prev) + len(earlier):
                preds.add(rng.choice(prev) if (rng.random() < 0.6 or not earlier) else rng.choice(earlier))
            for p in sorted(preds):
                flows.append({"from": p, "to": m, "bytes": int(_logu(rng, 1e3, 2e6))})
    # sinks: results go back to the user's device; a second sink (a dashboard) on another edge
    n_sink = 1 if len(edge) == 1 or n_models < 10 else rng.choice([1, 2])
    sinks = {f"out{i}": {"site": edge[(i + 1) % len(edge)] if i else edge[0]} for i in range(n_sink)}
    consumers = {f["from"] for f in flows}
    last = layers[-1]
    for j, m in enumerate([*last, *[m for layer in layers[:-1] for m in layer if m not in consumers]]):
        flows.append({"from": m, "to": list(sinks)[j % n_sink], "bytes": int(_logu(rng, 100, 1e4))})

    # models: work x site speed x noise; memory
    work = {m: _logu(rng, 2, 40) for layer in layers for m in layer}
    models = {}
    for m, w in work.items():
        mem = round(_logu(rng, 20, 1500))
        models[m] = {"profile": {s: {"latency_ms": round(max(0.01, w * speed[s] * rng.uniform(0.8, 1.25)), 2),
                                     "memory_mb": mem} for s in sites}}

    # rates: the ensemble at base-station speed needs ~max(3, N/20) replicas
    target = max(3.0, n_models / 20)
    total_rate = target * 1000 / sum(work.values())
    shares = [rng.uniform(0.5, 1.5) for _ in sources]
    for src, share in zip(sources, shares):
        sources[src]["rate_rps"] = round(max(0.01, total_rate * share / sum(shares)), 3)
    return {"name": f"dag-{n_models}x{n_sites}-s{seed}", "sites": sites, "links": links, "models": models,
            "sources": sources, "sinks": sinks, "flows": flows, "constraints": {}}


def capacity_aware_greedy(inst) -> dict[str, str]:
    """The HEFT-style greedy restricted at each step to the sites that still have room
    (memory, max_replicas) for the model: a plan that respects capacity. It is the planner's
    `greedy-capacity` baseline (`planner.baselines.capacity_greedy_placement`)."""
    from planner.solver.baselines import capacity_greedy_placement

    placement, overflow = capacity_greedy_placement(inst)
    if overflow:
        raise ValueError(f"no site has room for {overflow[0]}")
    return placement


def generate(n_models: int, n_sites: int, seed: int, slo_factor: float = 1.2) -> dict:
    """A random app with an SLO that binds and a feasibility witness.

    The witness is the capacity-aware greedy plan; the SLO is `slo_factor` x its latency, kept
    below the all-on-edge latency. The instance is feasible by construction and checked with
    the independent evaluator. `app["x-bench"]` holds what was derived: strip it with
    `app_only` before validating the app."""
    from planner.solver.baselines import greedy_earliest_finish, single_site
    from planner.solver.evaluate import evaluate
    from tests.appgen import instance_of

    app = random_app(n_models, n_sites, seed)
    inst, _, _ = instance_of(app)
    witness = evaluate(inst, capacity_aware_greedy(inst))
    heft = greedy_earliest_finish(inst).evaluation
    edge = [s for s, d in app["sites"].items() if d["tier"] == "edge"]
    all_edge = [b.evaluation.latency_us for b in single_site(inst) if b.name == f"all-on-{edge[0]}"]
    slo_ms = witness.latency_us / 1000 * slo_factor
    # make it bind: halfway between the witness and all-edge, where all-edge is the slower (with
    # queueing a busy witness site can make the all-edge plan the faster one)
    if all_edge and slo_ms >= all_edge[0] / 1000 > witness.latency_us / 1000:
        slo_ms = (witness.latency_us + all_edge[0]) / 2000
    app["constraints"]["latency_ms"] = round(slo_ms, 3)
    inst, _, _ = instance_of(app)
    check = evaluate(inst, witness.placement)
    if not check.feasible:
        raise AssertionError(f"generator bug: the witness plan violates {[str(v) for v in check.violations]}")
    app["x-bench"] = {
        "witness_latency_ms": witness.latency_us / 1000,
        "witness_cost_per_hour": witness.cost_uph / 1e6,
        "heft_greedy_latency_ms": heft.latency_us / 1000,
        "heft_greedy_violates": sorted(str(k) for k in heft.violated),
        "all_edge_latency_ms": all_edge[0] / 1000 if all_edge else None,
        "slo_ms": app["constraints"]["latency_ms"],
        "flows": len(app["flows"]),
    }
    return app


def app_only(app: dict) -> dict:
    return {k: v for k, v in app.items() if not k.startswith("x-")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=int)
    ap.add_argument("sites", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slo-factor", type=float, default=1.2)
    args = ap.parse_args()
    import yaml

    app = generate(args.models, args.sites, args.seed, args.slo_factor)
    derived = app.pop("x-bench")
    print("\n".join(f"# {k}: {v}" for k, v in derived.items()))
    print(yaml.safe_dump(app, sort_keys=False))


if __name__ == "__main__":
    main()
