"""The stages of `planner solve`, each a plain value handed to the next:

    app.yaml -> CheckedApp (planner.model.open_app) -> AppProfiles (planner.profiling)
             -> Instance (planner.plan.problem) -> Solution (planner.solver) -> Plan (planner.plan)
             -> OUT/: plan.json, the report (planner.report), the site bundles (planner.bundle)

and the loops over them that `planner sweep` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from planner_runtime.digest import sha256_file

from planner.bundle.emit import write_bundles
from planner.bundle.wiring import given_only
from planner.model.checked_app import CheckedApp
from planner.model.open_app import open_app
from planner.plan.make import make_plan
from planner.plan.problem import build_instance
from planner.plan.schema import AppSource, Plan
from planner.plan.sweep import Sweep, SweepPoint
from planner.plan.vetted import solve_vetted
from planner.profiling.app_profiles import AppProfiles, profile_app
from planner.report import write_reports
from planner.report.files import recover_interrupted, staged_dir
from planner.report.output_dir import FOUND, holds_found_plan
from planner.solver.baselines import Baseline, baselines, best_feasible
from planner.solver.cpsat import SolverConfig
from planner.solver.explain import explain_infeasible
from planner.solver.instance import Instance


@dataclass
class Prepared:
    """Everything the solver and the report need, before solving."""

    checked: CheckedApp
    profiles: AppProfiles
    instance: Instance


def prepare(path: str | Path, overrides: Sequence[str] = (), **profile_options) -> Prepared:
    checked = open_app(path, overrides)
    profiles = profile_app(checked, **profile_options)
    return Prepared(checked, profiles, build_instance(checked, profiles.table))


def solve_prepared(prepared: Prepared, config: SolverConfig) -> Plan:
    inst = prepared.instance
    base: list[Baseline] = baselines(inst)
    hint = best_feasible(base, config.objective)
    table = prepared.profiles.table
    vetted = solve_vetted(prepared.checked, inst, table.entries, config, hint.evaluation if hint else None)
    explanation = None
    if vetted.solution.status == "INFEASIBLE":
        explanation = explain_infeasible(inst, time_limit_s=min(10.0, config.time_limit_s), workers=config.workers)
    return make_plan(
        checked=prepared.checked, inst=inst, profiles=table.entries, solution=vetted.solution, config=config,
        evaluation=vetted.evaluation, baselines=base, warnings=list(table.warnings), explanation=explanation,
        simulated=vetted.simulated,
    )


def app_source(prepared: Prepared, overrides: Sequence[str]) -> AppSource:
    """Where the plan came from, recorded in plan.json so that `planner bench` can re-evaluate it."""
    path = prepared.checked.path
    return AppSource(file=str(path.resolve()), sha256=sha256_file(path), overrides=list(overrides))


@dataclass
class Written:
    """What write_solution did: OUT/plan.json, or None when OUT was kept as it was, and what to tell the user."""

    plan: Path | None
    notes: list[str]


def write_solution(prepared: Prepared, plan: Plan, out_dir: Path, *, bundles: bool = True,
                   progress: Callable[[str], None] = lambda msg: None) -> Written:
    """OUT/plan.json, the report and (for a feasible plan whose every model can be built) the
    site bundles and deploy manifests, written beside OUT and swapped in whole when all is
    written. A run that found no plan keeps an OUT that holds one: the last good bundles stay."""
    recover_interrupted(out_dir)
    if plan.status not in FOUND and holds_found_plan(out_dir):
        return Written(None, [f"{out_dir} kept as it was: it holds the last plan found, and this run found none"])
    with staged_dir(out_dir, prepared.checked.input_files()) as stage:
        (stage / "plan.json").write_text(plan.model_dump_json(indent=2) + "\n", encoding="utf-8")
        write_reports(plan, stage)
        notes = _write_bundles(prepared, plan, stage, out_dir, progress) if bundles else []
    return Written(out_dir / "plan.json", notes)


def _write_bundles(prepared: Prepared, plan: Plan, stage: Path, out_dir: Path,
                   progress: Callable[[str], None]) -> list[str]:
    if plan.status not in FOUND:
        return []
    given = given_only(prepared.checked)
    if given:
        return [f"no bundles: {', '.join(given)} have only given profiles (no onnx/python to deploy)"]
    notes = write_bundles(prepared.checked, prepared.profiles, plan, stage, progress=progress)
    return notes + [f"wrote {out_dir / 'sites'}/ (site bundles) and {out_dir / 'deploy'}/ (manifests)"]


def run_sweep(path: Path, key: str, values: list[str], fixed: list[str], config: SolverConfig,
              engine: str = "auto") -> Sweep:
    """One solve per value of `key` (the other overrides fixed), and which models moved;
    `engine` restricts the builds as `planner profile --engine` does."""
    points: list[SweepPoint] = []
    app = ""
    previous: dict[str, str] | None = None
    for value in values:
        prepared = prepare(path, overrides=[*fixed, f"{key}={value}"], engine=engine)
        app = prepared.checked.app.name
        plan = solve_prepared(prepared, config)
        moved = []
        if plan.placement and previous is not None:
            moved = [m for m, s in plan.placement.items() if previous.get(m) != s]
        points.append(SweepPoint(value=value, status=plan.status, placement=dict(plan.placement),
                                 latency_ms=plan.latency_ms, cost_per_hour=plan.cost_per_hour, moved=moved,
                                 replicas={s: r.replicas for s, r in plan.sites.items()},
                                 margin_pct=plan.service_margin.slower_pct if plan.service_margin else None))
        if plan.placement:
            previous = plan.placement
    return Sweep(app=app, key=key, fixed=list(fixed), points=points)
