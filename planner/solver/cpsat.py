"""Exact placement with OR-Tools CP-SAT.

Structure after the CP-SAT primer's coding patterns: a config and a solution as pydantic
models, a variable container with query methods, and a solver whose `_build_model()` calls
one function per constraint family.

Transfer terms are linearized tightly: a boolean per (flow, producer site, consumer site),
tied to both endpoints' placement booleans by row and column sums. Big-M style pair terms
leave the LP bound near zero on real graphs (see NOTES.md); this form closes them.
"""

from __future__ import annotations

import os
import time
from typing import Literal

from ortools.sat.python import cp_model
from pydantic import BaseModel, ConfigDict, Field

from planner.solver.instance import REPLICA_CAPACITY, FlowData, Instance

Objective = Literal["cost", "latency"]


class SolverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objective: Objective = "cost"
    time_limit_s: float = Field(default=60.0, gt=0)
    workers: int = Field(default_factory=lambda: max(8, os.cpu_count() or 1), ge=1)
    log_search_progress: bool = False


class PhaseResult(BaseModel):
    objective: str
    status: str
    value: int | None = None
    bound: int | None = None
    wall_time_s: float
    first_solution_s: float | None = None


class Solution(BaseModel):
    status: Literal["OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN"]
    placement: dict[str, str] = Field(default_factory=dict)
    primary: PhaseResult | None = None
    secondary: PhaseResult | None = None
    wall_time_s: float = 0.0

    @property
    def gap(self) -> float | None:
        p = self.primary
        if p is None or p.value is None or p.bound is None:
            return None
        return abs(p.value - p.bound) / max(1, abs(p.value))


class _Vars:
    """Decision variables with the queries the constraint families need."""

    def __init__(self) -> None:
        self.x: dict[tuple[str, str], cp_model.IntVar] = {}
        self.pair: dict[tuple[int, str, str], cp_model.IntVar] = {}
        self.finish: dict[str, cp_model.IntVar] = {}
        self.replicas: dict[str, cp_model.IntVar] = {}
        self.makespan: cp_model.IntVar | None = None

    def placed(self, node: str, site: str):
        return self.x[node, site]

    def site_of(self, solver: cp_model.CpSolver, node: str, sites: list[str]) -> str:
        return next(s for s in sites if solver.boolean_value(self.x[node, s]))


class _FirstSolutionTimer(cp_model.CpSolverSolutionCallback):
    def __init__(self) -> None:
        super().__init__()
        self.first: float | None = None

    def on_solution_callback(self) -> None:
        if self.first is None:
            self.first = self.wall_time


class PlacementSolver:
    """With `soft=True` every constraint family the user sets (SLO, cost cap, memory and
    replicas per site, pins) is enforced only under an assumption literal in
    `self.assumptions`, so infeasibility can be explained by a conflict set."""

    def __init__(self, inst: Instance, config: SolverConfig | None = None, hint: dict[str, str] | None = None,
                 soft: bool = False):
        self.inst = inst
        self.config = config or SolverConfig()
        self.hint = hint
        self.soft = soft
        self.assumptions: dict[str, cp_model.IntVar] = {}
        self.model = cp_model.CpModel()
        self.vars = _Vars()
        self._build_model()

    # -- model ---------------------------------------------------------------------------
    def _build_model(self) -> None:
        self._add_placement_variables()
        self._add_pins()
        self._add_flow_pair_variables()
        self._add_timing_constraints()
        self._add_memory_constraints()
        self._add_replica_constraints()
        self.cost = self._cost_expression()
        self._add_cost_cap()
        self._add_hint()

    def _enforce(self, ct: cp_model.Constraint, key: str) -> None:
        if self.soft:
            if key not in self.assumptions:
                self.assumptions[key] = self.model.new_bool_var(f"assume[{key}]")
            ct.only_enforce_if(self.assumptions[key])

    def _sites(self, node: str) -> list[str]:
        return self.inst.allowed(node, unpinned=self.soft)

    def _options(self, m: str):
        return [(s, self.inst.option(m, s)) for s in self._sites(m)]

    def _add_placement_variables(self) -> None:
        # Every model runs on exactly one of the sites it may use.
        for m in self.inst.models:
            xs = []
            for s in self._sites(m):
                self.vars.x[m, s] = self.model.new_bool_var(f"x[{m},{s}]")
                xs.append(self.vars.x[m, s])
            self.model.add_exactly_one(xs)

    def _add_pins(self) -> None:
        # (soft only) A model stays on the sites its `sites:` lists.
        if not self.soft:
            return
        for m, extra in self.inst.unpinned.items():
            for s in extra:
                self._enforce(self.model.add(self.vars.x[m, s] == 0), f"pin:{m}")

    def _endpoint(self, node: str, site: str):
        """Placement literal of a node on a site: a constant for sources and sinks."""
        if node in self.inst.fixed:
            return int(self.inst.fixed[node] == site)
        return self.vars.x.get((node, site), 0)

    def _add_flow_pair_variables(self) -> None:
        # One boolean per (flow, producer site, consumer site): its row sums equal the
        # producer's placement, its column sums the consumer's. Unroutable pairs have none.
        for f in self.inst.flows:
            src_sites, dst_sites = self._sites(f.src), self._sites(f.dst)
            routable = {(tr.src_site, tr.dst_site) for tr in f.transfers}
            for s in src_sites:
                for t in dst_sites:
                    if s == t or (s, t) in routable:
                        self.vars.pair[f.index, s, t] = self.model.new_bool_var(f"p[{f.index},{s},{t}]")
            for s in src_sites:
                row = [self.vars.pair[f.index, s, t] for t in dst_sites if (f.index, s, t) in self.vars.pair]
                self.model.add(sum(row) == self._endpoint(f.src, s))
            for t in dst_sites:
                col = [self.vars.pair[f.index, s, t] for s in src_sites if (f.index, s, t) in self.vars.pair]
                self.model.add(sum(col) == self._endpoint(f.dst, t))

    def _transfer_us(self, f: FlowData):
        return sum(tr.latency_us * self.vars.pair[f.index, tr.src_site, tr.dst_site]
                   for tr in f.transfers if (f.index, tr.src_site, tr.dst_site) in self.vars.pair)

    def _duration_us(self, m: str):
        return sum(opt.latency_us * self.vars.x[m, s] for s, opt in self._options(m))

    def _time_bounds(self, use_slo: bool = True) -> tuple[dict[str, int], dict[str, int], int]:
        """Earliest finish of each node (fastest site, cheapest transfer), latest finish that
        can still meet the horizon, and the horizon (the SLO, or the longest any plan takes)."""
        inst = self.inst
        durations = {m: [o.latency_us for _, o in self._options(m)] for m in inst.models}
        min_dur = {m: min(d) for m, d in durations.items()}

        def min_transfer(f: FlowData) -> int:
            same = set(self._sites(f.src)) & set(self._sites(f.dst))
            return 0 if same else min((t.latency_us for t in f.transfers), default=0)

        incoming: dict[str, list[FlowData]] = {}
        outgoing: dict[str, list[FlowData]] = {}
        for f in inst.flows:
            incoming.setdefault(f.dst, []).append(f)
            outgoing.setdefault(f.src, []).append(f)
        earliest = {s: 0 for s in inst.sources}
        for n in [*inst.models, *inst.sinks]:
            start = max((earliest[f.src] + min_transfer(f) for f in incoming.get(n, [])), default=0)
            earliest[n] = start + min_dur.get(n, 0)
        # Shortest remaining time after a node finishes, up to the sink that ends its path.
        tail = {k: 0 for k in inst.sinks}
        for n in reversed(inst.models):
            tail[n] = min(min_transfer(f) + min_dur.get(f.dst, 0) + tail[f.dst] for f in outgoing[n])
        if use_slo and inst.slo_us is not None:
            horizon = inst.slo_us
        else:
            horizon = sum(max(d) for d in durations.values()) + sum(
                max((t.latency_us for t in f.transfers), default=0) for f in inst.flows)
        latest = {n: horizon - tail[n] for n in inst.models}
        return earliest, latest, horizon

    def _add_timing_constraints(self) -> None:
        # A model finishes its own latency after the last of its inputs arrives; every sink
        # arrival, hence every source->sink path, ends by the makespan, bounded by the SLO.
        earliest, latest, horizon = self._time_bounds(use_slo=not self.soft)
        for m in self.inst.models:
            v = self.model.new_int_var(earliest[m], max(earliest[m], latest[m]), f"finish[{m}]")
            if latest[m] < earliest[m]:
                self.model.add(v <= latest[m])  # no placement can meet the SLO
            self.vars.finish[m] = v
        lo = max((earliest[k] for k in self.inst.sinks), default=0)
        self.vars.makespan = self.model.new_int_var(lo, max(lo, horizon), "makespan")
        if horizon < lo:
            self.model.add(self.vars.makespan <= horizon)
        if self.soft and self.inst.slo_us is not None:
            self._enforce(self.model.add(self.vars.makespan <= self.inst.slo_us), "slo")
        for f in self.inst.flows:
            ready = 0 if f.src in self.inst.fixed else self.vars.finish[f.src]
            if f.dst in self.inst.fixed:  # a sink
                self.model.add(self.vars.makespan >= ready + self._transfer_us(f))
            else:
                self.model.add(self.vars.finish[f.dst] >= ready + self._transfer_us(f) + self._duration_us(f.dst))

    def _hosted(self, site: str) -> list[tuple[str, Option]]:
        return [(m, o) for m in self.inst.models for s, o in self._options(m) if s == site]

    def memory_kb(self, site: str):
        return sum(o.memory_kb * self.vars.x[m, site] for m, o in self._hosted(site))

    def _add_memory_constraints(self) -> None:
        # The models on a site fit in one replica's memory.
        for site in self.inst.sites:
            if any(o.memory_kb for _, o in self._hosted(site.name)):
                self._enforce(self.model.add(self.memory_kb(site.name) <= site.memory_kb), f"memory:{site.name}")

    def _add_replica_constraints(self) -> None:
        # Enough replicas for the load, at least one where anything runs, at most max_replicas.
        for site in self.inst.sites:
            hosted = self._hosted(site.name)
            most = site.max_replicas
            if self.soft:  # room to exceed max_replicas, so that a conflict can name it
                most = max(most, -(-sum(o.load for _, o in hosted) // REPLICA_CAPACITY))
            r = self.model.new_int_var(0, most if hosted else 0, f"replicas[{site.name}]")
            self.vars.replicas[site.name] = r
            if not hosted:
                continue
            self.model.add(REPLICA_CAPACITY * r >= sum(o.load * self.vars.x[m, site.name] for m, o in hosted))
            for m, _ in hosted:
                self.model.add(r >= self.vars.x[m, site.name])
            if self.soft:
                self._enforce(self.model.add(r <= site.max_replicas), f"replicas:{site.name}")

    def _cost_expression(self):
        compute = sum(s.cost_uph * self.vars.replicas[s.name] for s in self.inst.sites)
        egress = sum(tr.egress_uph * self.vars.pair[f.index, tr.src_site, tr.dst_site]
                     for f in self.inst.flows for tr in f.transfers
                     if tr.egress_uph and (f.index, tr.src_site, tr.dst_site) in self.vars.pair)
        return compute + egress

    def _add_cost_cap(self) -> None:
        if self.inst.cost_cap_uph is not None:
            ct = self.model.add(self.cost <= self.inst.cost_cap_uph)
            self._enforce(ct, "cost_cap")

    def _add_hint(self) -> None:
        if not self.hint:
            return
        for (m, s), v in self.vars.x.items():
            self.model.add_hint(v, self.hint.get(m) == s)

    # -- solve ---------------------------------------------------------------------------
    def _run(self, name: str, expr, time_limit: float) -> tuple[cp_model.CpSolver, PhaseResult, int]:
        self.model.minimize(expr)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.1, time_limit)
        solver.parameters.num_workers = self.config.workers
        solver.parameters.log_search_progress = self.config.log_search_progress
        timer = _FirstSolutionTimer()
        status = solver.solve(self.model, timer)
        found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        result = PhaseResult(
            objective=name,
            status=solver.status_name(status),
            value=round(solver.objective_value) if found else None,
            bound=round(solver.best_objective_bound) if found else None,
            wall_time_s=solver.wall_time,
            first_solution_s=timer.first,
        )
        return solver, result, status

    def _placement(self, solver: cp_model.CpSolver) -> dict[str, str]:
        return {m: self.vars.site_of(solver, m, self._sites(m)) for m in self.inst.models}

    def solve(self) -> Solution:
        t0 = time.perf_counter()
        primary, secondary = (
            (self.cost, self.vars.makespan) if self.config.objective == "cost" else (self.vars.makespan, self.cost)
        )
        names = ("cost", "latency") if self.config.objective == "cost" else ("latency", "cost")
        solver, first, status = self._run(names[0], primary, self.config.time_limit_s)
        if status == cp_model.INFEASIBLE:
            return Solution(status="INFEASIBLE", primary=first, wall_time_s=time.perf_counter() - t0)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return Solution(status="UNKNOWN", primary=first, wall_time_s=time.perf_counter() - t0)
        placement = self._placement(solver)

        # Lexicographic tie-break: keep the primary at its value, improve the secondary.
        self.model.add(primary <= first.value)
        self.model.clear_hints()
        for (m, s), v in self.vars.x.items():
            self.model.add_hint(v, placement[m] == s)
        remaining = self.config.time_limit_s - (time.perf_counter() - t0)
        solver2, second, status2 = self._run(names[1], secondary, max(remaining, min(5.0, self.config.time_limit_s)))
        if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            placement = self._placement(solver2)
        proven = status == cp_model.OPTIMAL and status2 == cp_model.OPTIMAL
        return Solution(
            status="OPTIMAL" if proven else "FEASIBLE",
            placement=placement,
            primary=first,
            secondary=second,
            wall_time_s=time.perf_counter() - t0,
        )
