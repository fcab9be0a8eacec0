"""The stages of `planner solve`, each a plain value handed to the next:
app.yaml -> LoadedApp -> sites, graph, network -> profiles -> Instance -> Solution -> Plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from planner.baselines import Baseline, baselines, best_feasible
from planner.checks import check_app
from planner.evaluate import evaluate
from planner.graph import EnsembleGraph
from planner.loader import LoadedApp, load_app
from planner.network import Network
from planner.plan import Plan, make_plan
from planner.problem import build_instance
from planner.profile_app import profile_app
from planner.profiling.table import ProfileTable
from planner.sites import ResolvedSite, resolve_sites
from planner.solver.cpsat import PlacementSolver, SolverConfig
from planner.solver.explain import explain_infeasible
from planner.solver.instance import Instance


@dataclass
class Prepared:
    """Everything the solver and the report need, before solving."""

    la: LoadedApp
    sites: dict[str, ResolvedSite]
    graph: EnsembleGraph
    network: Network
    profiles: ProfileTable
    instance: Instance


def prepare(path: str | Path, overrides: Sequence[str] = (), **profile_options) -> Prepared:
    la = load_app(path, check=False, overrides=overrides)
    graph = check_app(la)
    sites = resolve_sites(la)
    network = Network(la.app)
    profiles = profile_app(la, sites, **profile_options)
    inst = build_instance(la, sites, graph, network, profiles)
    return Prepared(la, sites, graph, network, profiles, inst)


def solve_prepared(prep: Prepared, config: SolverConfig) -> Plan:
    inst = prep.instance
    base: list[Baseline] = baselines(inst)
    hint = best_feasible(base, config.objective)
    solution = PlacementSolver(inst, config, hint=hint.evaluation.placement if hint else None).solve()
    evaluation = evaluate(inst, solution.placement) if solution.placement else None
    explanation = None
    if solution.status == "INFEASIBLE":
        explanation = explain_infeasible(inst, time_limit_s=min(10.0, config.time_limit_s), workers=config.workers)
    if evaluation is not None and not evaluation.feasible:
        raise AssertionError(f"solver placement violates: {evaluation.violations}")  # a solver bug, never input
    return make_plan(
        app_name=prep.la.app.name, inst=inst, sites=prep.sites, graph=prep.graph, network=prep.network,
        profiles=prep.profiles.entries, solution=solution, config=config, evaluation=evaluation,
        baselines=base, warnings=prep.profiles.warnings, explanation=explanation,
    )
