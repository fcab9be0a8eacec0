"""What a hop of the site runtime costs on loopback, beside a bare gRPC call in the same run.

    .venv/bin/python benchmarks/runtime_overhead.py                 # ~2 min on 2 cores
    .venv/bin/python benchmarks/runtime_overhead.py --quick         # fewer requests
    .venv/bin/python benchmarks/runtime_overhead.py --ocr-out OUT   # + the OCR plan, predicted vs measured

For each tensor size (10 KB, 1 MB, 8 MB):
Each round makes the three calls below one after the other (the same load for all three):
- bare: a unary gRPC call carrying the bytes to a generic handler in another process
  (raw bytes, no protobuf), answered with 2 bytes: the floor any grpcio hop starts from;
- runtime hop (reported): the runtime's own per-hop figure, a DELIVER ModelInfer's round trip
  minus the receiver's handling (gRPC + protobuf + tensor encode/decode), as `planner bench`
  shows it;
- runtime hop (end to end): (e2e through entry -> far site -> entry) - (e2e with the step at
  the entry), halved: both hops the tensor makes, everything included (forwarding logic too).
The goal: a hop costs at most 1 ms + bytes / (2 GB/s).
Requests per second of one site: closed loop on the entry site running a python identity step
(10 KB), 1 and 8 client threads.
With --ocr-out OUT (bundles from `planner solve examples/ocr/app.yaml -o OUT`): `planner up OUT
--host-targets` and N requests of the sample image; the measured p50 beside the plan's placement
predicted for this machine (host profiles, loopback links: what `planner bench` prints).

Servers run in subprocesses; this process uses runtime.client (the runtime's own OIP stubs).
All processes (sites, bare server, this client) use the malloc setting of `python -m planner_runtime serve`
(runtime.malloc.tune_malloc), so the comparison is like for like.
Writes benchmarks/results/runtime_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"10 KB": 10_000, "1 MB": 1_000_000, "8 MB": 8_000_000}
MAX_MSG = 64 << 20
GOAL_GBPS = 2.0


def goal_ms(nbytes: int) -> float:
    return 1.0 + nbytes / (GOAL_GBPS * 1e9) * 1000


# -- the bare gRPC baseline --------------------------------------------------------------------
def bare_server() -> None:
    """On a port the OS picks, told to the parent on stdout ("ready PORT")."""
    import grpc

    opts = [("grpc.max_send_message_length", MAX_MSG), ("grpc.max_receive_message_length", MAX_MSG)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=opts)
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"ok")  # bytes in, bytes out
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Raw", {"Call": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"ready {port}", flush=True)
    server.wait_for_termination()


def time_interleaved(bare_address: str, local_address: str, remote_address: str, nbytes: int, n: int) -> dict:
    """n rounds of (bare call, runtime with the step at the entry, runtime through the far site):
    the three see the same machine load."""
    import grpc

    from planner_runtime.client import OipClient

    opts = [("grpc.max_send_message_length", MAX_MSG), ("grpc.max_receive_message_length", MAX_MSG)]
    ch = grpc.insecure_channel(bare_address, options=opts)
    bare = ch.unary_unary("/bench.Raw/Call")
    payload = os.urandom(nbytes)
    x = np.random.default_rng(0).random(max(1, nbytes // 4)).astype(np.float32)
    local, remote = OipClient(local_address, MAX_MSG), OipClient(remote_address, MAX_MSG)
    out = {"bare": [], "local": [], "remote": [], "timings": []}
    try:
        for i in range(n + 3):
            t0 = time.perf_counter()
            bare(payload, timeout=30)
            t1 = time.perf_counter()
            local.infer("echo", {"x": x}, timeout=30)
            t2 = time.perf_counter()
            _, params = remote.infer("echo", {"x": x}, timeout=30)
            t3 = time.perf_counter()
            if i >= 3:  # warm-up rounds
                out["bare"].append((t1 - t0) * 1000)
                out["local"].append((t2 - t1) * 1000)
                out["remote"].append((t3 - t2) * 1000)
                out["timings"].append(params.get("timings", []))
    finally:
        local.close()
        remote.close()
        ch.close()
    return out


def throughput(address: str, threads: int, seconds: float) -> float:
    from planner_runtime.client import OipClient

    x = np.random.default_rng(0).random(2500).astype(np.float32)  # 10 KB
    count = [0] * threads
    stop = time.monotonic() + seconds

    def loop(k):
        c = OipClient(address, MAX_MSG)
        c.infer("echo", {"x": x}, timeout=30)
        while time.monotonic() < stop:
            c.infer("echo", {"x": x}, timeout=30)
            count[k] += 1
        c.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(count) / (time.monotonic() - t0)


def p(values, q=50) -> float:
    return round(float(np.percentile(values, q)), 3)


def machine() -> dict:
    import grpc

    from planner.app.targets import cpu_model

    cpu = cpu_model()

    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "grpcio": grpc.__version__, "loadavg_start": list(os.getloadavg()),
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def run(args) -> dict:
    from tests.conftest import refused_ports
    from tests.runtime import fanapp

    n_by_size = {"10 KB": 300, "1 MB": 60, "8 MB": 20} if not args.quick else {"10 KB": 60, "1 MB": 15, "8 MB": 6}
    work = Path(tempfile.mkdtemp(prefix="runtime-bench-"))
    running = []
    result = {"machine": {**machine(), "note": args.note}, "goal": "a hop costs at most 1 ms + bytes / 2 GB/s",
              "sizes": [], "throughput": {}, "ocr": None}
    try:
        bare = subprocess.Popen([sys.executable, __file__, "--bare-server"], stdout=subprocess.PIPE, text=True)
        running.append(bare)
        bare_port = int(bare.stdout.readline().split()[1])
        setups = {}
        with refused_ports(2) as unserved:  # bundle.yaml's addresses; each site is told the real ones
            for i, (label, nbytes) in enumerate(SIZES.items()):
                local = fanapp.echo_bundles(work / f"local{i}", {"entry": unserved[0]}, nbytes)
                remote = fanapp.echo_bundles(work / f"remote{i}", dict(zip(("entry", "far"), unserved)), nbytes)
                pair = [fanapp.start_sites({s: d / "sites" / s for s in sites}, d / "run")
                        for d, sites in ((local, ["entry"]), (remote, ["entry", "far"]))]
                running.extend(p for group in pair for p in group.procs.values())
                setups[label] = (pair[0].addr["entry"], pair[1].addr["entry"])
        for label, nbytes in SIZES.items():
            n = n_by_size[label]
            local_addr, remote_addr = setups[label]
            m = time_interleaved(f"127.0.0.1:{bare_port}", local_addr, remote_addr, nbytes, n)
            bare_ms, local_ms, remote_ms, timings = m["bare"], m["local"], m["remote"], m["timings"]
            hop_to = [sum(t[3] for t in ts if t[0] == "hop" and t[1] == "entry->far") for ts in timings]
            hop_back = [sum(t[3] for t in ts if t[0] == "hop" and t[1] == "far->entry") for ts in timings]
            e2e_hop = (p(remote_ms) - p(local_ms)) / 2
            row = {
                "size": label, "bytes": nbytes, "requests": n,
                "bare_grpc_ms": {"p50": p(bare_ms), "p95": p(bare_ms, 95)},
                "runtime_hop_reported_ms": {"entry->far p50": p(hop_to), "far->entry p50": p(hop_back),
                                            "p95": p(hop_to + hop_back, 95)},
                "runtime_hop_e2e_ms": round(e2e_hop, 3),
                "e2e_local_ms": {"p50": p(local_ms), "p95": p(local_ms, 95)},
                "e2e_remote_ms": {"p50": p(remote_ms), "p95": p(remote_ms, 95)},
                "goal_ms": round(goal_ms(nbytes), 3),
            }
            row["runtime_minus_bare_ms"] = round(p(hop_to) - p(bare_ms), 3)
            row["meets_goal"] = bool(max(p(hop_to), p(hop_back), e2e_hop) <= goal_ms(nbytes))
            result["sizes"].append(row)
            print(json.dumps(row), flush=True)
        local_addr = setups["10 KB"][0]
        secs = 3.0 if args.quick else 6.0
        result["throughput"] = {"site": "one site, python identity step, 10 KB in and out",
                                "rps_1_client": round(throughput(local_addr, 1, secs), 1),
                                "rps_8_clients": round(throughput(local_addr, 8, secs), 1)}
        print(json.dumps(result["throughput"]), flush=True)
    finally:
        fanapp.stop(running)
    if args.ocr_out:
        result["ocr"] = ocr(Path(args.ocr_out), args.ocr_requests)
    else:
        result["ocr"] = {"status": "not run", "how": "benchmarks/runtime_overhead.py --ocr-out OUT, with OUT from "
                         "`planner solve examples/ocr/app.yaml -o OUT` (bundles with host builds)"}
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    return result


def ocr(out: Path, n: int) -> dict:
    """The OCR plan under `planner up --host-targets`: measured p50 vs the placement predicted for this
    machine (host profiles, loopback links), with the sample image as input; the plan's own figure beside."""
    from planner.local.bench import bench_inputs, run_bench
    from planner.local.prediction import host_prediction

    host = host_prediction(out)  # before the sites start, so profiling does not compete with them
    up = subprocess.Popen([sys.executable, "-m", "planner", "up", str(out), "--host-targets", "--for", "3600"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        for line in up.stdout:
            if line.startswith("ready:"):
                break
        else:
            return {"status": "planner up failed", "exit": up.wait()}
        inputs = bench_inputs(out, [f"camera={ROOT / 'examples' / 'ocr' / 'sample.png'}"])
        report = run_bench(out, n, warmup=3, inputs=inputs, host=host)
        return {"status": "ok", "predicted_ms": report["host_predicted_ms"], "measured_p50_ms": report["e2e_ms"]["p50"],
                "error_pct": report["error_pct"], "plan_ms": report["plan_latency_ms"], "bench": report}
    finally:
        up.terminate()
        up.wait(timeout=30)


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Runtime overhead (loopback)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, grpcio {m['grpcio']}; "
        f"{m['date_utc']} UTC. {m.get('note') or 'No other jobs noted'} (load average {m['loadavg_start'][0]:.1f} at the "
        f"start, {m.get('loadavg_end', [0])[0]:.1f} at the end).", "",
        f"Goal: {r['goal']}. p50 in ms.", "",
        "| tensor | bare gRPC call | runtime hop (reported, there / back) | runtime hop (end to end) | goal | met |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for s in r["sizes"]:
        h = s["runtime_hop_reported_ms"]
        lines.append(f"| {s['size']} | {s['bare_grpc_ms']['p50']} | {h['entry->far p50']} / {h['far->entry p50']} | "
                     f"{s['runtime_hop_e2e_ms']} | {s['goal_ms']} | {'yes' if s['meets_goal'] else 'no'} |")
    t = r["throughput"]
    lines += ["", f"Requests per second, {t.get('site')}: {t.get('rps_1_client')} (1 client), "
              f"{t.get('rps_8_clients')} (8 clients).", ""]
    o = r.get("ocr") or {}
    if o.get("status") == "ok":
        lines += [f"OCR example under `planner up --host-targets` ({o['bench']['requests']} requests, the sample "
                  f"image): predicted for this machine {o['predicted_ms']} ms, measured p50 {o['measured_p50_ms']} ms "
                  f"({o['error_pct']:+}%; goal: within 15 %). The prediction is the plan's placement re-evaluated "
                  "with host profiles and loopback links (`planner bench`); the plan's own figure for its sites' "
                  f"hardware and 50 Mbps link is {o['plan_ms']} ms.", "",
                  "| model | site | measured p50 | predicted (this machine) |", "|---|---|---:|---:|"]
        lines += [f"| {m['model']} | {m['site']} | {m['p50']} | {m['host_ms']} |" for m in o["bench"]["models"]]
        lines += ["", "| hop | bytes | measured p50 | predicted (this machine) |", "|---|---:|---:|---:|"]
        lines += [f"| {h['hop']} | {h['bytes']} | {h['p50']} | {h['host_ms']} |" for h in o["bench"]["hops"]]
    else:
        lines.append(f"OCR predicted vs measured: {o.get('status')} ({o.get('how', '')}).")
    lines += ["", "Bare: one unary call, bytes to a generic handler in another process, 2-byte answer. Reported: "
              "the runtime's per-hop figure (a forward's round trip minus the receiver's handling). End to end: "
              "(entry -> far -> entry) minus (step at the entry), halved.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ocr-out", default=None, help="an OUT of `planner solve examples/ocr/app.yaml -o OUT`")
    ap.add_argument("--ocr-requests", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "runtime_overhead"),
                    help="output prefix (.json, .md)")
    ap.add_argument("--note", default="", help="the run's conditions, e.g. 'other jobs shared the 2 cores'")
    ap.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from planner_runtime.malloc import tune_malloc

    tune_malloc()  # what `python -m planner_runtime serve` does: the bare server and this client get it too
    if args.bare_server:
        bare_server()
        return 0
    r = run(args)
    Path(args.out + ".json").write_text(json.dumps(r, indent=2))
    Path(args.out + ".md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
