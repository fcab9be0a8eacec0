"""The build the planner chooses for each OCR model on a host site, against every build it could
have chosen, all measured in the same run (issue 10, "How it is checked": Benchmark).

    .venv/bin/python benchmarks/engine_choice.py --note "no other jobs"   # ~4 min on 2 cores: a quiet machine
    .venv/bin/python benchmarks/engine_choice.py --quick                  # ~2 min, written to /tmp

1. The choice, by the project's own path: the app with every site on this machine
   (planner.local.run.on_host, as `planner run` and `planner bench`'s prediction profile it) over
   loopback links (planner.local.prediction.loopback_links), profiled in this run with a cache of
   its own, solved as `planner solve` solves (planner.pipeline.solve_prepared, the app's
   objective). Per model: the plan's build and its latency (the plan's host latency).
2. Every build the profiler considers for a host site (planner.profiling.builds.kinds_for: TVM
   fp32, ONNX Runtime fp32, ONNX Runtime int8 where the model has `max_error`), loaded as the
   profiler loads them (planner.profiling.model_work.ModelWork, the same tuning database), on the
   threads the profiler measures with and a deployment uses (this host's cores), each sample timed
   by the profiler's own protocol (Runner.time: a warm-up call, the median of 5 repeats of
   >= 100 ms). Samples interleaved over all models and builds (A B C A B C ...) for --rounds
   rounds, so that drift and other jobs hit every build alike. Per build: the median over the
   rounds, min, max and the interquartile range.
3. Per model: the best build = the fastest by this run's medians among those the profiler admitted
   on the host site (verified against the fp32 reference); gap = (chosen - best) / best, both from
   this run's medians. Goal: gap <= 5 %.

The machine's load is recorded as the profiler records it (planner.profiling.load): the load
average per core before and after, and per sample the share of the CPUs other processes used.
Writes benchmarks/results/engine_choice.{json,md} (--quick: /tmp/engine_choice_quick.*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "runtime"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from planner.local.prediction import loopback_links  # noqa: E402
from planner.local.run import on_host  # noqa: E402
from planner.model.open_app import open_app  # noqa: E402
from planner.pipeline import Prepared, solve_prepared  # noqa: E402
from planner.plan.problem import build_instance  # noqa: E402
from planner.profiling.app_profiles import profile_app  # noqa: E402
from planner.profiling.builds import BuildUnavailable, kinds_for  # noqa: E402
from planner.profiling.cache import ProfileCache  # noqa: E402
from planner.profiling.engine import Profiler, Progress  # noqa: E402
from planner.profiling.load import Load, measure_with_load  # noqa: E402
from planner.profiling.model_work import ModelWork  # noqa: E402
from planner.solver.cpsat import SolverConfig  # noqa: E402

OCR_APP = ROOT / "examples" / "ocr" / "app.yaml"
GOAL_PCT = 5.0
ROUNDS, QUICK_ROUNDS = 20, 3


def plan_on_host(app: Path, overrides: list[str], cache: Path, tuning_root: Path | None) -> dict:
    """The planner's choice with every site on this host: the profiles (measured now, into
    `cache`) and the plan solved from them."""
    checked = open_app(app, overrides)
    here = on_host(checked).with_links(loopback_links(checked.app))
    profiles = profile_app(here, cache_dir=cache, tuning_root=tuning_root, progress=False)
    plan = solve_prepared(Prepared(here, profiles, build_instance(here, profiles.table)),
                          SolverConfig(objective=checked.app.objective, time_limit_s=30.0))
    return {"checked": here, "table": profiles.table, "plan": plan}


def load_builds(checked, models: list[str], cache: Path, tuning_root: Path | None) -> tuple[Profiler, dict]:
    """Every host build of each model, loaded as the profiler loads them: (the profiler, whose
    `threads` they run on, {model: {build: Runner, or why it cannot run here}})."""
    prof = Profiler(ProfileCache(cache), Progress(False), tuning_root=tuning_root)
    out: dict[str, dict] = {}
    for m in models:
        node = checked.app.models[m]
        work = ModelWork(prof, m, checked.resolve(node.onnx), node.input_shapes)
        out[m] = {}
        for kind in kinds_for(False, node.max_error):
            try:
                out[m][kind.name] = kind.load(work, prof.threads)
            except BuildUnavailable as exc:
                out[m][kind.name] = str(exc)
    return prof, out


def interleaved(runners: dict[str, dict], rounds: int, cores: int) -> dict[str, dict[str, dict]]:
    """`rounds` rounds, each timing every loadable build of every model once, in the same order:
    {model: {build: {"ms": [...], "others_pct": [...]}}}."""
    samples = {m: {b: {"ms": [], "others_pct": []} for b, r in builds.items() if not isinstance(r, str)}
               for m, builds in runners.items()}
    for i in range(rounds):
        for m, builds in samples.items():
            for b, s in builds.items():
                timing, load = measure_with_load(runners[m][b].time, cores)
                s["ms"].append(timing.median_ms)
                s["others_pct"].append(load.others_pct)
        print(f"round {i + 1}/{rounds}: " + ", ".join(f"{m} {b} {s['ms'][-1]:.2f} ms" for m, builds in samples.items()
                                                      for b, s in builds.items()), flush=True)
    return samples


def spread(ms: list[float]) -> dict:
    """Median, min, max, and the interquartile range in % of the median."""
    median = statistics.median(ms)
    q1, q3 = np.percentile(ms, [25, 75])
    return {"median_ms": round(median, 4), "min_ms": round(min(ms), 4), "max_ms": round(max(ms), 4),
            "iqr_pct": round(100 * float(q3 - q1) / median, 2)}


def gap(medians: dict[str, float], chosen: str | None, admitted: set[str]) -> dict:
    """The best admitted build by `medians`, and the chosen build's gap to it: (chosen - best) / best."""
    candidates = [b for b in medians if b in admitted]
    if not candidates:
        return {"best": None, "best_ms": None, "chosen_ms": None, "gap_pct": None, "within_goal": False}
    best = min(candidates, key=medians.get)
    out = {"best": best, "best_ms": medians[best], "chosen_ms": medians.get(chosen), "gap_pct": None,
           "within_goal": False}
    if chosen in medians:
        out["gap_pct"] = round(100 * (medians[chosen] - medians[best]) / medians[best], 2)
        out["within_goal"] = out["gap_pct"] <= GOAL_PCT
    return out


def model_row(m: str, chosen, table, runners: dict, samples: dict, threads: int) -> dict:
    """One model's builds (as measured here, and as profiled on the plan's site) and the choice's gap.
    A build is admitted when the profile offers it to the solver there (verified, or ONNX Runtime
    could not make the reference) and it ran on the profiler's threads."""
    # every site is this host: without a plan, any site the model may use has the same builds
    site = chosen.site if chosen else next((e.site for e in table.entries if e.node == m), None)
    excluded = {x.build: x.reason for x in table.excluded if x.node == m and x.site == site}
    builds = {}
    for b, r in runners.items():
        entry = table.get(m, site, b) if site else None
        row = {"profiled_ms": entry.latency_ms if entry else None, "admitted": entry is not None,
               "why_not": excluded.get(b) or (None if entry else "not in the profile")}
        if isinstance(r, str):
            row |= {"threads": None, "admitted": False, "why_not": r}
        else:
            row |= {"threads": r.threads, **spread(samples[b]["ms"]),
                    "samples_ms": [round(x, 4) for x in samples[b]["ms"]],
                    "others_pct_max": max((x or 0.0) for x in samples[b]["others_pct"])}
            if r.threads != threads:
                row |= {"admitted": False, "why_not": f"ran on {r.threads} threads, not {threads}"}
        builds[b] = row
    medians = {b: r["median_ms"] for b, r in builds.items() if "median_ms" in r}
    choice = f"{chosen.engine}/{chosen.precision}" if chosen else None
    tvm = table.get(m, site, "tvm/fp32") if site else None
    row = {"chosen": choice, "site": site, "plan_ms": chosen.latency_ms if chosen else None,
           "tvm_tuning": tvm.tuning if tvm else None, "builds": builds,
           **gap(medians, choice, {b for b, r in builds.items() if r["admitted"]})}
    # the plan's own figure (its profile, taken minutes earlier) against this run's best
    row["plan_vs_best_pct"] = (round(100 * (row["plan_ms"] - row["best_ms"]) / row["best_ms"], 2)
                               if row["plan_ms"] is not None and row["best_ms"] else None)
    return row


def engine_choice(app: Path, overrides: list[str], models: list[str] | None, rounds: int, work: Path,
                  tuning_root: Path | None = None) -> dict:
    """The benchmark's core: the plan's choice on a host site and every build measured, per model."""
    print(f"profiling {app} with every site on this host, and solving it", flush=True)
    chosen = plan_on_host(app, overrides, work / "profile-cache", tuning_root)
    checked, table, plan = chosen["checked"], chosen["table"], chosen["plan"]
    onnx = [m for m, node in checked.app.models.items() if node.kind == "onnx"]
    models = models or onnx
    unknown = sorted(set(models) - set(onnx))
    if unknown:
        raise SystemExit(f"--models: {', '.join(unknown)}: not ONNX models of {app} ({', '.join(onnx)})")
    print(f"loading every build of {', '.join(models)} as the profiler does", flush=True)
    prof, runners = load_builds(checked, models, work / "build-cache", tuning_root)
    threads, cores = prof.threads, prof.cores
    start = time.perf_counter()
    samples, phase = measure_with_load(lambda: interleaved(runners, rounds, cores), cores)
    out = {"app": str(app), "overrides": overrides, "rounds": rounds, "threads": threads, "goal_pct": GOAL_PCT,
           "measure_s": round(time.perf_counter() - start, 1),
           "plan": {"status": plan.status, "objective": checked.app.objective, "latency_ms": plan.latency_ms,
                    "placement": dict(plan.placement)},
           "load_while_measuring": {"others_pct": phase.others_pct, "steal_pct": phase.steal_pct,
                                    "busy": Load(None, phase.steal_pct, phase.others_pct).busy_reason(cores)},
           "models": {}}
    for m in models:
        out["models"][m] = model_row(m, plan.models.get(m), table, runners[m], samples[m], threads)
    return out


def machine(note: str) -> dict:
    from importlib.metadata import version

    from planner.app.targets import cpu_model, get_target

    host = get_target("host")
    cores = host.tvm_target.get("num-cores") or os.cpu_count()
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "planner", "benchmarks"],
                                    capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {"cpu": cpu_model(), "description": host.description, "cores": cores, "kernel": platform.release(),
            "python": platform.python_version(), "tvm": version("apache-tvm"), "onnxruntime": version("onnxruntime"),
            "commit": commit, "dirty": dirty, "note": note,
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "loadavg_before": loadavg(cores)}


def loadavg(cores: int) -> dict:
    one, five, fifteen = os.getloadavg()
    return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2), "1m_per_core": round(one / cores, 2)}


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _pct(v) -> str:
    return "-" if v is None else f"{v:+.1f} %"


def markdown(r: dict) -> str:
    m, res = r["machine"], r["result"]
    before, after = m["loadavg_before"], m["loadavg_after"]
    load = res["load_while_measuring"]
    plan = res["plan"]
    lines = [
        "# Engine choice: the planner's build per OCR model on a host site against every build", "",
        f"Machine: {m['cpu']} ({m['description']}), {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, "
        f"TVM {m['tvm']}, ONNX Runtime {m['onnxruntime']}; commit {m['commit']}{' (modified)' if m['dirty'] else ''}; "
        f"{m['date_utc']} UTC{' (--quick)' if r['quick'] else ''}. {m['note'] or 'No other jobs noted.'}", "",
        f"Load average (1 min) before {before['1m']} ({before['1m_per_core']} per core), after {after['1m']} "
        f"({after['1m_per_core']} per core); other processes used {_ms(load['others_pct'])} % of the CPUs while "
        f"the builds were timed{', steal ' + _ms(load['steal_pct']) + ' %' if load['steal_pct'] is not None else ''}"
        f"{' - busy: ' + load['busy'] if load['busy'] else ''}.", "",
        f"The choice: `{Path(res['app']).relative_to(ROOT) if Path(res['app']).is_relative_to(ROOT) else res['app']}` "
        f"with every site on this machine over loopback links, profiled in this run, solved as `planner solve` does "
        f"(objective {plan['objective']}): {plan['status']}, {_ms(plan['latency_ms'])} ms. Every build the profiler "
        f"considers for a host site, on {res['threads']} threads (this host's cores, as profiled and deployed), "
        f"timed by the profiler's protocol (median of 5 repeats of >= 100 ms after a warm-up), interleaved over "
        f"{res['rounds']} rounds ({res['measure_s']} s). Gap = (chosen - best) / best, both this run's medians; "
        f"goal: within {res['goal_pct']:g} %.", "",
        "| model | chosen build (plan) | chosen ms (this run) | best build | best ms | gap | goal | "
        "plan's latency ms | plan's vs best |",
        "|---|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for name, x in res["models"].items():
        lines.append(f"| {name} | {x['chosen'] or 'none'} | {_ms(x['chosen_ms'])} | {x['best'] or '-'} | "
                     f"{_ms(x['best_ms'])} | {_pct(x['gap_pct'])} | {'met' if x['within_goal'] else 'missed'} | "
                     f"{_ms(x['plan_ms'])} | {_pct(x['plan_vs_best_pct'])} |")
    met = sum(x["within_goal"] for x in res["models"].values())
    lines += ["", f"Goal met for {met} of {len(res['models'])} models. The plan's latency is the profile it was "
              "solved from (measured minutes earlier in this run); its difference from the best is the profile's "
              "drift plus the choice's gap."]
    lines += ["", "Every build (ms; IQR: interquartile range over the rounds, % of the median; profiled: the "
              "profile the plan was solved from; others: the most CPU other processes used during one sample):", "",
              "| model | build | threads | median | min | max | IQR | profiled | others max | admitted |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, x in res["models"].items():
        for b, s in x["builds"].items():
            admitted = "yes" if s["admitted"] else f"no: {s['why_not']}"
            if "median_ms" not in s:
                lines.append(f"| {name} | {b} | - | - | - | - | - | {_ms(s['profiled_ms'])} | - | {admitted} |")
                continue
            lines.append(f"| {name} | {b} | {s['threads']} | {_ms(s['median_ms'])} | {_ms(s['min_ms'])} | "
                         f"{_ms(s['max_ms'])} | {s['iqr_pct']:.1f} % | {_ms(s['profiled_ms'])} | "
                         f"{s['others_pct_max']:.0f} % | {admitted} |")
    tuning = {name: x["tvm_tuning"] for name, x in res["models"].items() if x["tvm_tuning"]}
    if tuning:
        lines += ["", "TVM builds: " + ", ".join(f"{k} {v}" for k, v in tuning.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds, no wait for a quiet machine, written "
                                                         "to /tmp (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help=f"interleaved rounds (default {ROUNDS})")
    ap.add_argument("--app", type=Path, default=OCR_APP, help="the app (default: the OCR example)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override app.yaml as `planner solve --set` does, e.g. models.det.max_error=0.05 "
                         "(adds the int8 build)")
    ap.add_argument("--models", default="", help="ONNX models to time, comma-separated (default: all)")
    ap.add_argument("--tuning-root", type=Path, default=None,
                    help="default: $PLANNER_TUNING_DIR or ~/.local/share/planner/tuning, as the profiler")
    ap.add_argument("--note", default="", help="the run's conditions, e.g. 'no other jobs'")
    ap.add_argument("--out", default=None, help="output prefix (.json, .md)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    if rounds < 1:
        ap.error("--rounds must be >= 1")
    prefix = args.out or ("/tmp/engine_choice_quick" if args.quick else str(ROOT / "benchmarks" / "results" /
                                                                             "engine_choice"))
    if args.quick:  # a smoke run: the profiler does not wait for a quieter machine (planner.profiling.load)
        os.environ.setdefault("PLANNER_LOAD_WAIT_S", "0")
    info = machine(args.note)
    with tempfile.TemporaryDirectory(prefix="engine-choice-") as tmp:
        result = engine_choice(args.app, args.overrides, [m for m in args.models.split(",") if m] or None, rounds,
                               Path(tmp), args.tuning_root)
    info["loadavg_after"] = loadavg(info["cores"])
    report = {"machine": info, "quick": args.quick, "result": result}
    Path(prefix + ".json").write_text(json.dumps(report, indent=2) + "\n")
    Path(prefix + ".md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {prefix}.json and {prefix}.md")
    busy = result["load_while_measuring"]["busy"]
    if busy:
        print(f"warning: measured on a busy machine ({busy}): rerun on a quiet one before committing the results",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
