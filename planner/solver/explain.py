"""Why no placement exists: a minimal set of conflicting constraints, in words, and the
smallest relaxation of each that would make the app feasible on its own.

The constraint families a user sets (the SLO, the cost cap, memory and max_replicas per
site, `sites:` pins) are built as soft constraints under CP-SAT assumption literals; CP-SAT
returns a set of assumptions sufficient for infeasibility, which is shrunk to a minimal one
by deletion, then each member is relaxed alone by minimizing what it bounds.
"""

from __future__ import annotations

from ortools.sat.python import cp_model
from pydantic import BaseModel

from planner.solver.constraints import ConstraintKey, Family
from planner.solver.cpsat import PlacementSolver, SolverConfig, solve_checked
from planner.solver.instance import Instance


class Conflict(BaseModel):
    constraint: ConstraintKey  # slo | cost_cap | memory:<site> | replicas:<site> | pin:<model>
    statement: str  # what the constraint says, in words
    relaxation: str | None  # the smallest change to it alone that makes the app feasible
    # that change as a number in the constraint's own unit (ms, $/h, MB, replicas), or the
    # site to allow for a pin; None when relaxing it alone is not enough
    bound: float | None = None
    site: str | None = None
    proven: bool = True


class Explanation(BaseModel):
    conflicts: list[Conflict]
    notes: list[str]

    def lines(self) -> list[str]:
        out = []
        numbered = len(self.conflicts) > 1
        if self.conflicts:
            head = "these constraints cannot all hold together: " if numbered else "this constraint cannot hold: "
            out.append(head + "; ".join((f"({i}) " if numbered else "") + c.statement
                                        for i, c in enumerate(self.conflicts, 1)))
            for i, c in enumerate(self.conflicts, 1):
                if c.relaxation:
                    out.append(f"fix ({i}) alone: {c.relaxation}" if numbered else f"fix: {c.relaxation}")
                else:
                    out.append(f"relaxing ({i}) alone is not enough: the others still conflict" if numbered
                               else "relaxing it is not enough")
        return out + self.notes


def _statement(inst: Instance, key: ConstraintKey) -> str:
    family, name = key.family, key.subject
    if family is Family.SLO:
        return f"every source->sink path must finish within the SLO of {inst.slo_us / 1000:g} ms (constraints.latency_ms)"
    if family is Family.COST_CAP:
        return f"the plan may cost at most ${inst.cost_cap_uph / 1e6:g}/h (constraints.cost_per_hour)"
    if family is Family.MEMORY:
        return f"the models on {name} must fit in {inst.site(name).memory_kb / 1000:g} MB per replica (sites.{name}.memory_mb)"
    if family is Family.REPLICAS:
        n = inst.site(name).max_replicas
        return f"{name} runs at most {n} replica{'s' if n != 1 else ''} (sites.{name}.max_replicas)"
    return f"{name} may only run on {', '.join(inst.options[name])} (models.{name}.sites)"


class _Explainer:
    def __init__(self, inst: Instance, time_limit_s: float, workers: int | None):
        self.inst = inst
        self.config = SolverConfig(time_limit_s=time_limit_s, **({"workers": workers} if workers else {}))

    def _solve(self, assumed: list[ConstraintKey], objective=None):
        placement = PlacementSolver(self.inst, self.config, soft=True)
        placement.model.clear_assumptions()
        placement.model.add_assumptions([placement.assumptions[k] for k in assumed if k in placement.assumptions])
        if objective is not None:
            placement.model.minimize(objective(placement))
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = self.config.time_limit_s
        solver.parameters.num_workers = 1 if objective is None else self.config.workers  # cores need 1 worker
        status = solve_checked(solver, placement.model)
        return placement, solver, status

    def keys(self) -> list[ConstraintKey]:
        return sorted(PlacementSolver(self.inst, self.config, soft=True).assumptions, key=str)

    def core(self, keys: list[ConstraintKey]) -> list[ConstraintKey]:
        placement, solver, status = self._solve(keys)
        if status != cp_model.INFEASIBLE:
            return []
        index = {placement.assumptions[k].index: k for k in keys}
        core = [index[i] for i in solver.sufficient_assumptions_for_infeasibility() if i in index]
        # deletion: drop each member whose removal keeps the rest infeasible
        for k in list(core):
            rest = [c for c in core if c != k]
            if self._solve(rest)[2] == cp_model.INFEASIBLE:
                core = rest
        return core

    def relaxation(self, key: ConstraintKey, keys: list[ConstraintKey]) -> Conflict:
        family, name = key.family, key.subject
        others = [k for k in keys if k != key]
        objective = {
            Family.SLO: lambda p: p.vars.makespan,
            Family.COST_CAP: lambda p: p.cost,
            Family.MEMORY: lambda p: p.memory_kb(name),
            Family.REPLICAS: lambda p: p.vars.replicas[name],
            Family.PIN: lambda p: sum(p.vars.x[name, s] for s in self.inst.unpinned.get(name, {})),
        }[family]
        placement, solver, status = self._solve(others, objective)
        conflict = Conflict(constraint=key, statement=_statement(self.inst, key), relaxation=None)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return conflict
        value = round(solver.objective_value)
        conflict.proven = status == cp_model.OPTIMAL
        approx = "" if conflict.proven else " (at most; not proven smallest)"
        if family is Family.PIN:
            conflict.site = next(s for s in self.inst.unpinned[name] if solver.boolean_value(placement.vars.x[name, s]))
            # "[ a, b ]", not "[a,b]": the CLI prints through rich, which would take "[a,b]" for markup
            sites = ", ".join([*self.inst.options[name], conflict.site])
            conflict.relaxation = f"allow {name} on {conflict.site} (--set 'models.{name}.sites=[ {sites} ]')"
            return conflict
        unit = {Family.SLO: 1000, Family.COST_CAP: 1e6, Family.MEMORY: 1000, Family.REPLICAS: 1}[family]
        conflict.bound = value / unit
        b = f"{conflict.bound:.6f}".rstrip("0").rstrip(".")
        conflict.relaxation = {
            Family.SLO: f"raise the SLO to at least {b} ms (--set constraints.latency_ms={b})",
            Family.COST_CAP: f"raise the cost cap to at least ${b}/h (--set constraints.cost_per_hour={b})",
            Family.MEMORY: f"give {name} at least {b} MB per replica (--set sites.{name}.memory_mb={b})",
            Family.REPLICAS: f"allow {name} at least {value} replicas (--set sites.{name}.max_replicas={value})",
        }[family] + approx
        return conflict


def _slowest_model_note(inst: Instance) -> list[str]:
    notes = []
    if inst.slo_us is None:
        return notes
    for m in inst.models:
        fastest = min(o.latency_us for o in inst.options[m].values())
        if fastest > inst.slo_us:
            notes.append(f"{m} needs at least {fastest / 1000:g} ms on every site it may use; "
                         f"the SLO is {inst.slo_us / 1000:g} ms")
    return notes


def explain_infeasible(inst: Instance, time_limit_s: float = 10.0, workers: int | None = None) -> Explanation:
    explainer = _Explainer(inst, time_limit_s, workers)
    keys = explainer.keys()
    if explainer._solve([])[2] == cp_model.INFEASIBLE:
        return Explanation(conflicts=[], notes=[
            "no placement exists even without the SLO, cost cap, memory and replica limits: the flows cannot "
            "be routed between the sites the models may use (check links and `sites:`)"])
    core = explainer.core(keys)
    conflicts = [explainer.relaxation(k, keys) for k in core]
    return Explanation(conflicts=conflicts, notes=_slowest_model_note(inst))
