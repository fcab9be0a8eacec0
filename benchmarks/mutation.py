"""Mutation testing of the core math with mutmut: of the small changes mutmut makes to the
evaluator, the routes, the rates, the Instance and the runtime's tensor checks (one at a time:
an operator, a constant, a comparison, a string, a dropped argument), how many make a test fail.

    python benchmarks/mutation.py                # `make mutation`: stage, run, report
    python benchmarks/mutation.py --report-only  # the report again, from the last run

The files, the tests and the options are pyproject.toml's [tool.mutmut]. mutmut runs in a staging
folder, build/mutation/ (made afresh each run), holding copies of planner/, of the runtime's
package beside it (runtime/planner_runtime -> planner_runtime/, as the tests import it), of tests/,
and of the examples and the target catalog the tests read, with HYPOTHESIS_PROFILE=mutation (the
examples of `make test`, failures not shrunk). Each mutant runs only the tests that call the
function it changes.

Writes benchmarks/results/mutation.json and mutation.md: per file and overall, mutants killed
(a test failed or timed out), survived, and with no test calling them; the score, killed /
(all - skipped); and every survivor with its diff, those below known to be equivalent (no
test can tell them from the original) with the reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "build" / "mutation"
RESULTS = ROOT / "benchmarks" / "results"

# Survivors no test can kill, by the line mutmut changes (file, line before, line after): why.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("planner/model/network.py", "heap = [(0.0, next(tick), source)]", "heap = [(1.0, next(tick), source)]"):
        "every distance grows by the same 1.0: nodes leave the heap in the same order, so every route is the same "
        "(the distances themselves are not kept)",
    ("planner/model/network.py", "done.add(v)", "done.add(None)"):
        "nodes are then expanded again from stale heap entries, which are never shorter than the distance already "
        "found: no predecessor changes but the source's own, which the path walk back never reads",
    ("planner_runtime/tensors.py", "for item in arr.reshape(-1):", "for item in arr.reshape(-2):"):
        "numpy 2 infers a dimension given as any negative number: reshape(-2) is reshape(-1)",
    ("planner_runtime/tensors.py", "raw = memoryview(arr.reshape(-1).view(np.uint8)) if view else arr.tobytes()",
     "raw = memoryview(arr.reshape(-2).view(np.uint8)) if view else arr.tobytes()"):
        "numpy 2 infers a dimension given as any negative number: reshape(-2) is reshape(-1)",
    ("planner_runtime/tensors.py", 'b = item if isinstance(item, bytes) else str(item).encode("utf-8")',
     'b = item if isinstance(item, bytes) else str(item).encode("UTF-8")'):
        "codec names are case-insensitive",
    ("planner_runtime/tensors.py", 'parts.append(struct.pack("<I", len(b)))',
     'parts.append(struct.pack("<i", len(b)))'):
        "signed and unsigned 32-bit lengths agree below 2 GiB; an element that large is beyond the runtime's "
        "message limit (decoding, where a test can send any header, reads them unsigned: tested)",
}


def stage() -> None:
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    # symlinks=False: planner/app/catalog is a link to profiles/targets, which mutmut would not copy
    shutil.copytree(ROOT / "planner", STAGE / "planner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "runtime" / "planner_runtime", STAGE / "planner_runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("tests", "examples", "profiles"):
        shutil.copytree(ROOT / folder, STAGE / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "models", ".hypothesis"))
    shutil.copy2(ROOT / "pyproject.toml", STAGE / "pyproject.toml")


def run_mutmut(max_children: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the staged copies may be imported
    env["HYPOTHESIS_PROFILE"] = "mutation"
    mutmut = Path(sys.executable).with_name("mutmut")
    t0 = time.perf_counter()
    subprocess.run([str(mutmut), "run", "--max-children", str(max_children)], cwd=STAGE, env=env, check=True)
    return time.perf_counter() - t0


def results() -> dict[str, dict[str, str]]:
    """file -> mutant name -> status, from mutmut's own records (mutants/<file>.meta)."""
    from mutmut.stats import status_by_exit_code

    out: dict[str, dict[str, str]] = {}
    for meta in sorted((STAGE / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        codes = data.get("exit_code_by_key", {})
        if codes:
            source = str(meta.relative_to(STAGE / "mutants"))[: -len(".meta")]
            out[source] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return out


def diff_of(name: str) -> str:
    shown = subprocess.run([str(Path(sys.executable).with_name("mutmut")), "show", name], cwd=STAGE,
                           capture_output=True, text=True).stdout
    return "\n".join(line for line in shown.splitlines()[1:] if line.strip())


def changed_lines(diff: str) -> tuple[str, str]:
    def side(sign: str) -> str:
        return " ".join(line[1:].strip() for line in diff.splitlines()
                        if line.startswith(sign) and not line.startswith(sign * 3))

    return side("-"), side("+")


def score(counts: dict[str, int], equivalent: int = 0) -> float | None:
    """Killed (a test failed or timed out) of all mutants tried, less `equivalent` ones."""
    tried = sum(counts.values()) - counts.get("skipped", 0) - equivalent
    return None if tried <= 0 else round((counts.get("killed", 0) + counts.get("timeout", 0)) / tried, 4)


def summarize(by_file: dict[str, dict[str, str]]) -> dict:
    files: dict[str, dict[str, int]] = {}
    survivors = []
    for source, statuses in by_file.items():
        counts = files.setdefault(source, {})
        for name, status in statuses.items():
            counts[status] = counts.get(status, 0) + 1
            if status in ("survived", "no tests", "suspicious", "not checked"):
                diff = diff_of(name)
                survivors.append({"file": source, "mutant": name, "status": status, "diff": diff,
                                  "equivalent": EQUIVALENT.get((source, *changed_lines(diff)))})
    total: dict[str, int] = {}
    for counts in files.values():
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    equivalent = {f: sum(1 for s in survivors if s["file"] == f and s["equivalent"]) for f in files}
    all_equivalent = sum(equivalent.values())
    return {
        "files": {f: {**c, "equivalent": equivalent[f], "score": score(c),
                      "score_without_equivalent": score(c, equivalent[f])} for f, c in files.items()},
        "total": {**total, "equivalent": all_equivalent, "score": score(total),
                  "score_without_equivalent": score(total, all_equivalent)},
        "survivors": survivors,
    }


def mutants(counts: dict) -> int:
    return sum(v for k, v in counts.items() if k not in ("score", "score_without_equivalent", "equivalent", "skipped"))


def run_meta(wall_s: float) -> dict:
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "wall_s": wall_s,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "load_average": os.getloadavg()}


def write(summary: dict, meta: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    wall_s = meta["wall_s"]
    (RESULTS / "mutation.json").write_text(json.dumps({**meta, **summary}, indent=2) + "\n")
    t = summary["total"]
    lines = ["# Mutation testing of the core math (mutmut)", "",
             f"Run {meta['date']}" + (f", {wall_s / 60:.0f} min" if wall_s else "") + f" on {meta['machine']} "
             f"(load average {', '.join(f'{x:.1f}' for x in meta['load_average'])}); `make mutation`.", "",
             f"**Score {t['score']:.1%}** ({t.get('killed', 0) + t.get('timeout', 0)} of {mutants(t)} mutants killed); "
             f"{t['score_without_equivalent']:.1%} without the {t['equivalent']} equivalent mutants listed below.", "",
             "| file | mutants | killed | timeout | survived (equivalent) | no tests | score | without equivalent |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f, c in summary["files"].items():
        lines.append(f"| `{f}` | {mutants(c)} | {c.get('killed', 0)} | {c.get('timeout', 0)} | {c.get('survived', 0)} "
                     f"({c['equivalent']}) | {c.get('no tests', 0)} | {c['score']:.1%} | "
                     f"{c['score_without_equivalent']:.1%} |")
    lines += ["", "## Survivors", ""]
    if not summary["survivors"]:
        lines.append("None.")
    for s in summary["survivors"]:
        lines += [f"### `{s['mutant']}` ({s['status']})", ""]
        if s["equivalent"]:
            lines += [f"Equivalent: {s['equivalent']}", ""]
        lines += ["```diff", s["diff"], "```", ""]
    (RESULTS / "mutation.md").write_text("\n".join(lines))
    print("\n".join(lines[:9 + len(summary["files"])]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the last run's records")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    args = ap.parse_args()
    if args.report_only:  # the last run's date, time and load
        last = json.loads((RESULTS / "mutation.json").read_text())
        meta = {k: last[k] for k in ("date", "wall_s", "machine", "load_average")}
    else:
        stage()
        meta = run_meta(run_mutmut(args.max_children))
    write(summarize(results()), meta)


if __name__ == "__main__":
    main()
