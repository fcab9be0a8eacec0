"""How steady this machine's speed is, with nothing else running: the noise floor under every
timing the planner compares (the load benchmark's 15 % goal, the engine choice's 5 %).

    .venv/bin/python benchmarks/machine_drift.py                # 10 minutes, a sample every 15 s
    .venv/bin/python benchmarks/machine_drift.py --minutes 2    # shorter

Every `--every` seconds, in this one process: OCR det alone (ONNX Runtime, this machine's cores
as threads, spinning off, as `planner up` serves it; the median of 7 runs back to back, after one
untimed run), a control that fits in the caches (a 256 x 256 float32 matrix product, numpy,
the median of 20; and the same product on one OpenBLAS thread, in a child process, whose ratio
to it is the parallelism the machine gave: ~1.7 usually, ~1.0-1.15 in a spell), the profiler's
own speed probe (planner/profiling/speed.py, what `slow_factor` compares: now the same numpy
product, timed apart; in the 14:15 run one ONNX Runtime MatMul), and the memory bandwidth (a
numpy copy of 64 MB, read + write bytes, the best of 3). Where det moves and the control does not, what moved is the memory system the host
shares with other guests, not this guest's CPUs or its other processes (the load average and the
machine's busy cores between samples are recorded beside); where the copy moves with det, a
copy of a few milliseconds can tell a slow spell before a measurement. Writes
benchmarks/results/machine_drift.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "runtime"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from planner.profiling.load import busy_core_ms, machine_cpu_times  # noqa: E402
from planner.profiling.speed import probe_ms  # noqa: E402

DET = ROOT / "examples" / "ocr" / "models" / "ch_PP-OCRv4_det_infer.onnx"
# the control on one thread: OpenBLAS fixes its threads when it loads, so in a process of its own,
# timing one median of 20 for each line it reads
ONE_THREAD = """
import statistics, sys, time
import numpy as np
a = np.random.default_rng(1).random((256, 256), dtype=np.float32)
for _ in sys.stdin:
    a @ a
    t = []
    for _ in range(20):
        t0 = time.perf_counter()
        a @ a
        t.append((time.perf_counter() - t0) * 1000)
    print(statistics.median(t), flush=True)
"""


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


class DetProbe:
    """OCR det alone in this process (ONNX Runtime, this machine's cores as threads, spinning off,
    as served): the median of RUNS back to back after one untimed run. This benchmark's `det`, and
    the speed probe around each OCR row of load_accuracy.py."""

    RUNS = 7

    def __init__(self):
        import onnxruntime as ort

        from planner_runtime.ort_options import session_options

        self.session = ort.InferenceSession(str(DET), session_options(os.cpu_count() or 1),
                                            providers=["CPUExecutionProvider"])
        self.feed = {self.session.get_inputs()[0].name: np.random.default_rng(0).random((1, 3, 640, 640),
                                                                                         dtype=np.float32)}

    def ms(self) -> float:
        self.session.run(None, self.feed)
        return median_ms(lambda: self.session.run(None, self.feed), self.RUNS)


def correlation(samples: list[dict], key: str) -> float | None:
    """Pearson's r between det's time and `key`'s over the samples ("copy_s": the copy's time, 1 / GB/s)."""
    if len(samples) < 3:
        return None
    other = [1 / s["copy_gbs"] if key == "copy_s" else s[key] for s in samples]
    r = np.corrcoef([s["det_ms"] for s in samples], other)[0, 1]
    return None if np.isnan(r) else round(float(r), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "machine_drift"))
    ap.add_argument("--note", default="quiet machine: no other jobs")
    args = ap.parse_args()
    if not DET.is_file():
        raise SystemExit(f"{DET} not found: run `python examples/ocr/fetch_models.py` (make demo does)")

    import onnxruntime as ort

    cores = os.cpu_count() or 1
    det_probe = DetProbe()
    a = np.random.default_rng(1).random((256, 256), dtype=np.float32)
    src = np.ones(64 << 18, dtype=np.float32)  # 64 MB
    dst = np.empty_like(src)
    one_thread = subprocess.Popen([sys.executable, "-c", ONE_THREAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    samples = []
    start = time.time()
    while time.time() - start < args.minutes * 60:
        due = time.time() + args.every
        before = machine_cpu_times()
        det = det_probe.ms()
        control = median_ms(lambda: a @ a, 20)
        one_thread.stdin.write("\n")
        one_thread.stdin.flush()
        control_1t = float(one_thread.stdout.readline())
        probe = probe_ms()
        copy_ms = min(median_ms(lambda: np.copyto(dst, src), 1) for _ in range(3))
        samples.append({"t_s": round(time.time() - start, 1), "det_ms": round(det, 2), "matmul_ms": round(control, 4),
                        "matmul_1t_ms": round(control_1t, 4), "parallelism": round(control_1t / control, 3),
                        "probe_ms": round(probe, 4), "copy_gbs": round(2 * src.nbytes / copy_ms / 1e6, 2), "loadavg": round(os.getloadavg()[0], 2)})
        time.sleep(max(0.0, due - time.time()))
        busy = busy_core_ms(before, machine_cpu_times())
        samples[-1]["busy_cores"] = None if busy is None else round(busy / 1000 / args.every, 3)
        print(json.dumps(samples[-1]), flush=True)

    one_thread.stdin.close()
    one_thread.wait()

    def stats(key: str) -> dict:
        v = [s[key] for s in samples]
        return {"min": min(v), "median": round(statistics.median(v), 4), "max": max(v),
                "max_over_min": round(max(v) / min(v), 3)}

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": cores,
                          "kernel": platform.release(), "onnxruntime": ort.__version__, "commit": commit,
                          "note": args.note, "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start))},
              "every_s": args.every, "minutes": args.minutes, "det": stats("det_ms"), "matmul": stats("matmul_ms"),
              "matmul_1t": stats("matmul_1t_ms"), "parallelism": stats("parallelism"),
              "probe": stats("probe_ms"), "copy_gbs": stats("copy_gbs"),
              "correlation_with_det": {k: correlation(samples, k) for k in ("matmul_ms", "matmul_1t_ms", "parallelism",
                                                                                "probe_ms", "copy_s")},
              "samples": samples}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Machine drift: the same work, timed again and again on an idle machine", "",
             f"Machine: {cores} cores, Linux {result['machine']['kernel']}, ONNX Runtime {ort.__version__}, commit "
             f"{commit}; from {result['machine']['date_utc']} UTC for {args.minutes:g} minutes, a sample every "
             f"{args.every:g} s. {args.note}.", "",
             "det: OCR det alone (ONNX Runtime, %d threads, spinning off), median of 7 back to back; matmul: a "
             "256 x 256 float32 product (fits in the caches), median of 20, on OpenBLAS's threads; matmul 1t: the same on one "
             "thread (a process of its own); parallelism: matmul 1t over matmul (what the second core gave); probe: the profiler's speed probe "
             "(planner/profiling/speed.py); copy: 64 MB copied by numpy, read + "
             "write GB/s, best of 3; busy cores: the whole machine's, over the interval from the sample to the next "
             "(the sample's own work included)." % cores, "",
             "Correlation of det's time with the others' over the samples (Pearson's r; copy: its time): "
             + ", ".join(f"{k.removesuffix('_ms').removesuffix('_s')} {v}" for k, v in result["correlation_with_det"].items())
             + ".",
             "",
             "| | min | median | max | max / min |", "|---|---:|---:|---:|---:|"]
    for name, key in (("det ms", "det"), ("matmul ms", "matmul"), ("matmul 1t ms", "matmul_1t"),
                      ("parallelism", "parallelism"), ("probe ms", "probe"), ("copy GB/s", "copy_gbs")):
        x = result[key]
        lines.append(f"| {name} | {x['min']} | {x['median']} | {x['max']} | {x['max_over_min']} |")
    lines += ["", "| t s | det ms | matmul ms | matmul 1t ms | parallelism | probe ms | copy GB/s | busy cores | load avg |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['t_s']} | {s['det_ms']} | {s['matmul_ms']} | {s['matmul_1t_ms']} | {s['parallelism']} | "
              f"{s['probe_ms']} | {s['copy_gbs']} | {s['busy_cores']} "
              f"| {s['loadavg']} |" for s in samples]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
