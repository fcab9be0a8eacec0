"""The real DNN graphs of /work/shared/benchmarks/dnn-graphs/ as apps (app.yaml dicts).

Input: the latency-input files of Tarnawski et al., "Efficient Algorithms for Device
Placement of DNN Graph Operators" (NeurIPS 2020, msr-fiddle/dnn-partitioning, MIT), read in
place (never copied). Each file has `nodes[]` (id, name, cpuLatency, fpgaLatency, size,
supportedOnFpga, colorClass, ...) and `edges[]` (sourceId, destId, cost, size).

Mapping (also in benchmarks/README.md):
- every node is one placeable unit `n<id>` (weights, inputs and shape ops included);
- three sites on a line of links: phone (edge, free, 1 replica) -- mec (base station) --
  cloud (accelerator);
- latency: phone = cpuLatency x PHONE_FACTOR (4), mec = cpuLatency, cloud = fpgaLatency
  (GPU numbers for the layer graphs, FPGA for the operator graphs); a node with
  supportedOnFpga false gets no cloud profile; zero latencies become 1 us (the planner
  needs latency > 0);
- memory: node `size` bytes -> memory_mb = size / 1e6 on every site;
- flows: every edge is a flow of its `size` bytes (at least 1); edge `cost` (accelerator <->
  CPU copy time) is not used, the planner's links give transfer times;
- one source `request` on the phone feeds every node without inputs (in-degree 0: graph
  inputs, weights, constants) with a nominal ENTRY_BYTES (1 KB): the files do not carry the
  input tensor of the first layer, so the cost of uploading it is not modelled;
- one sink `result` on the phone is fed by every node without consumers with RESULT_BYTES (1 KB);
- `colorClass` (nodes that must be colocated) is ignored: the planner has no colocation
  constraint; `isBackwardNode` is false everywhere (inference graphs);
- rate: the whole graph on the mec (cpuLatency) needs MEC_REPLICAS (2.5) replicas, so the
  phone (4x slower, 1 replica) can hold at most ~1/10 of the work and the mec 4 replicas;
- SLO: 1.2 x the latency of a capacity-aware greedy plan (see gen_dag), kept below the
  all-on-phone latency; that plan is the feasibility witness.

The numbers are per batch as profiled in the paper (e.g. the ResNet-50 layer graph's first
activation is 205,520,896 bytes = 64 x 56 x 56 x 256 x 4 B: batch 64), so one request is one
batch. `bytes_scale` scales every flow (e.g. 1/64 for per-image requests).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DIR = Path("/work/shared/benchmarks/dnn-graphs")
GRAPHS = [
    "LayerGraphs-bert24_inference",
    "LayerGraphs-gnmt_inference",
    "LayerGraphs-resnet50_inference",
    "LayerGraphs-inceptionv3_inference",
    "OperatorGraphs-bert_l-3_inference",
    "OperatorGraphs-bert_l-6_inference",
    "OperatorGraphs-resnet50_inference",
    "OperatorGraphs-bert_l-12_inference",
]
PHONE_FACTOR = 4.0
MEC_REPLICAS = 2.5
ENTRY_BYTES = 1000
RESULT_BYTES = 1000
MIN_LATENCY_MS = 0.001

SITES = {
    "phone": {"tier": "edge", "target": "host", "cost_per_hour": 0, "memory_mb": 6144, "max_replicas": 1},
    "mec": {"tier": "base-station", "target": "host", "cost_per_hour": 0.4, "memory_mb": 32768, "max_replicas": 4},
    "cloud": {"tier": "cloud", "target": "host", "cost_per_hour": 3.06, "memory_mb": 98304, "max_replicas": 16},
}
LINKS = [
    {"between": ["phone", "mec"], "bandwidth_mbps": 200, "rtt_ms": 10, "cost_per_gb": 0},
    {"between": ["mec", "cloud"], "bandwidth_mbps": 1000, "rtt_ms": 30, "cost_per_gb": 0.05},
]


def load(name: str, directory: Path = DEFAULT_DIR) -> dict:
    path = Path(directory) / (name if name.endswith(".json") else f"{name}.json")
    return json.loads(path.read_text())


def _ms(x: float) -> float:
    return max(MIN_LATENCY_MS, round(float(x), 3))


def to_app(graph: dict, name: str, bytes_scale: float = 1.0) -> dict:
    """A graph file's content -> an app dict without the SLO (see `generate`)."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    indeg = {i: 0 for i in nodes}
    outdeg = {i: 0 for i in nodes}
    flows = []
    for e in graph["edges"]:
        indeg[e["destId"]] += 1
        outdeg[e["sourceId"]] += 1
        flows.append({"from": f"n{e['sourceId']}", "to": f"n{e['destId']}",
                      "bytes": max(1, round(float(e.get("size") or 0) * bytes_scale))})
    for i in sorted(nodes):
        if indeg[i] == 0:
            flows.append({"from": "request", "to": f"n{i}", "bytes": ENTRY_BYTES})
        if outdeg[i] == 0:
            flows.append({"from": f"n{i}", "to": "result", "bytes": RESULT_BYTES})
    models = {}
    for i, n in sorted(nodes.items()):
        mem = round(float(n.get("size") or 0) / 1e6, 3)
        profile = {"phone": {"latency_ms": _ms(n["cpuLatency"] * PHONE_FACTOR), "memory_mb": mem},
                   "mec": {"latency_ms": _ms(n["cpuLatency"]), "memory_mb": mem}}
        if n.get("supportedOnFpga", True):
            profile["cloud"] = {"latency_ms": _ms(n["fpgaLatency"]), "memory_mb": mem}
        models[f"n{i}"] = {"profile": profile}
    cpu_s = sum(max(MIN_LATENCY_MS, float(n["cpuLatency"])) for n in nodes.values()) / 1000
    rate = round(MEC_REPLICAS / cpu_s, 4)
    return {
        "name": name.replace("_inference", "").replace(".", "_"),
        "sites": json.loads(json.dumps(SITES)),
        "links": json.loads(json.dumps(LINKS)),
        "models": models,
        "sources": {"request": {"site": "phone", "rate_rps": rate}},
        "sinks": {"result": {"site": "phone"}},
        "flows": flows,
        "constraints": {},
    }


def generate(name: str, directory: Path = DEFAULT_DIR, slo_factor: float = 1.2, bytes_scale: float = 1.0) -> dict:
    """The app of one graph file with its SLO, checked feasible (x-bench: what was derived)."""
    from benchmarks.gen_dag import capacity_aware_greedy
    from planner.solver.baselines import greedy_earliest_finish, single_site
    from planner.solver.evaluate import evaluate
    from tests.appgen import instance_of

    app = to_app(load(name, directory), name, bytes_scale)
    inst, _, _ = instance_of(app)
    witness = evaluate(inst, capacity_aware_greedy(inst))
    heft = greedy_earliest_finish(inst).evaluation
    phone = [b.evaluation.latency_us for b in single_site(inst) if b.name == "all-on-phone"]
    slo_ms = witness.latency_us / 1000 * slo_factor
    if phone and slo_ms >= phone[0] / 1000 > witness.latency_us / 1000:  # as gen_dag: the slower of the two
        slo_ms = (witness.latency_us + phone[0]) / 2000
    app["constraints"]["latency_ms"] = round(slo_ms, 3)
    inst, _, _ = instance_of(app)
    check = evaluate(inst, witness.placement)
    if not check.feasible:
        raise AssertionError(f"{name}: the witness plan violates {[str(v) for v in check.violations]}")
    app["x-bench"] = {
        "nodes": len(app["models"]), "flows": len(app["flows"]),
        "edges": len(app["flows"]) - sum(1 for f in app["flows"] if f["from"] == "request" or f["to"] == "result"),
        "witness_latency_ms": witness.latency_us / 1000,
        "witness_cost_per_hour": witness.cost_uph / 1e6,
        "heft_greedy_latency_ms": heft.latency_us / 1000,
        "heft_greedy_violates": sorted(str(k) for k in heft.violated),
        "all_phone_latency_ms": phone[0] / 1000 if phone else None,
        "slo_ms": app["constraints"]["latency_ms"],
        "rate_rps": app["sources"]["request"]["rate_rps"],
    }
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graph", choices=GRAPHS)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--bytes-scale", type=float, default=1.0)
    args = ap.parse_args()
    import yaml

    app = generate(args.graph, args.dir, bytes_scale=args.bytes_scale)
    derived = app.pop("x-bench")
    print("\n".join(f"# {k}: {v}" for k, v in derived.items()))
    print(yaml.safe_dump(app, sort_keys=False))


if __name__ == "__main__":
    main()
