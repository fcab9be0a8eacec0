"""What running a python step in a worker process costs (instances > 1, runtime.step_workers).

    .venv/bin/python benchmarks/step_workers.py            # ~20 s on 2 cores

Per tensor size (16 B, 1 MB, 8 MB; float32 in, the same size out): the median time of a call of
an identity step in the runtime's process and in a worker process, one after the other in the
same run; their difference is the pipe's cost each call pays (the tensor there and back). Then
the planner's profile of a 30 ms GIL-holding step (planner.profiling.python_steps, in this
process, what the latency model takes for its service time) beside the median call through a
worker (what an instance takes under `planner up`). Both processes use the runtime's malloc
setting. Prints a table; the machine's load average is printed with it (measure on a quiet one).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "runtime")]

from planner.app.tensors import TensorSpec  # noqa: E402
from planner.profiling.python_steps import load_function, profile_step  # noqa: E402
from planner_runtime.malloc import tune_malloc  # noqa: E402
from planner_runtime.step_workers import StepWorkers  # noqa: E402
from planner_runtime.steps import call_step, load_step  # noqa: E402
from tests.load_app import SERVICE_MS, step  # noqa: E402

SIZES = {"16 B": 16, "1 MB": 1 << 20, "8 MB": 8 << 20}


def median_ms(call, x: np.ndarray, n: int) -> float:
    for _ in range(3):
        call({"x": x})
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call({"x": x})
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    tune_malloc()
    with tempfile.TemporaryDirectory() as work:
        ident, gil = Path(work) / "ident.py", Path(work) / "gil.py"
        ident.write_text("def f(x):\n    return {'y': x + 0}\n")
        gil.write_text(step("gil"))
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print("| tensor | in-process ms | worker ms | pipe ms a call |\n|---|---:|---:|---:|")
        workers = StepWorkers("ident", ident, "f", 2)
        fn = load_step("ident", ident, "f")
        try:
            for label, nbytes in SIZES.items():
                x = np.random.default_rng(0).random(max(1, nbytes // 4), dtype=np.float32)
                n = 300 if nbytes < 1e5 else 60
                here = median_ms(lambda feeds: call_step(fn, ident, feeds), x, n)
                there = median_ms(workers, x, n)
                print(f"| {label} | {here:.3f} | {there:.3f} | {there - here:.3f} |")
        finally:
            workers.close()
        profile = profile_step(load_function(gil, "f"), [TensorSpec(name="x", dtype="float32", shape=(1, 4))], str(gil))
        workers = StepWorkers("gil", gil, "f", 2)
        try:
            there = median_ms(workers, np.zeros((1, 4), np.float32), 30)
        finally:
            workers.close()
        print(f"\n{SERVICE_MS} ms GIL-holding step: profiled {profile.timing.median_ms:.2f} ms, through a worker "
              f"{there:.2f} ms ({there - profile.timing.median_ms:+.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
