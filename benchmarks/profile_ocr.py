"""Profiling the real OCR example (examples/ocr/app.yaml): cold and warm profile time, and per
model the host latency of TVM untuned, TVM tuned with MetaSchedule, and ONNX Runtime.

  1. cold: `profile_app` with an empty cache and no tuning database (a temporary directory
     for both): imports, folds and compiles every ONNX model for the host and every site's
     target (rpi5, xeon-d, c7i-2xlarge), measures TVM and ONNX Runtime on the host, runs the
     python steps; records the compiles and measurements it did;
  2. warm: the same again on that cache (must compile and measure nothing);
  3. tuning: MetaSchedule on the host for the chosen models, in rounds of --round trials until
     --tune-minutes is spent, into the tuning database (default: <tuning root>/host/, which
     every later compile for the host applies); then each model is compiled with the database
     and timed like the profile does. The trials, records and tuning time are written down.

Writes benchmarks/results/profile_ocr.json and .md, with the machine and its load average
(the machine may be shared with other jobs: the numbers say so).

    python benchmarks/profile_ocr.py                          # cold + warm + ~30 min tuning of det
    python benchmarks/profile_ocr.py --tune-minutes 0         # cold + warm only
    python benchmarks/profile_ocr.py --tune det,cls,rec --tune-minutes 60
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

APP = ROOT / "examples" / "ocr" / "app.yaml"
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict:
    from planner.app.targets import detect_host

    h = detect_host()
    return {"host": platform.node(), "cpu": h["description"], "peak_gflops": h["peak_gflops"],
            "mem_bandwidth_gbs": h["mem_bandwidth_gbs"], "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}


def profile_once(cache: Path, tuning_root: Path) -> tuple[float, dict, object]:
    from planner.model.open_app import open_app
    from planner.profiling.app_profiles import profile_app

    checked = open_app(APP)
    stats: dict = {}
    start = time.perf_counter()
    table = profile_app(checked, cache_dir=cache, tuning_root=tuning_root, progress=False,
                        stats=lambda c, k: stats.update(hits=c.hits, misses=c.misses, compiles=k.compiles,
                                                        measures=k.measures)).table
    return time.perf_counter() - start, stats, table


def model_specs() -> dict[str, tuple[Path, dict]]:
    from planner.app.loader import load_app

    loaded = load_app(APP)
    return {m: (loaded.resolve(n.onnx), {k: list(d.shape) for k, d in n.inputs.items()})
            for m, n in loaded.app.models.items() if n.kind == "onnx"}


def tune_model(name: str, path: Path, shapes: dict, tuning_root: Path, minutes: float, round_trials: int) -> dict:
    from planner.profiling.onnx_import import import_onnx
    from planner.profiling.tune import record_count, tune, tuning_dir
    from planner.app.targets import get_target

    host = get_target("host")
    d = tuning_dir(host, tuning_root)
    mod = import_onnx(path, shapes)
    before = record_count(d)
    start = time.perf_counter()
    rounds = 0
    while time.perf_counter() - start < minutes * 60:
        tune(mod, host, d, round_trials)
        rounds += 1
        print(f"  {name}: round {rounds}, {record_count(d) - before} trials, "
              f"{(time.perf_counter() - start) / 60:.1f} min", flush=True)
    return {"trials": record_count(d) - before, "records_total": record_count(d), "rounds": rounds,
            "tuning_s": round(time.perf_counter() - start, 1), "database": str(d)}


def timed_with_db(path: Path, shapes: dict, tuning_root: Path) -> dict:
    from planner.profiling.compile import compile_analyzed
    from planner.profiling.measure import measure_ort, measure_tvm, ort_session, sample_inputs
    from planner.profiling.onnx_import import fold_static, import_folded, io_signature, load_checked
    from planner.profiling.tune import tuning_dir, tuning_state
    from planner.app.targets import get_target

    host = get_target("host")
    d = tuning_dir(host, tuning_root)
    folded = fold_static(load_checked(path), shapes)
    inputs = sample_inputs(io_signature(folded).inputs)
    c = compile_analyzed(import_folded(folded), host, d)
    tvm_ms = measure_tvm(c.executable, list(inputs.values())).median_ms
    ort_ms = measure_ort(ort_session(path.read_bytes()), inputs).median_ms
    return {"tvm_tuned_ms": tvm_ms, "ort_ms_same_run": ort_ms, "tuning": tuning_state(d), "applied": c.tuned,
            "tuned_kernels": f"{c.tuned_kernels}/{len(c.kernels)}"}


def profiler_threads() -> int:
    """The threads the profiler measures host builds with, as it decides them
    (planner.profiling.engine.Profiler: the host's cores, what a deployment here uses)."""
    from planner.profiling.cache import ProfileCache
    from planner.profiling.engine import Profiler, Progress

    with tempfile.TemporaryDirectory() as tmp:
        return Profiler(ProfileCache(Path(tmp)), Progress(False)).threads


def host_run(name: str, threads: int) -> dict:
    """`name`'s untuned TVM build and its ONNX Runtime build timed on `threads` threads by the
    profiler's own code (planner.profiling.builds: each build loaded and timed as `planner profile`
    times a host build), in a subprocess of its own: TVM sizes its thread pool once per process."""
    from planner.profiling.builds import KINDS
    from planner.profiling.cache import ProfileCache
    from planner.profiling.engine import Profiler, Progress
    from planner.profiling.model_work import ModelWork

    path, shapes = model_specs()[name]
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:  # an empty tuning database: the default CPU schedule
        prof = Profiler(ProfileCache(Path(tmp) / "cache"), Progress(False), tuning_root=Path(tmp) / "tuning",
                        threads=threads)
        work = ModelWork(prof, name, path, shapes)
        for key, build in (("tvm", "tvm/fp32"), ("ort", "onnxruntime/fp32")):
            runner = KINDS[build].load(work, prof.threads)
            out |= {f"{key}_ms": runner.time().median_ms, f"{key}_threads": runner.threads}
        out["kernels"] = [k.__dict__ for k in work.compiled_host().kernels]
    return out


def crosscheck(models: list[str], note: str = "") -> dict:
    """The roofline estimator against a measurement it did not see: this host on 1 thread (TVM's
    pool and ONNX Runtime's intra-op threads: what a deployment on a one-core target uses),
    estimated from the measurement on the threads the profiler measures with (profiler_threads)
    as a target with one core: the host's peak compute divided by its cores, the same bandwidth.
    The estimate is the profiler's (planner.profiling.calibrated.estimate_for: a calibration for
    such a target where one applies, else the host time scaled by the roofline), for both engines."""
    import subprocess

    from planner.app.targets import get_target
    from planner.profiling.calibrated import estimate_for
    from planner.profiling.compile import Kernel
    from planner.profiling.estimate import scale_factor

    host = get_target("host")
    threads = profiler_threads()
    cores = host.tvm_target.get("num-cores") or threads
    one_core = host.model_copy(update={"name": "host-1-core", "peak_gflops": host.peak_gflops / cores,
                                       "tvm_target": {**host.tvm_target, "num-cores": 1}})
    out: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "loadavg_start": os.getloadavg(), "profiler_threads": threads, "note": note}
    for name in models:
        runs = {}
        for n in dict.fromkeys((threads, 1)):
            proc = subprocess.run([sys.executable, __file__, "--host-run", name, "--threads", str(n)],
                                  capture_output=True, text=True, check=True)
            runs[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        kernels = [Kernel(**k) for k in runs[threads]["kernels"]]
        row = {"threads": threads, "roofline_factor": scale_factor(kernels, host, one_core)}
        for engine, build in (("tvm", "tvm"), ("ort", "onnxruntime")):
            measured, alone = runs[threads][f"{engine}_ms"], runs[1][f"{engine}_ms"]
            used = runs[threads][f"{engine}_threads"]
            if used != threads:  # TVM's pool started smaller than the profiler asks: not what it measures
                print(f"warning: {name} {build} ran on {used} threads, the profiler's {threads}", flush=True)
            est = estimate_for(kernels, measured, host, one_core, build, "untuned")
            row[engine] = {"measured_all_threads_ms": measured, "threads_used": used,
                           "measured_1_thread_ms": alone, "threads_used_1": runs[1][f"{engine}_threads"],
                           "estimated_1_thread_ms": est.latency_ms, "estimate": est.note,
                           "expected_error_pct": est.expected_error_pct,
                           "error_pct": 100 * (est.latency_ms - alone) / alone}
        out[name] = row
        print(f"crosscheck {name}: {row}", flush=True)
    out["loadavg_end"] = os.getloadavg()
    return out


def write_md(res: dict, path: Path) -> None:
    m = res["machine"]
    lines = [
        "# Profiling the OCR example (examples/ocr/app.yaml)",
        "",
        f"Machine: {m['cpu']}; peak {m['peak_gflops']} GFLOP/s, {m['mem_bandwidth_gbs']} GB/s measured copy; "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in res['loadavg_end'])}. {res.get('note') or 'No other jobs noted.'}",
        f"Run {res['date']}.",
        "",
        "| run | seconds | compiles | measurements | cache hits | goal |",
        "|---|---:|---:|---:|---:|---|",
        f"| cold (empty cache, untuned = default CPU schedule) | {res['cold_s']:.1f} | {res['cold']['compiles']} | {res['cold']['measures']} "
        f"| {res['cold']['hits']} | < 300 s |",
        f"| warm | {res['warm_s']:.2f} | {res['warm']['compiles']} | {res['warm']['measures']} | "
        f"{res['warm']['hits']} | < 2 s |",
        "",
        "Host latency per model (ms, median; inputs as in app.yaml):",
        "",
        "| model | input | TVM untuned | TVM tuned | tuning | ONNX Runtime | tuned / ORT |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for name, r in res["models"].items():
        tuned = r.get("tuned")
        t = f"{tuned['tvm_tuned_ms']:.1f}" if tuned else "-"
        how = (f"tuned:{tuned['tuned_kernels']} kernels, {r['tune']['records_total']} records in the database "
               f"({r['tune']['trials']} trials this run, {r['tune']['tuning_s'] / 60:.0f} min)"
               if tuned and r.get("tune") else (tuned["tuning"] if tuned else "not tuned"))
        ratio = f"{tuned['tvm_tuned_ms'] / tuned['ort_ms_same_run']:.1f}x" if tuned else "-"
        lines.append(f"| {name} | {r['input']} | {r['tvm_untuned_ms']:.1f} | {t} | {how} | {r['ort_ms']:.1f} | {ratio} |")
    lines += ["", "Goal: tuned det within 1.5x of ONNX Runtime. " + res.get("verdict", "")]
    if res.get("moonshot"):
        lines += ["", "Moonshot (a tuned TVM build faster than ONNX Runtime on this CPU, both timed in the same run): "
                  + "; ".join(res["moonshot"]) + "."]
    lines.append("")
    if res.get("crosscheck"):
        cc = res["crosscheck"]
        lines += ["Roofline estimator cross-check (untuned TVM and ONNX Runtime): this host on 1 thread (what a "
                  "deployment on a one-core target uses), estimated from its measurement on the threads the profiler "
                  f"measures with ({cc.get('profiler_threads', 'the host cores')}: TVM's thread pool and ONNX "
                  "Runtime's intra-op threads; each build loaded and timed by the profiler's code) as a target with "
                  "one core (the peak compute divided by the cores, the same bandwidth), estimated as the profiler "
                  "estimates both engines (a calibration where one applies, else the host time scaled by the "
                  "roofline; `estimate` in the JSON says which):", "",
                  "| model | engine | threads | measured ms | 1 thread measured ms | 1 thread estimated ms | error | "
                  "stated error |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in cc.items():
            if not isinstance(r, dict) or "roofline_factor" not in r:
                continue
            for engine, label in (("tvm", "TVM"), ("ort", "ONNX Runtime")):
                e = r.get(engine)
                if e is None:  # a result written before both engines were cross-checked
                    continue
                stated = e.get("expected_error_pct")
                lines.append(f"| {name} | {label} | {e['threads_used']} | {e['measured_all_threads_ms']:.1f} | "
                             f"{e['measured_1_thread_ms']:.1f} | {e['estimated_1_thread_ms']:.1f} | "
                             f"{e['error_pct']:+.0f}% | {'-' if stated is None else f'{stated:.0f}%'} |")
        if "date" in cc:
            lines += ["", f"Cross-check run {cc['date']}; load average at start "
                      f"{', '.join(f'{x:.2f}' for x in cc['loadavg_start'])}, at end "
                      f"{', '.join(f'{x:.2f}' for x in cc['loadavg_end'])}. "
                      f"{cc.get('note') or 'No conditions noted (--note).'}"]
        lines.append("")
    if res.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in res["notes"]] + [""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tune", default="det", help="models to tune, comma-separated (default det)")
    ap.add_argument("--tune-minutes", type=float, default=30.0, help="tuning budget per model")
    ap.add_argument("--note", default="", help="the run's conditions, e.g. 'other jobs shared the 2 cores'")
    ap.add_argument("--round", type=int, default=64, help="trials per tuning round")
    ap.add_argument("--tuning-root", type=Path, default=None, help="default: $PLANNER_TUNING_DIR or ~/.local/share/planner/tuning")
    ap.add_argument("--out", type=Path, default=RESULTS / "profile_ocr")
    ap.add_argument("--crosscheck", default="cls,det", help="models for the estimator cross-check ('' skips)")
    ap.add_argument("--crosscheck-only", action="store_true", help="add the cross-check to an existing result")
    ap.add_argument("--host-run", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.host_run:
        print(json.dumps(host_run(args.host_run, args.threads)))
        return 0
    if args.crosscheck_only:
        res = json.loads(args.out.with_suffix(".json").read_text())
        res["crosscheck"] = crosscheck([m for m in args.crosscheck.split(",") if m], args.note)
        args.out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        write_md(res, args.out.with_suffix(".md"))
        print(args.out.with_suffix(".md").read_text())
        return 0
    from planner.profiling.tune import tuning_root

    root = tuning_root(args.tuning_root)
    res: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(), "note": args.note}
    with tempfile.TemporaryDirectory() as tmp:
        cache, empty_tuning = Path(tmp) / "cache", Path(tmp) / "tuning"
        res["cold_s"], res["cold"], table = profile_once(cache, empty_tuning)
        print(f"cold: {res['cold_s']:.1f} s {res['cold']}", flush=True)
        res["warm_s"], res["warm"], _ = profile_once(cache, empty_tuning)
        print(f"warm: {res['warm_s']:.2f} s {res['warm']}", flush=True)
    res["profiles"] = [e.model_dump() for e in table.entries]
    specs = model_specs()
    res["models"] = {}
    for name, (path, shapes) in specs.items():
        host_entry = next(e for e in table.entries if e.node == name and e.tvm_ms is not None)
        res["models"][name] = {"input": "x".join(map(str, next(iter(shapes.values())))),
                               "tvm_untuned_ms": host_entry.tvm_ms, "ort_ms": host_entry.ort_ms}
    for name in [m for m in args.tune.split(",") if m] if args.tune_minutes > 0 else []:
        path, shapes = specs[name]
        print(f"tuning {name} for {args.tune_minutes} min", flush=True)
        res["models"][name]["tune"] = tune_model(name, path, shapes, root, args.tune_minutes, args.round)
    for name, (path, shapes) in specs.items():
        from planner.profiling.compile import has_tuning
        from planner.profiling.tune import tuning_dir
        from planner.app.targets import get_target

        if has_tuning(tuning_dir(get_target("host"), root)) and (name in args.tune.split(",")):
            res["models"][name]["tuned"] = timed_with_db(path, shapes, root)
            print(f"{name}: {res['models'][name]['tuned']}", flush=True)
    det = res["models"].get("det", {}).get("tuned")
    if det:
        ratio = det["tvm_tuned_ms"] / det["ort_ms_same_run"]
        tuned_run = res["models"]["det"].get("tune")
        how = (f"after {tuned_run['trials']} trials in {tuned_run['tuning_s'] / 60:.0f} min this run"
               if tuned_run else f"with the existing database ({det['tuning']}, {det.get('tuned_kernels', '?')} "
               "kernels with a record; no tuning this run)")
        res["verdict"] = (f"Reached: {ratio:.1f}x." if ratio <= 1.5 else f"Not reached: {ratio:.1f}x {how}.")
    res["moonshot"] = [f"{name} {t['tvm_tuned_ms']:.2f} ms tuned against {t['ort_ms_same_run']:.2f} ms: "
                       f"{'reached' if t['tvm_tuned_ms'] < t['ort_ms_same_run'] else 'not reached'}"
                       for name, r in res["models"].items() if (t := r.get("tuned"))]
    if args.crosscheck:
        res["crosscheck"] = crosscheck([m for m in args.crosscheck.split(",") if m], args.note)
    res["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    write_md(res, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
