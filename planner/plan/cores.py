"""The cores a plan's models run on: one rule for the solver's capacity (planner.plan.problem)
and the simulation that checks the plan (planner.plan.simulated), so that both count the same
core-milliseconds."""

from __future__ import annotations

from planner.model.checked_app import CheckedApp


def site_cores(checked: CheckedApp, site: str) -> int | None:
    """The cores one replica of a site runs its models on: the target's, 1 for a GPU (its models
    take turns), None for a site without a target (its numbers are given: its cores unknown)."""
    target = checked.sites[site].target
    if target is None:
        return None
    return 1 if target.is_gpu else int(target.tvm_target.get("num-cores") or 1)


def run_threads(build: str, profiled_threads: int | None, cores: int) -> int:
    """Cores one run of a build takes: a python step one (the GIL), a build the threads it was
    profiled with (else the site's), never more than the site has."""
    own = 1 if build.split("/")[0] == "python" else (profiled_threads or cores)
    return max(1, min(own, cores))
