"""How the CP-SAT placement solver scales: random layered DAG ensembles and real DNN graphs.

Every run goes through the solver path `planner solve` uses (planner.pipeline.solve_prepared):
app dict -> Instance (tests.appgen.instance_of: the spec, graph, network and build_instance
of the CLI, without files or the hardware catalog) -> baselines -> the best feasible one as
hint -> PlacementSolver(...).solve() (primary objective, then the lexicographic tie-break
phase) -> the independent evaluator checks the plan.

Recorded per run: build times (instance, baselines, CP-SAT model), time to the first
feasible plan, presolve time (parsed from the CP-SAT log), time to the proven optimum (or
none), status, objective, bound and gap of the primary phase, the tie-break phase's
time separately, and the 1-minute load average before and after (other jobs on the machine
show there). Writes <out>.json (with machine info) and <out>.md (tables for the README).

Time limit per run (both phases), by case: 30x5 10 s, 100x8 30 s, 300x12 60 s (its goal is
stated at 60 s), real graphs 20 s; `--time-limit` sets one for all.

    python benchmarks/solver_scaling.py                 # full run, 3 seeds, ~10-15 min on 2 cores
    python benchmarks/solver_scaling.py --quick         # ~3 min, written to /tmp
    python benchmarks/solver_scaling.py --sweep-workers 2,4,8   # + workers sweep on 100x8, 300x12
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dnn_graphs, gen_dag  # noqa: E402

SIZES = [(30, 5), (100, 8), (300, 12)]
LIMITS = {"30x5": 10.0, "100x8": 30.0, "300x12": 60.0, "dnn": 20.0}  # s per run, by case label
GOALS = {  # size -> (what, limit in s)
    "30x5": "proven optimal (both phases) < 2 s end to end",
    "100x8": "proven optimal (both phases) < 10 s end to end",
    "300x12": "a feasible plan < 10 s end to end, and gap < 1 % within 60 s",
}


# -- machine ------------------------------------------------------------------------------
def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info(workers: int, note: str) -> dict:
    import ortools
    import pydantic

    from planner.app.targets import cpu_model

    cpu = cpu_model()
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "planner"],
                                    capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "ortools": ortools.__version__,
        "pydantic": pydantic.__version__,
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "workers": workers,
        "note": note,
        "loadavg_1m_at_start": loadavg(),
        "git_commit": commit,
        "planner_dirty": dirty,
    }


# -- CP-SAT log -------------------------------------------------------------------------
@contextmanager
def capture_fd1(path: Path):
    """CP-SAT logs from C++ to file descriptor 1: send it to `path` while solving."""
    from planner_runtime.tvm_noise import redirect_fd

    with open(path, "wb") as f, redirect_fd(1, f):
        yield


def parse_log(text: str) -> list[dict]:
    """Per solve in the log: presolve start/end (search start), and probing time."""
    phases = []
    for chunk in text.split("Starting CP-SAT solver")[1:]:
        m = re.search(r"Starting search at ([\d.]+)s", chunk)
        probe = sum(float(x) for x in re.findall(r"^\s*([\d.e+-]+)s\s+[\d.e+-]+d\s+\*?\[Probe\]", chunk, re.M))
        v = re.search(r"^#Variables: ([\d']+)", chunk, re.M)
        phases.append({
            "search_start_s": float(m.group(1)) if m else None,
            "probe_s": round(probe, 3),
            "variables": int(v.group(1).replace("'", "")) if v else None,
        })
    return phases


# -- one run ------------------------------------------------------------------------------
def run_one(app: dict, objective: str, time_limit: float, workers: int, log_dir: Path | None,
            site_cores: bool = False) -> dict:
    from planner.solver.baselines import baselines, best_feasible
    from planner.solver.evaluate import evaluate
    from planner.solver.cpsat import PlacementSolver, SolverConfig
    from tests.appgen import instance_of, with_site_cores

    data = gen_dag.app_only(app)
    gc.collect()  # the previous run's model is garbage: do not bill its collection to this run
    load_before = loadavg()
    t0 = time.perf_counter()
    inst, _, _ = instance_of(data)
    if site_cores:  # every site's cores as one queue, every build on all of them
        inst = with_site_cores(inst, [1])
    t1 = time.perf_counter()
    hint = best_feasible(baselines(inst), objective)
    t2 = time.perf_counter()
    config = SolverConfig(objective=objective, time_limit_s=time_limit, workers=workers,
                          log_search_progress=log_dir is not None)
    solver = PlacementSolver(inst, config, hint=hint.evaluation.placement if hint else None)
    t3 = time.perf_counter()
    proto = solver.model.proto
    log_path = log_dir / f"{app['name']}-{objective}-w{workers}.log" if log_dir else None
    if log_path:
        with capture_fd1(log_path):
            sol = solver.solve()
    else:
        sol = solver.solve()
    t4 = time.perf_counter()
    build = {"instance_s": t1 - t0, "baselines_s": t2 - t1, "model_s": t3 - t2}
    pre = sum(build.values())
    p, s = sol.primary, sol.secondary
    rec = {
        "case": app["name"], "objective": objective, "workers": workers, "time_limit_s": time_limit,
        "models": len(inst.models), "sites": len(inst.sites), "flows": len(inst.flows),
        "cpsat_vars": len(proto.variables), "cpsat_constraints": len(proto.constraints),
        "hint": hint.name if hint else None,
        "build": {k: round(v, 3) for k, v in build.items()},
        "status": sol.status,
        "primary": p.model_dump() if p else None,
        "secondary": s.model_dump() if s else None,
        "gap": sol.gap,
        "solve_wall_s": round(t4 - t3, 3),
        "first_feasible_s": round(pre + p.first_solution_s, 3) if p and p.first_solution_s is not None else None,
        "primary_optimal_s": round(pre + p.wall_time_s, 3) if p and p.status == "OPTIMAL" else None,
        "optimal_s": round(t4 - t0, 3) if sol.status == "OPTIMAL" else None,
        "total_s": round(t4 - t0, 3),
        "loadavg_1m": [load_before, loadavg()],
    }
    if log_path:
        phases = parse_log(log_path.read_text(errors="replace"))
        rec["log"] = str(log_path)
        rec["presolve_s"] = [ph["search_start_s"] for ph in phases]
        rec["probe_s"] = [ph["probe_s"] for ph in phases]
    if sol.placement:
        evaluation = evaluate(inst, sol.placement)
        rec["plan"] = {"feasible": evaluation.feasible, "latency_ms": evaluation.latency_us / 1000,
                       "cost_per_hour": evaluation.cost_uph / 1e6,
                       "sites_used": len(set(sol.placement.values()))}
        if not evaluation.feasible:
            rec["plan"]["violations"] = [v.message for v in evaluation.violations]
        # the solver's primary value can only over-state the evaluator's (replicas / makespan slack)
        got = evaluation.cost_uph if objective == "cost" else evaluation.latency_us
        rec["plan"]["primary_matches_evaluator"] = p.value is not None and got <= p.value
    return rec


# -- cases --------------------------------------------------------------------------------
def random_cases(sizes, seeds) -> list[tuple[str, dict, dict]]:
    out = []
    for n, s in sizes:
        for seed in seeds:
            t = time.perf_counter()
            app = gen_dag.generate(n, s, seed)
            out.append((f"{n}x{s}", app, {"kind": "random", "seed": seed, "gen_s": round(time.perf_counter() - t, 3),
                                          **app["x-bench"]}))
    return out


def dnn_cases(names, directory: Path) -> list[tuple[str, dict, dict]]:
    out = []
    for name in names:
        t = time.perf_counter()
        app = dnn_graphs.generate(name, directory)
        out.append(("dnn", app, {"kind": "dnn", "graph": name, "gen_s": round(time.perf_counter() - t, 3),
                                 **app["x-bench"]}))
    return out


# -- report -------------------------------------------------------------------------------
def _f(x, digits=2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _gap(r) -> str:
    return "-" if r.get("gap") is None else f"{100 * r['gap']:.2f}%"


def table(runs: list[dict]) -> list[str]:
    lines = [
        "| case | obj | w | vars | build s | hint | presolve s | 1st feasible s | primary s | status | gap | 2nd phase s | total s | load |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        p, s = r["primary"] or {}, r["secondary"] or {}
        build = sum(r["build"].values())
        pres = r.get("presolve_s") or []
        pres_txt = "/".join(_f(x, 1) for x in pres) if pres else "-"
        prim = f"{_f(p.get('wall_time_s'))} {p.get('status', '-')[:3].lower()}" if p else "-"
        sec = f"{_f(s.get('wall_time_s'))} {s.get('status', '-')[:3].lower()}" if s else "-"
        lines.append(
            f"| {r['case']} | {r['objective']} | {r['workers']} | {r['cpsat_vars']} | {_f(build)} | {r['hint'] or '-'} | "
            f"{pres_txt} | {_f(r['first_feasible_s'])} | {prim} | {r['status']} | {_gap(r)} | {sec} | {_f(r['total_s'])} | "
            f"{'/'.join(_f(x, 1) for x in r.get('loadavg_1m', []))} |"
        )
    return lines


def goals(runs: list[dict]) -> tuple[list[str], dict]:
    verdict = {}
    lines = ["| goal | runs | met | worst | detail |", "|---|---:|---:|---:|---|"]
    for size, what in GOALS.items():
        rs = [r for r in runs if r["case"].startswith(f"dag-{size}-") and r["workers"] == runs[0]["workers"]]
        if not rs:
            continue
        if size in ("30x5", "100x8"):
            limit = 2.0 if size == "30x5" else 10.0
            ok = [r["optimal_s"] is not None and r["optimal_s"] < limit for r in rs]
            worst = max((r["optimal_s"] if r["optimal_s"] is not None else float("inf")) for r in rs)
            detail = ", ".join(f"{r['case'].split('-')[-1]}/{r['objective'][0]}: "
                               f"{_f(r['optimal_s']) if r['optimal_s'] is not None else r['status'].lower()}"
                               for r in rs)
        else:
            ok = [r["first_feasible_s"] is not None and r["first_feasible_s"] < 10 and r["gap"] is not None
                  and r["gap"] < 0.01 for r in rs]
            worst = max((r["first_feasible_s"] if r["first_feasible_s"] is not None else float("inf")) for r in rs)
            detail = ", ".join(f"{r['case'].split('-')[-1]}/{r['objective'][0]}: 1st {_f(r['first_feasible_s'])} s "
                               f"gap {_gap(r)}" for r in rs)
            # the two halves of the goal, each on its own
            first = [r["first_feasible_s"] is not None and r["first_feasible_s"] < 10 for r in rs]
            gap = [r["gap"] is not None and r["gap"] < 0.01 for r in rs]
            worst_gap = max((r["gap"] if r["gap"] is not None else float("inf")) for r in rs)
            verdict[size + " first plan < 10 s"] = {"met": sum(first), "runs": len(first)}
            verdict[size + " gap < 1 % in 60 s"] = {"met": sum(gap), "runs": len(gap)}
            lines.append(f"| {size} part 1: a feasible plan < 10 s | {len(first)} | {sum(first)} | {_f(worst)} s | |")
            lines.append(f"| {size} part 2: gap < 1 % within 60 s | {len(gap)} | {sum(gap)} | "
                         f"{'-' if worst_gap == float('inf') else f'{100 * worst_gap:.1f}%'} | |")
        verdict[size] = {"goal": what, "met": sum(ok), "runs": len(ok)}
        lines.append(f"| {size}: {what} | {len(ok)} | {sum(ok)} | {_f(worst)} s | {detail} |")
    return lines, verdict


def sweep_table(runs: list[dict]) -> list[str]:
    by = {}
    for r in runs:
        size = r["case"].split("-")[1]
        by.setdefault((size, r["objective"], r["workers"]), []).append(r)
    lines = ["| size | obj | workers | optimal (of runs) | mean 1st feasible s | mean primary s | mean total s | mean gap |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for (size, obj, w), rs in sorted(by.items(), key=lambda kv: (int(kv[0][0].split("x")[0]), kv[0][1], kv[0][2])):
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        firsts = [r["first_feasible_s"] for r in rs if r["first_feasible_s"] is not None]
        gaps = [r["gap"] for r in rs if r["gap"] is not None]
        lines.append(f"| {size} | {obj} | {w} | {sum(r['status'] == 'OPTIMAL' for r in rs)}/{len(rs)} | "
                     f"{_f(mean(firsts))} | {_f(mean([r['primary']['wall_time_s'] for r in rs if r['primary']]))} | "
                     f"{_f(mean([r['total_s'] for r in rs]))} | "
                     f"{'-' if not gaps else f'{100 * mean(gaps):.2f}%'} |")
    return lines


def write(out: Path, doc: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    m = doc["machine"]
    md = [
        "# Solver scaling",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, Python {m['python']}, OR-Tools {m['ortools']}, "
        f"{m['date']}, CP-SAT workers {m['workers']}, time limit per run (both phases) "
        f"{', '.join(f'{k} {v:g} s' for k, v in doc['config']['time_limit_s'].items())}. "
        f"Planner commit {m['git_commit'] and m['git_commit'][:10]}"
        f"{' (planner/ modified)' if m['planner_dirty'] else ''}. Seeds {doc['config']['seeds']}.",
        *([f"Note: {m['note']}"] if m.get("note") else []),
        "Generated by `benchmarks/solver_scaling.py`; the numbers are one run each (noisy: compare within a run). "
        "`load` = the 1-minute load average before/after the run (2 cores: above 2, other jobs shared them).",
        "",
        "Columns: `build s` = Instance + baselines + CP-SAT model in Python; `presolve s` = when CP-SAT started "
        "searching, per phase (from its log); `1st feasible s` = build + time to the first solution of the primary "
        "phase; `primary s` = wall time of the primary phase and its status (opt = proven); `gap` = primary "
        "|value - bound| / value; `2nd phase s` = the lexicographic tie-break phase; `total s` = end to end.",
        "",
        "## Goals",
        "",
        *doc["goals_table"],
        "",
        "## All runs",
        "",
        *table(doc["runs"]),
    ]
    if doc.get("sweep"):
        md += ["", "## CP-SAT workers on this machine", "", *sweep_table(doc["sweep"])]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="one seed of each size (300x12 with 30 s), two small real graphs; ~3 min, written to /tmp")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds per run, both phases, for every case (default by size: 30x5 10, 100x8 30, 300x12 60, "
                         "real graphs 20)")
    ap.add_argument("--seeds", type=int, default=3, help="random DAGs per size")
    ap.add_argument("--workers", type=int, default=None, help="CP-SAT workers (default: the CLI's, min(8, cores))")
    ap.add_argument("--note", default="", help="recorded with the machine info, e.g. 'machine shared with other jobs'")
    ap.add_argument("--sweep-workers", default="", help="e.g. 2,4,8: also run 100x8 and 300x12 with these")
    ap.add_argument("--site-cores", action="store_true",
                    help="give every site a wait table of its cores (the latency model's site queue), every build "
                         "on all of them: the solver's site-wait variables, which the generated sites (no target) lack")
    ap.add_argument("--only", default="", help="comma list of case prefixes: 30x5,100x8,300x12,dnn or a graph name")
    ap.add_argument("--graphs-dir", type=Path, default=dnn_graphs.DEFAULT_DIR)
    ap.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()) / "solver_scaling_logs",
                    help="CP-SAT logs (presolve times are parsed from them); 'none' to disable")
    ap.add_argument("--out", type=Path, default=None,
                    help="output prefix (default benchmarks/results/solver_scaling, quick: /tmp/solver_scaling_quick)")
    args = ap.parse_args()

    from planner.solver.cpsat import SolverConfig

    workers = args.workers or SolverConfig().workers
    limits = {k: args.time_limit for k in LIMITS} if args.time_limit else dict(LIMITS)
    if args.quick and not args.time_limit:
        limits["300x12"] = 30.0
    out = args.out or (Path(tempfile.gettempdir()) / "solver_scaling_quick" if args.quick
                       else ROOT / "benchmarks" / "results" / "solver_scaling")
    log_dir = None if str(args.log_dir) == "none" else args.log_dir
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)
    only = [x for x in args.only.split(",") if x]

    if args.quick:
        sizes, seeds, graphs = SIZES, range(1), dnn_graphs.GRAPHS[:2]
    else:
        sizes, seeds, graphs = SIZES, range(args.seeds), dnn_graphs.GRAPHS
    cases = random_cases([(n, s) for n, s in sizes if not only or f"{n}x{s}" in only], seeds)
    cases += dnn_cases([g for g in graphs if not only or "dnn" in only or any(o in g for o in only)],
                       args.graphs_dir)

    doc = {"machine": machine_info(workers, args.note), "config": {"time_limit_s": limits, "seeds": list(seeds),
                                                         "quick": args.quick, "sweep_workers": args.sweep_workers,
                                                         "site_cores": args.site_cores},
           "instances": [], "runs": [], "sweep": []}
    for label, app, meta in cases:
        doc["instances"].append({"case": app["name"], **meta})
        for objective in ("cost", "latency"):
            r = run_one(app, objective, limits[label], workers, log_dir, args.site_cores)
            doc["runs"].append(r)
            print(f"{r['case']:<40} {objective:<8} w={workers} {r['status']:<9} 1st={_f(r['first_feasible_s'])} "
                  f"opt={_f(r['optimal_s'])} gap={_gap(r)} total={_f(r['total_s'])}", flush=True)
    doc["goals_table"], doc["goals"] = goals(doc["runs"])
    write(out, doc)

    sweep = [int(w) for w in args.sweep_workers.split(",") if w]
    if sweep:
        for label, app, meta in cases:
            if label not in ("100x8", "300x12"):
                continue
            for w in sweep:
                for objective in ("cost", "latency"):
                    if w == workers:  # the main run already has it
                        r = next(x for x in doc["runs"] if x["case"] == app["name"] and x["objective"] == objective)
                    else:
                        r = run_one(app, objective, limits[label], w, log_dir, args.site_cores)
                        print(f"{r['case']:<40} {objective:<8} w={w} {r['status']:<9} 1st={_f(r['first_feasible_s'])} "
                              f"opt={_f(r['optimal_s'])} gap={_gap(r)} total={_f(r['total_s'])}", flush=True)
                    doc["sweep"].append(r)
                write(out, doc)
    write(out, doc)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
