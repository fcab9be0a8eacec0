"""TVM's spinning pool workers, as a site serves a build (why the runtime and the profiler set
TVM_THREAD_POOL_SPIN_COUNT=0: planner_runtime.tvm_options).

    .venv/bin/python benchmarks/tvm_spinning.py            # ~3 min: run it on a quiet machine
    .venv/bin/python benchmarks/tvm_spinning.py --quick    # fewer runs, written to /tmp

OCR det (examples/ocr/models) compiled for this machine (the host target; with its tuning
database where there is one, as the profiler compiles it), run through the Relax VM on this
machine's cores, in a fresh process per setting (TVM reads the spin count once, when its pool
starts): TVM's default (300 000 sched_yield turns before a worker sleeps) and 0. Per setting,
taken in alternating rounds so that the machine's drift hits both: runs back to back (as a
profiler times a build) and runs 0.3 s apart (as requests one at a time reach a site). Reported:
the median ms of a run and the process's CPU ms per run (all its threads: the work and the
spinning). Writes benchmarks/results/tvm_spinning.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "runtime"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import run_record  # noqa: E402

DET = ROOT / "examples" / "ocr" / "models" / "ch_PP-OCRv4_det_infer.onnx"
SHAPE = (1, 3, 640, 640)
SETTINGS = {"TVM's default": None, "0 (as served)": "0"}
GAP_S = 0.3

# one setting's runs, in a process of its own: prints {"ms": [...], "cpu_ms_per_run": x} per mode
CHILD = """
import json, resource, sys, time
import numpy as np
import tvm
from tvm import relax
runs, gap = int(sys.argv[2]), float(sys.argv[3])
vm = relax.VirtualMachine(tvm.runtime.load_module(sys.argv[1]), tvm.cpu())
x = tvm.runtime.tensor(np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32), tvm.cpu())
vm["main"](x)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out = {}
for mode, pause in (("back to back", 0.0), ("0.3 s apart", gap)):
    ms, c0 = [], cpu()
    for _ in range(runs):
        t = time.perf_counter()
        vm["main"](x)
        ms.append((time.perf_counter() - t) * 1000)
        time.sleep(pause)
    out[mode] = {"ms": ms, "cpu_ms_per_run": (cpu() - c0) * 1000 / runs}
print(json.dumps(out))
"""


def compiled_det(work: Path) -> tuple[Path, str]:
    from planner.app.targets import get_target
    from planner.profiling.compile import compile_onnx_for, has_tuning
    from planner.profiling.locations import default_tuning_root
    from planner.profiling.tune import tuning_dir

    host = get_target("host")
    db = tuning_dir(host, default_tuning_root())
    tuned = has_tuning(db)
    ex = compile_onnx_for(DET, {"x": list(SHAPE)}, host, db if tuned else None)
    path = work / "det.so"
    ex.export_library(str(path))
    return path, "tuned (the host's database)" if tuned else "untuned"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds of 5 runs, written to /tmp")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=10, help="runs per mode and round")
    args = ap.parse_args()
    if not DET.is_file():
        raise SystemExit(f"{DET} not found: run `python examples/ocr/fetch_models.py` (make demo does)")
    rounds, runs = (3, 5) if args.quick else (args.rounds, args.runs)
    machine = run_record.ort_machine()
    cores = os.cpu_count() or 1
    taken: dict[str, dict[str, dict[str, list[float]]]] = {s: {} for s in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="tvm-spinning-") as tmp:
        lib, build = compiled_det(Path(tmp))
        for r in range(rounds):
            for setting in (list(SETTINGS) if r % 2 == 0 else list(SETTINGS)[::-1]):
                env = {k: v for k, v in os.environ.items() if k != "TVM_THREAD_POOL_SPIN_COUNT"}
                env["TVM_NUM_THREADS"] = str(cores)
                if SETTINGS[setting] is not None:
                    env["TVM_THREAD_POOL_SPIN_COUNT"] = SETTINGS[setting]
                child = subprocess.run([sys.executable, "-c", CHILD, str(lib), str(runs), str(GAP_S)],
                                       capture_output=True, text=True, env=env, check=True)
                for mode, got in json.loads(child.stdout.strip().splitlines()[-1]).items():
                    m = taken[setting].setdefault(mode, {"ms": [], "cpu_ms_per_run": []})
                    m["ms"] += got["ms"]
                    m["cpu_ms_per_run"].append(got["cpu_ms_per_run"])
                print(setting, {k: round(statistics.median(v["ms"]), 1) for k, v in taken[setting].items()}, flush=True)
    summary = {s: {mode: {"median_ms": round(statistics.median(v["ms"]), 2),
                          "cpu_ms_per_run": round(statistics.median(v["cpu_ms_per_run"]), 1),
                          "runs": len(v["ms"])}
                   for mode, v in modes.items()} for s, modes in taken.items()}
    record = {"machine": run_record.ended(machine), "build": build, "threads": cores, "rounds": rounds,
              "runs": runs, "gap_s": GAP_S, "summary": summary, "taken": taken}
    run_record.write("tvm_spinning", args.quick, record, markdown(record))


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = ["# TVM's pool workers spinning, as a site serves a build", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, commit {m['commit']}; {m['date_utc']} UTC; "
             f"load average {m['loadavg_start']} at the start, {m['loadavg_end']} at the end.", "",
             f"OCR det (1x3x640x640) compiled for this machine, {r['build']}, on {r['threads']} threads, a fresh "
             f"process per setting and round ({r['rounds']} rounds in alternating order, {r['runs']} runs per mode "
             f"each). CPU ms per run: the process's user + system time over the runs (all its threads), the median "
             f"over the rounds.", "",
             "| spin count | mode | median ms | CPU ms per run |", "|---|---|---:|---:|"]
    for setting, modes in r["summary"].items():
        for mode, v in modes.items():
            lines.append(f"| {setting} | {mode} | {v['median_ms']} | {v['cpu_ms_per_run']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
