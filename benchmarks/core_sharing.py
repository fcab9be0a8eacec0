"""Two builds that each take every core: side by side (as the runtime runs them, and the
simulation's processor sharing models them), or in turn (the alternative: a first-come-first-served
gate in front of the cores).

    .venv/bin/python benchmarks/core_sharing.py            # ~2 min: run it on a quiet machine
    .venv/bin/python benchmarks/core_sharing.py --quick    # ~20 s, written to /tmp

The OCR example's det and rec (examples/ocr/models), one ONNX Runtime session each in one process,
each on all of this machine's cores, spinning off (as the runtime serves them). Each alone (the
same model again and again, before each round and after the last); then, in 5 rounds, two
threads each running one model in a loop for a while: side by side (both at once, the OS
sharing the cores) and in turn (a first-come-first-served gate, each run taking every core).
Reported per mode: runs and median ms per model, and the work done as a share of what the runs
would do alone in that time (1.00: every core-second as productive as alone). The simulation's
processor sharing gives each model half the cores while both run: 2x its time alone side by
side, and a share of 1.00. Writes benchmarks/results/core_sharing.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
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
ROUNDS = 5
PAIR = [("det", "ch_PP-OCRv4_det_infer.onnx", (1, 3, 640, 640)),
        ("rec", "ch_PP-OCRv4_rec_infer.onnx", (8, 3, 48, 320))]


def timed(session, feed) -> float:
    start = time.perf_counter()
    session.run(None, feed)
    return (time.perf_counter() - start) * 1000


class InTurn:
    """First come, first served (a plain Lock is not: the thread that just let go often takes it again)."""

    def __init__(self):
        self._cv = threading.Condition()
        self._next = self._serving = 0

    def __enter__(self):
        with self._cv:
            ticket, self._next = self._next, self._next + 1
            self._cv.wait_for(lambda: self._serving == ticket)

    def __exit__(self, *exc):
        with self._cv:
            self._serving += 1
            self._cv.notify_all()


def together(runs: dict, seconds: float, gate: InTurn | None) -> dict:
    """Each model in its own thread, again and again for `seconds`: the ms of each run (from the
    moment it asked, so a run's wait for its turn counts) and the wall time."""
    out: dict[str, list[float]] = {name: [] for name in runs}
    stop = time.perf_counter() + seconds

    def loop(name: str) -> None:
        session, feed = runs[name]
        while time.perf_counter() < stop:
            start = time.perf_counter()
            if gate is None:
                session.run(None, feed)
            else:
                with gate:
                    session.run(None, feed)
            out[name].append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=loop, args=(name,)) for name in runs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"runs_ms": out, "wall_s": time.perf_counter() - start}


def measure(seconds: float, alone_calls: int, threads: int) -> dict:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    runs = {}
    for name, file, shape in PAIR:
        session = ort.InferenceSession(str(MODELS / file), session_options(threads), providers=["CPUExecutionProvider"])
        runs[name] = (session, {session.get_inputs()[0].name: rng.standard_normal(shape).astype(np.float32)})
    alone_runs: dict[str, list[float]] = {name: [] for name in runs}

    def time_alone() -> None:  # before and after each mode: drift hits the reference too
        for name, (session, feed) in runs.items():
            timed(session, feed)
            alone_runs[name] += [timed(session, feed) for _ in range(alone_calls)]

    measured: dict[str, list[dict]] = {"side by side": [], "in turn": []}
    for _ in range(ROUNDS):  # the modes alternate, so that drift hits both alike
        time_alone()
        for mode, gate in (("side by side", None), ("in turn", InTurn())):
            measured[mode].append(together(runs, seconds / ROUNDS, gate))
    time_alone()
    alone = {name: statistics.median(v) for name, v in alone_runs.items()}
    modes = {}
    for mode, parts in measured.items():
        r = {"runs_ms": {n: [ms for p in parts for ms in p["runs_ms"][n]] for n in runs},
             "wall_s": sum(p["wall_s"] for p in parts)}
        done_s = sum(len(r["runs_ms"][n]) * alone[n] for n in runs) / 1000
        modes[mode] = {
            "models": {n: {"runs": len(v), "median_ms": round(statistics.median(v), 3),
                           "over_alone": round(statistics.median(v) / alone[n], 3)} for n, v in r["runs_ms"].items()},
            "work_share": round(done_s / r["wall_s"], 3), "wall_s": round(r["wall_s"], 2)}
    return {"alone_ms": {n: round(v, 3) for n, v in alone.items()}, "modes": modes}


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = ["# Two builds on the same cores: side by side or in turn", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, onnxruntime {m['onnxruntime']}, commit "
             f"{m['commit']}; {m['date_utc']} UTC{' (--quick)' if r['quick'] else ''}. Load average (1 min) before "
             f"{m['loadavg_start']}, after {m['loadavg_end']}. {r['threads']} intra-op threads per session, spinning "
             f"off; {r['seconds']} s per mode in {ROUNDS} rounds, the modes alternating.", "",
             "Alone (median ms): " + ", ".join(f"{n} {v}" for n, v in r["results"]["alone_ms"].items()) + ".", "",
             "Per run: from asking to the end (in turn: the wait for the other model's run included). Work share: "
             "the runs done, each at its time alone, over the wall time (1.00: as productive as alone; processor "
             "sharing as the simulation models it: 1.00, and 2x alone per run side by side).", "",
             "| mode | " + " | ".join(f"{n}: runs, median ms (x alone)" for n in r["results"]["alone_ms"]) +
             " | work share |", "|---|" + "---:|" * (len(r["results"]["alone_ms"]) + 1)]
    for mode, v in r["results"]["modes"].items():
        cells = [f"{x['runs']}, {x['median_ms']} ({x['over_alone']}x)" for x in v["models"].values()]
        lines.append(f"| {mode} | " + " | ".join(cells) + f" | {v['work_share']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 s per mode, written to /tmp")
    ap.add_argument("--seconds", type=float, default=45.0)
    args = ap.parse_args()
    seconds, alone_calls = (5.0, 5) if args.quick else (args.seconds, 20)
    threads = os.cpu_count() or 1
    machine = run_record.ort_machine()
    results = measure(seconds, alone_calls, threads)
    machine = run_record.ended(machine)
    r = {"machine": machine, "quick": args.quick, "threads": threads, "seconds": seconds, "results": results}
    run_record.write("core_sharing", args.quick, r, markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
