"""ONNX Runtime's spinning workers when several sessions share the cores (why the runtime and the
profiler turn spinning off: planner_runtime.ort_options).

    .venv/bin/python benchmarks/ort_spinning.py            # ~1 min: run it on a quiet machine
    .venv/bin/python benchmarks/ort_spinning.py --quick    # a few seconds, written to /tmp

The OCR example's three ONNX models (det, cls, rec; examples/ocr/models), one session each in one
process, every session on all of this machine's cores (as `planner up --host-targets` serves them),
with spinning on (ONNX Runtime's default) and off. Per setting, interleaved in rounds so that
drift hits both alike: each model run alone (the same model again and again, as a profiler times
it) and the three run one after another (as one request of the OCR pipeline runs them). Reported:
the median ms per model and setting, and interleaved / alone. Writes
benchmarks/results/ort_spinning.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "runtime"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import run_record  # noqa: E402
from planner_runtime.ort_options import session_options  # noqa: E402

MODELS = ROOT / "examples" / "ocr" / "models"
OCR = [("det", "ch_PP-OCRv4_det_infer.onnx", (1, 3, 640, 640)),
       ("cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx", (8, 3, 48, 192)),
       ("rec", "ch_PP-OCRv4_rec_infer.onnx", (8, 3, 48, 320))]


def sessions(spinning: bool, threads: int) -> dict:
    import onnxruntime as ort

    return {name: ort.InferenceSession(str(MODELS / file), session_options(threads, spinning=spinning),
                                       providers=["CPUExecutionProvider"]) for name, file, _ in OCR}


def timed(session, feed) -> float:
    start = time.perf_counter()
    session.run(None, feed)
    return (time.perf_counter() - start) * 1000


def measure(rounds: int, calls: int, threads: int) -> dict:
    rng = np.random.default_rng(0)
    settings = {"on": sessions(True, threads), "off": sessions(False, threads)}
    feeds = {name: {s.get_inputs()[0].name: rng.standard_normal(shape).astype(np.float32)}
             for (name, _, shape), s in zip(OCR, settings["on"].values())}
    times = {k: {"alone": {n: [] for n, _, _ in OCR}, "interleaved": {n: [] for n, _, _ in OCR}} for k in settings}
    for S in settings.values():
        for name, feed in feeds.items():
            timed(S[name], feed)  # warm-up
    for _ in range(rounds):
        for key, S in settings.items():
            for name, feed in feeds.items():
                times[key]["alone"][name] += [timed(S[name], feed) for _ in range(calls)]
            for _ in range(calls):
                for name, feed in feeds.items():
                    times[key]["interleaved"][name].append(timed(S[name], feed))
    out = {}
    for key, modes in times.items():
        out[key] = {}
        for name in feeds:
            alone, inter = statistics.median(modes["alone"][name]), statistics.median(modes["interleaved"][name])
            out[key][name] = {"alone_ms": round(alone, 3), "interleaved_ms": round(inter, 3),
                              "interleaved_over_alone": round(inter / alone, 3), "n": len(modes["alone"][name])}
    return out


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = ["# ONNX Runtime spinning with several sessions on the same cores", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, onnxruntime {m['onnxruntime']}, commit "
             f"{m['commit']}; {m['date_utc']} UTC{' (--quick)' if r['quick'] else ''}. Load average (1 min) before "
             f"{m['loadavg_start']}, after {m['loadavg_end']}. {r['threads']} intra-op threads per session; "
             f"{r['rounds']} rounds x {r['calls']} calls per model, mode and setting.", "",
             "Alone: one model run again and again (as the profiler times it). Interleaved: det, cls, rec one after "
             "another in one process (as one OCR request runs them). Medians, ms.", "",
             "| model | spinning on: alone / interleaved (ratio) | spinning off: alone / interleaved (ratio) | "
             "off / on, alone |", "|---|---:|---:|---:|"]
    for name in r["results"]["on"]:
        on, off = r["results"]["on"][name], r["results"]["off"][name]
        lines.append(f"| {name} | {on['alone_ms']} / {on['interleaved_ms']} ({on['interleaved_over_alone']}) | "
                     f"{off['alone_ms']} / {off['interleaved_ms']} ({off['interleaved_over_alone']}) | "
                     f"{off['alone_ms'] / on['alone_ms']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2 calls, written to /tmp")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    rounds, calls = (2, 2) if args.quick else (args.rounds, args.calls)
    threads = os.cpu_count() or 1
    machine = run_record.ort_machine()
    results = measure(rounds, calls, threads)
    machine = run_record.ended(machine)
    r = {"machine": machine, "quick": args.quick, "threads": threads, "rounds": rounds, "calls": calls, "results": results}
    run_record.write("ort_spinning", args.quick, r, markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
