"""How close the planner's queueing model (planner.model.queueing) comes to a discrete-event
simulation of the same queue (tests/model/queue_sim.py, which uses no queueing formula).

    .venv/bin/python benchmarks/queueing_accuracy.py            # ~3 min on one core
    .venv/bin/python benchmarks/queueing_accuracy.py --quick    # fewer requests, written to /tmp

The grid: utilization 0.3, 0.5, 0.7, 0.85, 0.9 x servers 1, 2, 4, 8 x service cv2 0
(constant), 0.5 (gamma), 1 (exponential), Poisson arrivals, service 10 ms (every time scales
with S, so the relative errors hold for any S). Per cell: the mean wait and the p50, p95 and
p99 of the response, analytical against simulated over several seeds pooled, with the seeds'
spread (the simulation's own noise: large at 0.9, where busy periods are long). Then two-stage
tandems: the sum of the stages' analytical p99 responses (what the planner adds along a path)
against the simulated end-to-end p99.

Nothing here depends on the machine: the simulation draws from random.Random(seed) (the same
Mersenne Twister everywhere) and the model is closed-form math, so every number reproduces
exactly; only the run time varies. Writes benchmarks/results/queueing_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from planner.model.queueing import Queue  # noqa: E402
from tests.model.queue_sim import quantile, simulate, standard_error, tandem  # noqa: E402

SERVICE_MS = 10.0
UTILIZATIONS = (0.3, 0.5, 0.7, 0.85, 0.9)
SERVERS = (1, 2, 4, 8)
CV2S = (0.0, 0.5, 1.0)
PERCENTILES = (50, 95, 99)
# (stage service ms, servers, cv2) pairs at one rate: a fast stage before a slow one, both busy
TANDEMS = [
    ("1 + 1 server, util 0.7 / 0.7, constant", 70.0, [(10.0, 1, 0.0), (10.0, 1, 0.0)]),
    ("1 + 1 server, util 0.5 / 0.85, constant", 50.0, [(10.0, 1, 0.0), (17.0, 1, 0.0)]),
    ("2 + 4 servers, util 0.8 / 0.8, constant", 80.0, [(20.0, 2, 0.0), (40.0, 4, 0.0)]),
    ("1 + 2 servers, util 0.85 / 0.6, exponential", 85.0, [(10.0, 1, 1.0), (14.1176, 2, 1.0)]),
    ("4 + 1 server, util 0.5 / 0.3, gamma cv2 0.5", 30.0, [(66.6667, 4, 0.5), (10.0, 1, 0.5)]),
]


def pct(model: float, sim: float) -> float | None:
    return None if sim == 0 else round((model - sim) / sim * 100, 2)


def cell(rho: float, c: int, cv2: float, n: int, seeds: list[int], warmup: int) -> dict:
    rate = rho * c / SERVICE_MS * 1000
    q = Queue(rate, SERVICE_MS, c, service_cv2=cv2)
    waits, responses, per_seed = [], [], []
    for seed in seeds:
        run = simulate(rate, SERVICE_MS, c, cv2, n=n, seed=seed, warmup=warmup)
        response = run.response
        waits += run.wait
        responses += response
        per_seed.append({"mean_wait_ms": statistics.fmean(run.wait),
                         **{f"p{p}_ms": quantile(response, p) for p in PERCENTILES}})
    out = {"utilization": rho, "servers": c, "service_cv2": cv2, "rate_rps": round(rate, 3),
           "p_wait": round(q.p_wait, 5)}
    stats = {"mean_wait_ms": (waits, statistics.fmean, q.mean_wait_ms),
             **{f"p{p}_ms": (responses, partial(quantile, p=p), q.response_ms(p)) for p in PERCENTILES}}
    for key, (values, stat, model) in stats.items():
        sim = stat(values)
        se = standard_error(values, stat, batches=10 * len(seeds))
        out[key] = {"model": round(model, 3), "sim": round(sim, 3), "sim_se": round(se, 3),
                    "error_pct": pct(model, sim), "error_se_pct": None if sim == 0 else round(se / sim * 100, 2),
                    "sim_seed_range": [round(min(s[key] for s in per_seed), 3),
                                       round(max(s[key] for s in per_seed), 3)]}
    return out


def tandem_row(name: str, rate: float, stages, n: int, seeds: list[int], warmup: int) -> dict:
    e2e = []
    for seed in seeds:
        e2e += tandem(rate, stages, n=n, seed=seed, warmup=warmup)
    per_stage = [Queue(rate, s, c, service_cv2=cv2).response_ms(99) for s, c, cv2 in stages]
    summed = sum(per_stage)
    sim = quantile(e2e, 99)
    return {"name": name, "rate_rps": rate, "stages": [list(s) for s in stages],
            "stage_p99_ms": [round(x, 3) for x in per_stage], "sum_p99_ms": round(summed, 3),
            "sim_e2e_p99_ms": round(sim, 3), "over_pct": pct(summed, sim)}


def worst(cells: list[dict], key: str, pred) -> tuple[float, float]:
    errs = [c[key]["error_pct"] for c in cells if pred(c) and c[key]["error_pct"] is not None]
    return (min(errs), max(errs)) if errs else (0.0, 0.0)


REGIONS = [  # (label, predicate) for the summary table
    ("cv2 0, util <= 0.85", lambda c: c["service_cv2"] == 0 and c["utilization"] <= 0.85),
    ("cv2 0, util 0.9", lambda c: c["service_cv2"] == 0 and c["utilization"] == 0.9),
    ("cv2 0.5, util <= 0.85", lambda c: c["service_cv2"] == 0.5 and c["utilization"] <= 0.85),
    ("cv2 0.5, util 0.9", lambda c: c["service_cv2"] == 0.5 and c["utilization"] == 0.9),
    ("cv2 1, util <= 0.85", lambda c: c["service_cv2"] == 1 and c["utilization"] <= 0.85),
    ("cv2 1, util 0.9", lambda c: c["service_cv2"] == 1 and c["utilization"] == 0.9),
]
KEYS = ["mean_wait_ms", "p50_ms", "p95_ms", "p99_ms"]


def fmt_range(lo_hi: tuple[float, float]) -> str:
    lo, hi = lo_hi
    return f"{lo:+.1f} .. {hi:+.1f}"


def markdown(doc: dict) -> str:
    lines = ["# Queueing model against simulation", "",
             f"{doc['machine']['date']}; {doc['requests_per_seed']:,} requests per seed after "
             f"{doc['warmup']:,} of warm-up, seeds {doc['seeds']}, service {SERVICE_MS} ms, Poisson arrivals. "
             "Deterministic: the same numbers on any machine (seeded Mersenne Twister, closed-form model).",
             "", "Error = (model - simulation) / simulation, in %. Mean wait errors where the simulated mean "
             "wait is under 1 % of S are left out of the summary (tiny absolute numbers).", "",
             "## Summary: error range per region (min .. max over the cells)", "",
             "| region | mean wait | p50 response | p95 response | p99 response |", "|---|---:|---:|---:|---:|"]
    for label, pred in REGIONS:
        row = [label]
        for key in KEYS:
            sub = [c for c in doc["cells"] if pred(c)
                   and (key != "mean_wait_ms" or c[key]["sim"] >= 0.01 * SERVICE_MS)]
            row.append(fmt_range(worst(sub, key, lambda c: True)))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Every cell", "",
              "Model / simulation (error %, and in brackets the simulation's standard error in % by batch "
              "means: the noise of that error); the last column the simulated p99 of each seed alone.", "",
              "| util | c | cv2 | C | mean wait ms | p50 ms | p95 ms | p99 ms | p99 per seed |",
              "|---:|---:|---:|---:|---|---|---|---|---|"]
    for c in doc["cells"]:
        parts = []
        for key in KEYS:
            e = c[key]["error_pct"]
            se = c[key]["error_se_pct"]
            parts.append(f"{c[key]['model']:.2f} / {c[key]['sim']:.2f} "
                         + ("(-)" if e is None else f"({e:+.1f} ±{se:.1f})"))
        lo, hi = c["p99_ms"]["sim_seed_range"]
        lines.append(f"| {c['utilization']} | {c['servers']} | {c['service_cv2']} | {c['p_wait']:.3f} | "
                     + " | ".join(parts) + f" | {lo:.1f} .. {hi:.1f} |")
    lines += ["", "## Two stages in series: sum of per-stage p99 against the end-to-end p99", "",
              "| stages | rate rps | per-stage p99 ms | sum ms | simulated e2e p99 ms | sum over e2e |",
              "|---|---:|---|---:|---:|---:|"]
    for t in doc["tandems"]:
        lines.append(f"| {t['name']} | {t['rate_rps']} | {', '.join(f'{x:.1f}' for x in t['stage_p99_ms'])} | "
                     f"{t['sum_p99_ms']:.1f} | {t['sim_e2e_p99_ms']:.1f} | {t['over_pct']:+.1f} % |")
    lines += ["", f"Run time {doc['run_s']} s on {doc['machine']['platform']} (Python {doc['machine']['python']}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=250_000, help="per seed and cell")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="50,000 requests x 2 seeds, written to /tmp")
    ap.add_argument("--out", default=None, help="output prefix (default benchmarks/results/queueing_accuracy)")
    args = ap.parse_args(argv)
    n, nseeds = (50_000, 2) if args.quick else (args.requests, args.seeds)
    out = Path(args.out or ("/tmp/queueing_accuracy_quick" if args.quick
                            else ROOT / "benchmarks/results/queueing_accuracy"))
    seeds = [1000 * (i + 1) for i in range(nseeds)]
    warmup = 2000
    t0 = time.perf_counter()
    cells = []
    for cv2 in CV2S:
        for c in SERVERS:
            for rho in UTILIZATIONS:
                cells.append(cell(rho, c, cv2, n, seeds, warmup))
                print(f"cv2 {cv2} c {c} util {rho}: p99 error {cells[-1]['p99_ms']['error_pct']} %", flush=True)
    tandems = [tandem_row(name, rate, stages, n, seeds, warmup) for name, rate, stages in TANDEMS]
    doc = {
        "machine": {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "python": platform.python_version(), "platform": platform.platform()},
        "service_ms": SERVICE_MS, "requests_per_seed": n, "warmup": warmup, "seeds": seeds,
        "cells": cells, "tandems": tandems, "run_s": round(time.perf_counter() - t0, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(doc, indent=1) + "\n")
    Path(f"{out}.md").write_text(markdown(doc))
    print(f"wrote {out}.json and {out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
