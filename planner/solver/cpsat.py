"""Exact placement with OR-Tools CP-SAT.

Structure after the CP-SAT primer's coding patterns: a config and a solution as pydantic
models, a variable container with query methods, and a solver whose `_build_model()` calls
one function per constraint family.

Transfer terms are linearized tightly: a boolean per (flow, producer site, consumer site),
tied to both endpoints' placement booleans by row and column sums. Big-M style pair terms
leave the LP bound near zero on real graphs (a 177-node ResNet-50 layer graph kept its first
plan, all on one site, for 60 s with the bound near zero); this form closes them.

Per (node, site) the earliest finish there and the least time from there to a sink bound
every plan (capacity ignored): they drop sites and flow pairs that cannot meet the SLO, add
per-site lower bounds on finish times and the makespan that a fractional LP cannot average
away (the chained constraints alone can mix one site's speed with another's zero transfer),
and fix most of the model in the tie-break phase.

Builds and queueing: a model with several builds on a site gets a boolean per build (summing
to its placement boolean); one build needs none. Replicas are integers; where a queue's wait at
the percentile depends on them, a boolean per (site, replica count k) says "at most k replicas",
and the model's wait variable is at least its table's wait for k whenever its build is chosen
and the site runs at most k replicas (the tables fall as replicas grow, so this is exact).
Apps whose queues never wait get no such variables.
"""

from __future__ import annotations

import os
import time
from typing import Literal

from ortools.sat.python import cp_model
from pydantic import BaseModel, ConfigDict, Field

from planner.solver import constraints
from planner.solver.constraints import ConstraintKey
from planner.solver.evaluate import Evaluation, evaluate
from planner.solver.instance import (
    REPLICA_CAPACITY,
    SITE_LEVEL_UNIT,
    SITE_LEVELS,
    SITE_WAIT_SCALE,
    FlowData,
    Instance,
    Option,
    SiteData,
)
from planner.solver.replicas import without_spare_replicas

LinearExpr = cp_model.LinearExpr

Objective = Literal["cost", "latency"]


class SolverModelError(RuntimeError):
    """CP-SAT refused the model as invalid: a planner bug (the input's ranges and sums are
    checked before a model is built), reported as such and never as a time limit."""


def solve_checked(solver: cp_model.CpSolver, model: cp_model.CpModel, callback=None) -> int:
    """`solver.solve`, raising SolverModelError with CP-SAT's reason on MODEL_INVALID."""
    status = solver.solve(model, callback)
    if status == cp_model.MODEL_INVALID:
        reason = " ".join((model.validate() or "MODEL_INVALID").split())  # one line: the CLI prints one
        raise SolverModelError(f"CP-SAT rejected the model: {reason[:500]}")
    return status


def upper_bound(var: cp_model.IntVar) -> int:
    """The largest value of a variable's domain. (The proto's repeated field does not index from
    the end: `domain[-1]` is its first element.)"""
    domain = var.proto.domain
    return domain[len(domain) - 1]


class SolverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objective: Objective = "cost"
    time_limit_s: float = Field(default=60.0, gt=0)
    # More workers than cores only share the cores (measured: 2 best on 2 cores).
    workers: int = Field(default_factory=lambda: min(8, os.cpu_count() or 1), ge=1)
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
    builds: dict[str, str] = Field(default_factory=dict)
    replicas: dict[str, int] = Field(default_factory=dict)
    primary: PhaseResult | None = None
    secondary: PhaseResult | None = None
    wall_time_s: float = 0.0

    @property
    def gap(self) -> float | None:
        p = self.primary
        if p is None or p.value is None or p.bound is None:
            return None
        return abs(p.value - p.bound) / max(1, abs(p.value))

    def evaluate(self, inst: Instance) -> Evaluation:
        """The plan found, by the independent evaluator (its placement, builds and replicas)."""
        return evaluate(inst, self.placement, self.builds, self.replicas)


Choice = tuple[str, cp_model.IntVar, Option]  # a site, the literal that chooses it and a build there, the build


class _Vars:
    """Decision variables with the queries the constraint families need."""

    def __init__(self) -> None:
        self.x: dict[tuple[str, str], cp_model.IntVar] = {}
        self.build: dict[tuple[str, str, str], cp_model.IntVar] = {}  # (model, site, build), where a site has several
        self.wait: dict[str, cp_model.IntVar] = {}  # a model's queue wait at the percentile, where it may wait
        self.at_most: dict[tuple[str, int], cp_model.IntVar] = {}  # (site, k): the site runs at most k replicas
        self.site_wait: dict[str, cp_model.IntVar] = {}  # a site's wait per us of core time, x SITE_WAIT_SCALE
        self.above: dict[tuple[str, int], cp_model.IntVar] = {}  # (site, j): its utilization may pass level j
        self.pair: dict[tuple[int, str, str], cp_model.IntVar] = {}
        self.finish: dict[str, cp_model.IntVar] = {}
        self.replicas: dict[str, cp_model.IntVar] = {}
        self.makespan: cp_model.IntVar | None = None

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

    def __init__(self, inst: Instance, config: SolverConfig | None = None,
                 hint: dict[str, str] | Evaluation | None = None, soft: bool = False,
                 excluded: list[Evaluation] = ()):
        self.inst = inst
        self.config = config or SolverConfig()
        self.hint = hint
        self.soft = soft
        self.excluded = list(excluded)
        self.assumptions: dict[ConstraintKey, cp_model.IntVar] = {}
        self.model = cp_model.CpModel()
        self.vars = _Vars()
        self._least: dict[tuple[str, str], int] = {}
        self._site_wait_rules: dict[str, list[tuple[int, int, int | None]]] = {}  # (value, level, k or None: always)
        self._counts_cores: dict[str, bool] = {}
        self._build_model()

    # -- model ---------------------------------------------------------------------------
    def _build_model(self) -> None:
        self._allowed = self._prune_sites()
        self._add_placement_variables()
        self._add_build_variables()
        self._add_pins()
        self._add_flow_pair_variables()
        self._add_memory_constraints()
        self._add_replica_constraints()
        self._add_queue_waits()
        self._add_timing_constraints()
        self.cost = self._cost_expression()
        self._add_cost_cap()
        self._add_exclusions()
        self._add_hint()

    def _enforce(self, ct: cp_model.Constraint, key: ConstraintKey) -> None:
        if self.soft:
            if key not in self.assumptions:
                self.assumptions[key] = self.model.new_bool_var(f"assume[{key}]")
            ct.only_enforce_if(self.assumptions[key])

    def _sites(self, node: str) -> list[str]:
        return self._allowed[node]

    def _prune_sites(self) -> dict[str, list[str]]:
        """Sites each node may use, less those where no path through the node can meet the
        SLO: a site is dropped when the earliest the node can finish there plus the least time
        left from there to a sink exceeds the SLO (from `_site_time_bounds`; repeated, as each
        drop tightens the bounds of the neighbours). Only with a hard SLO (not `soft`): a plan
        that meets it never uses a dropped site."""
        allowed = {n: self.inst.allowed(n, unpinned=self.soft)
                   for n in [*self.inst.sources, *self.inst.models, *self.inst.sinks]}
        slo = self.inst.slo_us
        self._hopeless: list[str] = []  # models no site of which can meet the SLO
        for _ in range(4):
            finish, tail = self._site_time_bounds(allowed)
            if self.soft or slo is None or self._hopeless:
                break
            pruned = {m: [s for s in allowed[m] if finish[m, s] + tail[m, s] <= slo] for m in self.inst.models}
            self._hopeless = [m for m in self.inst.models if not pruned[m]]
            if self._hopeless or all(len(pruned[m]) == len(allowed[m]) for m in self.inst.models):
                break
            allowed.update(pruned)
        self._site_finish, self._site_tail = finish, tail
        return allowed

    def _site_time_bounds(self, allowed: dict[str, list[str]]) -> tuple[dict, dict]:
        """Per (node, site it may use): the earliest it can finish there, and the least time
        from its finish there to the last sink it feeds (capacity ignored; a large number when
        no route leads on). Each input arrives at best from the producer site that delivers it
        first, so these are lower bounds for every plan that puts the node on that site."""
        inst, never = self.inst, 1 << 50
        incoming: dict[str, list[FlowData]] = {}
        outgoing: dict[str, list[FlowData]] = {}
        for f in inst.flows:
            incoming.setdefault(f.dst, []).append(f)
            outgoing.setdefault(f.src, []).append(f)

        def duration(n: str, s: str) -> int:
            return 0 if n in inst.fixed else self._least_us(n, s)

        def transfer(f: FlowData, a: str, b: str) -> int | None:
            if a == b:
                return 0
            tr = f.transfer(a, b)
            return None if tr is None else tr.latency_us

        finish: dict[tuple[str, str], int] = {}
        for n in [*inst.sources, *inst.models, *inst.sinks]:
            for s in allowed[n]:
                start = 0
                for f in incoming.get(n, []):
                    arrive = [finish[f.src, a] + t for a in allowed[f.src] if (t := transfer(f, a, s)) is not None]
                    start = max(start, min(arrive, default=never))
                finish[n, s] = min(never, start + duration(n, s))
        tail: dict[tuple[str, str], int] = {}
        for n in [*reversed(inst.sinks), *reversed(inst.models), *inst.sources]:
            for s in allowed[n]:
                rest = 0
                for f in outgoing.get(n, []):
                    after = [t + duration(f.dst, b) + tail[f.dst, b] for b in allowed[f.dst]
                             if (t := transfer(f, s, b)) is not None]
                    rest = max(rest, min(after, default=never))
                tail[n, s] = min(never, rest)
        return finish, tail

    def _least_us(self, m: str, s: str) -> int:
        """The least time model m can take on site s in any plan: its fastest build plus its
        wait with the most replicas allowed (when explaining, replicas may exceed the limit:
        the latency alone). Asked for every site pair of every flow: computed once each."""
        key = (m, s)
        if key not in self._least:
            most = self.inst.site(s).max_replicas
            self._least[key] = min(o.latency_us if self.soft else o.latency_us + max(
                o.wait_us(max(most, o.min_replicas)), self._least_site_wait_us(s, o, most)) for o in self.inst.builds(m, s))
        return self._least[key]

    def _least_site_wait_us(self, site: str, o: Option, most: int) -> int:
        """The least share of its site's wait o can have: its own core load alone on the most
        replicas (the site's load is no less, its replicas no more; the table rises with the
        load and falls with the replicas); "never" when its load alone is past the last level."""
        data = self.inst.site(site)
        if not data.waits or not o.core_load:
            return 0
        if data.level(o.core_load, most) is None:
            return 1 << 50
        return o.site_wait_us(data.wait_per_us(o.core_load, most))

    def _choices(self, m: str) -> list[Choice]:
        return self._choice[m]

    def _add_placement_variables(self) -> None:
        # Every model runs on exactly one of the sites it may use.
        for m in self.inst.models:
            xs = []
            for s in self._sites(m):
                self.vars.x[m, s] = self.model.new_bool_var(f"x[{m},{s}]")
                xs.append(self.vars.x[m, s])
            self.model.add_exactly_one(xs)
            if m in self._hopeless:  # the SLO cannot be met: say so to CP-SAT
                for v in xs:
                    self.model.add(v == 0)

    def _add_build_variables(self) -> None:
        # A model on a site runs exactly one of its builds there.
        self._choice: dict[str, list[Choice]] = {}
        for m in self.inst.models:
            self._choice[m] = []
            for s in self._sites(m):
                builds = self.inst.builds(m, s)
                if len(builds) == 1:
                    self._choice[m].append((s, self.vars.x[m, s], builds[0]))
                    continue
                lits = []
                for o in builds:
                    v = self.vars.build[m, s, o.build] = self.model.new_bool_var(f"b[{m},{s},{o.build}]")
                    lits.append(v)
                    self._choice[m].append((s, v, o))
                self.model.add(LinearExpr.sum(lits) == self.vars.x[m, s])

    def _add_pins(self) -> None:
        # (soft only) A model stays on the sites its `sites:` lists.
        if not self.soft:
            return
        for m, extra in self.inst.unpinned.items():
            for s in extra:
                self._enforce(self.model.add(self.vars.x[m, s] == 0), constraints.pin(m))

    def _endpoint(self, node: str, site: str):
        """Placement literal of a node on a site: a constant for sources and sinks."""
        if node in self.inst.fixed:
            return int(self.inst.fixed[node] == site)
        return self.vars.x.get((node, site), 0)

    def _add_flow_pair_variables(self) -> None:
        # One boolean per (flow, producer site, consumer site): its row sums equal the
        # producer's placement, its column sums the consumer's. Unroutable pairs have none,
        # nor (with a hard SLO) pairs that no path through can meet it with.
        slo = None if self.soft else self.inst.slo_us
        for f in self.inst.flows:
            src_sites, dst_sites = self._sites(f.src), self._sites(f.dst)
            latency = {(tr.src_site, tr.dst_site): tr.latency_us for tr in f.transfers}
            for s in src_sites:
                for t in dst_sites:
                    if s != t and (s, t) not in latency:
                        continue
                    if slo is not None and self._through(f, s, t, 0 if s == t else latency[s, t]) > slo:
                        continue
                    self.vars.pair[f.index, s, t] = self.model.new_bool_var(f"p[{f.index},{s},{t}]")
            for s in src_sites:
                row = [self.vars.pair[f.index, s, t] for t in dst_sites if (f.index, s, t) in self.vars.pair]
                self.model.add(LinearExpr.sum(row) == self._endpoint(f.src, s))
            for t in dst_sites:
                col = [self.vars.pair[f.index, s, t] for s in src_sites if (f.index, s, t) in self.vars.pair]
                self.model.add(LinearExpr.sum(col) == self._endpoint(f.dst, t))

    def _through(self, f: FlowData, s: str, t: str, transfer_us: int) -> int:
        """Least latency of any source->sink path through flow f carried from site s to site t."""
        consumer = 0 if f.dst in self.inst.fixed else self._least_us(f.dst, t)
        return self._site_finish[f.src, s] + transfer_us + consumer + self._site_tail[f.dst, t]

    def _transfer_terms(self, f: FlowData) -> tuple[list, list[int]]:
        pairs = [(self.vars.pair[f.index, tr.src_site, tr.dst_site], tr.latency_us) for tr in f.transfers
                 if (f.index, tr.src_site, tr.dst_site) in self.vars.pair]
        return [v for v, _ in pairs], [c for _, c in pairs]

    def _duration_terms(self, m: str) -> tuple[list, list[int]]:
        choices = self._choices(m)
        vs, cs = [lit for _, lit, _ in choices], [o.latency_us for _, _, o in choices]
        if m in self.vars.wait:
            vs, cs = vs + [self.vars.wait[m]], cs + [1]
        return vs, cs

    def _time_bounds(self, use_slo: bool = True) -> tuple[dict[str, int], dict[str, int], int]:
        """Earliest finish of each node (over the sites it may use), latest finish that can
        still meet the horizon, and the horizon (the SLO, or the longest any plan takes)."""
        inst = self.inst
        sf, st = self._site_finish, self._site_tail
        earliest = {n: min(sf[n, s] for s in self._sites(n)) for n in [*inst.models, *inst.sinks]}
        tail = {n: min(st[n, s] for s in self._sites(n)) for n in inst.models}
        if use_slo and inst.slo_us is not None:
            horizon = inst.slo_us
        else:
            durations = {m: [o.latency_us + self._max_wait_us(s, o) for s, _, o in self._choices(m)]
                         for m in inst.models}
            horizon = sum(max(d) for d in durations.values()) + sum(
                max((t.latency_us for t in f.transfers), default=0) for f in inst.flows)
        latest = {n: horizon - tail[n] for n in inst.models}
        return earliest, latest, horizon

    def _add_timing_constraints(self) -> None:
        # A model finishes its own latency after the last of its inputs arrives; every sink
        # arrival, hence every source->sink path, ends by the makespan, bounded by the SLO.
        earliest, latest, horizon = self._time_bounds(use_slo=not self.soft)
        self._earliest = earliest
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
            self._enforce(self.model.add(self.vars.makespan <= self.inst.slo_us), constraints.SLO)
        for f in self.inst.flows:
            later = self.vars.makespan if f.dst in self.inst.fixed else self.vars.finish[f.dst]  # a sink: makespan
            vs, cs = self._transfer_terms(f)
            if f.dst not in self.inst.fixed:
                dv, dc = self._duration_terms(f.dst)
                vs, cs = vs + dv, cs + dc
            if f.src not in self.inst.fixed:
                vs, cs = vs + [self.vars.finish[f.src]], cs + [1]
            self.model.add(later >= LinearExpr.weighted_sum(vs, cs))
        self._add_site_time_cuts()

    def _add_site_time_cuts(self) -> None:
        # Redundant, for the LP: a model on site s finishes no earlier than its earliest
        # finish there, and the makespan is at least that finish plus the least time left from
        # s. The chained constraints alone let a fractional LP mix a site's speed with another
        # site's zero transfer; these bounds are per site, so they cannot be mixed that way.
        sf, st = self._site_finish, self._site_tail
        cap = upper_bound(self.vars.makespan) + 1  # "never" (no route on): any value beyond the horizon
        for m in self.inst.models:
            xs = [self.vars.x[m, s] for s in self._sites(m)]
            ef = [min(cap, sf[m, s]) for s in self._sites(m)]
            if max(ef) > self._earliest[m]:
                self.model.add(self.vars.finish[m] >= LinearExpr.weighted_sum(xs, ef))
            tl = [min(cap, st[m, s]) for s in self._sites(m)]
            self.model.add(self.vars.makespan >= self.vars.finish[m] + LinearExpr.weighted_sum(xs, tl))

    def _hosted(self, site: str) -> list[tuple[str, cp_model.IntVar, Option]]:
        """(model, literal, build) of every build that may run on the site."""
        if not hasattr(self, "_hosted_by_site"):
            self._hosted_by_site: dict[str, list[tuple[str, cp_model.IntVar, Option]]] = {
                s.name: [] for s in self.inst.sites}
            for m in self.inst.models:
                for s, lit, o in self._choices(m):
                    self._hosted_by_site.setdefault(s, []).append((m, lit, o))
        return self._hosted_by_site.get(site, [])

    def memory_kb(self, site: str):
        hosted = self._hosted(site)
        return LinearExpr.weighted_sum([lit for _, lit, _ in hosted], [o.memory_kb for _, _, o in hosted])

    def _add_memory_constraints(self) -> None:
        # The models on a site fit in one replica's memory.
        for site in self.inst.sites:
            if any(o.memory_kb for _, _, o in self._hosted(site.name)):
                self._enforce(self.model.add(self.memory_kb(site.name) <= site.memory_kb), constraints.memory(site.name))

    def _add_replica_constraints(self) -> None:
        # Enough replicas for the load and for each queue, at least one where anything runs,
        # at most max_replicas.
        for site in self.inst.sites:
            hosted = self._hosted(site.name)
            most = site.max_replicas
            if self.soft:  # room to exceed max_replicas, so that a conflict can name it
                load = sum(o.load for _, _, o in hosted)
                most = max(most, self.inst.least_replicas(site.name, load, [o for _, _, o in hosted]))
            r = self.model.new_int_var(0, most if hosted else 0, f"replicas[{site.name}]")
            self.vars.replicas[site.name] = r
            if not hosted:
                continue
            self.model.add(self.inst.replica_capacity * r >= LinearExpr.weighted_sum(
                [lit for _, lit, _ in hosted], [o.load for _, _, o in hosted]))
            if self._site_counts_cores(site.name):  # its cores within the last level of its wait table
                self.model.add(SITE_LEVEL_UNIT * self._core_load(site.name) <= SITE_LEVELS[-1] * REPLICA_CAPACITY * r)
            for _, lit, o in hosted:
                self.model.add(r >= o.min_replicas * lit)
            if self.soft:
                self._enforce(self.model.add(r <= site.max_replicas), constraints.replicas(site.name))

    def _at_most(self, site: str, k: int) -> cp_model.IntVar:
        key = (site, k)
        if key not in self.vars.at_most:
            v = self.vars.at_most[key] = self.model.new_bool_var(f"le[{site},{k}]")
            r = self.vars.replicas[site]
            self.model.add(r <= k).only_enforce_if(v)
            self.model.add(r >= k + 1).only_enforce_if(~v)
        return self.vars.at_most[key]

    def _site_counts_cores(self, site: str) -> bool:
        """Whether the site has a wait table and a build that may run there takes its cores (asked per
        option of every model: computed once per site)."""
        if site not in self._counts_cores:
            self._counts_cores[site] = bool(self.inst.site(site).waits) and any(
                o.core_load for _, _, o in self._hosted(site))
        return self._counts_cores[site]

    def _core_load(self, site: str):
        hosted = [(lit, o.core_load) for _, lit, o in self._hosted(site) if o.core_load]
        return LinearExpr.weighted_sum([lit for lit, _ in hosted], [c for _, c in hosted])

    def _max_wait_us(self, site: str, o: Option) -> int:
        """The longest o may wait on the site: its queue's with the fewest replicas, or its share of the site's."""
        table = self.inst.site(site).waits
        return max(o.wait_us(o.min_replicas), o.site_wait_us(table[0][-1]) if table else 0)

    def _add_queue_waits(self) -> None:
        # wait[m] >= the table's wait with k replicas, if m's build runs on s and s runs at most k;
        # and >= its share of its site's wait (_add_site_waits)
        for m in self.inst.models:
            rows = [(s, lit, o) for s, lit, o in self._choices(m)
                    if any(o.waits_us) or (o.core_us and self._site_counts_cores(s))]
            if not rows:
                continue
            top = max(self._max_wait_us(s, o) for s, _, o in rows)
            w = self.vars.wait[m] = self.model.new_int_var(0, top, f"wait[{m}]")
            for s, lit, o in rows:
                most = upper_bound(self.vars.replicas[s])
                for k, wait in enumerate(o.waits_us):
                    r = o.min_replicas + k
                    if wait > 0 and r <= most:  # the site runs at most `most`: that entry binds, later ones are weaker
                        self.model.add(w >= wait).only_enforce_if([lit, self._at_most(s, r)])
        for site in self.inst.sites:
            if self._site_counts_cores(site.name):
                self._add_site_waits(site)

    def _add_site_waits(self, site: SiteData) -> None:
        # The site's wait per microsecond of core time, W: above[j] says its utilization may pass
        # level j (it must, when its core load passes that share of its replicas' cores); W is at
        # least the table's entry for k replicas at level j whenever the utilization passes level
        # j - 1 and the site runs at most k (the entries fall as k grows, rise with j: exact). Each
        # model's wait is at least its core time x W.
        name, table = site.name, site.waits
        r, load = self.vars.replicas[name], self._core_load(name)
        most = upper_bound(r)
        w = self.vars.site_wait[name] = self.model.new_int_var(0, table[0][-1], f"site_wait[{name}]")
        above = []
        for j, level in enumerate(SITE_LEVELS[:-1]):
            a = self.vars.above[name, j] = self.model.new_bool_var(f"above[{name},{j}]")
            self.model.add(SITE_LEVEL_UNIT * load <= level * REPLICA_CAPACITY * r).only_enforce_if(~a)
            if above:  # a chain: past a level, past every lower one (redundant, for propagation and the LP)
                self.model.add_implication(a, above[-1])
            above.append(a)
        rules = self._site_wait_rules[name] = []
        for j in range(len(SITE_LEVELS)):
            passed = [above[j - 1]] if j else []
            for k in range(1, len(table) + 1):
                value = table[k - 1][j]
                if value == 0:
                    break  # fewer replicas wait longer: the rows beyond are 0 too
                if k == len(table) or k >= most:  # that many or more: always, the rows beyond are no larger
                    rules.append((value, j, None))
                    self.model.add(w >= value).only_enforce_if(passed)
                    break
                if table[k][j] == value:
                    continue  # the next row's entry, under a weaker condition, says the same
                rules.append((value, j, k))
                self.model.add(w >= value).only_enforce_if([*passed, self._at_most(name, k)])
        for m, lit, o in self._hosted(name):
            if o.core_us:
                self.model.add(SITE_WAIT_SCALE * self.vars.wait[m] >= o.core_us * w).only_enforce_if(lit)
                least = self._least_site_wait_us(name, o, most)
                if 0 < least < 1 << 50:  # redundant, for the LP: its share with its own load alone
                    self.model.add(self.vars.wait[m] >= least * lit)

    def _cost_expression(self):
        vs = [self.vars.replicas[s.name] for s in self.inst.sites]
        cs = [s.cost_uph for s in self.inst.sites]
        for f in self.inst.flows:
            for tr in f.transfers:
                key = (f.index, tr.src_site, tr.dst_site)
                if tr.egress_uph and key in self.vars.pair:
                    vs.append(self.vars.pair[key])
                    cs.append(tr.egress_uph)
        return LinearExpr.weighted_sum(vs, cs)

    def _add_cost_cap(self) -> None:
        if self.inst.cost_cap_uph is not None:
            ct = self.model.add(self.cost <= self.inst.cost_cap_uph)
            self._enforce(ct, constraints.COST_CAP)

    def _add_exclusions(self) -> None:
        # No excluded plan, nor the same placement and builds with no more replicas on any site
        # (fewer replicas share fewer cores: a plan a check refused stays refused with them).
        for plan in self.excluded:
            lits = []
            for m, s in plan.placement.items():
                if (m, s) not in self.vars.x:
                    break  # a site this model may not use: nothing to exclude
                lits.append(self.vars.x[m, s])
                if (m, s, plan.builds[m]) in self.vars.build:
                    lits.append(self.vars.build[m, s, plan.builds[m]])
            else:
                lits += [self._at_most(s, r) for s, r in plan.replicas.items() if r < upper_bound(self.vars.replicas[s])]
                self.model.add_bool_or([~lit for lit in lits])

    def _add_hint(self) -> None:
        # A hinted plan, completed by the evaluator into a value for every variable: a complete
        # feasible hint is CP-SAT's first solution as soon as its search starts (a placement-only
        # hint waits for a worker to complete it). Written straight into the proto: `add_hint`
        # per variable is slow on large models.
        if not self.hint:
            return
        values = self._hint_values(self.hint)
        hint = self.model.proto.solution_hint
        hint.vars.extend(list(values))
        hint.values.extend(list(values.values()))

    def _hint_values(self, hint: dict[str, str] | Evaluation) -> dict[int, int]:
        """Variable index -> hinted value."""
        placement = hint.placement if isinstance(hint, Evaluation) else hint
        out = {v.index: int(placement.get(m) == s) for (m, s), v in self.vars.x.items()}
        if self.soft or any(m not in placement or placement[m] not in self.inst.options[m] for m in self.inst.models):
            return out  # placement booleans only
        evaluation = hint if isinstance(hint, Evaluation) else evaluate(self.inst, placement)
        if not evaluation.feasible:
            return out
        for (m, s, b), v in self.vars.build.items():
            out[v.index] = int(placement[m] == s and evaluation.builds[m] == b)
        for m, v in self.vars.wait.items():
            out[v.index] = evaluation.wait_us[m]
        for (s, k), v in self.vars.at_most.items():
            out[v.index] = int(evaluation.replicas.get(s, 0) <= k)
        for s, v in self.vars.site_wait.items():
            r = evaluation.replicas.get(s, 0)
            level = self.inst.site(s).level(evaluation.core_load.get(s, 0), r)  # None: past the last
            passed = [level is None or level > j for j in range(len(SITE_LEVELS) - 1)]
            for j, p in enumerate(passed):
                out[self.vars.above[s, j].index] = int(p)
            out[v.index] = max((value for value, j, k in self._site_wait_rules[s]
                                if (j == 0 or passed[j - 1]) and (k is None or r <= k)), default=0)
        site_of = {**self.inst.fixed, **placement}
        for (i, s, t), v in self.vars.pair.items():
            f = self.inst.flows[i]
            out[v.index] = int(site_of[f.src] == s and site_of[f.dst] == t)
        for m, v in self.vars.finish.items():
            out[v.index] = evaluation.finish_us[m]
        out[self.vars.makespan.index] = evaluation.latency_us
        for s, v in self.vars.replicas.items():
            out[v.index] = evaluation.replicas.get(s, 0)
        return out

    def _fix_beyond(self, horizon_us: int) -> None:
        """Rule out every placement and flow pair that no path through can finish by
        `horizon_us` (in the tie-break phase: the primary latency, or with cost primary the
        latency of the primary's plan, which the tie-break can only improve on)."""
        sf, st = self._site_finish, self._site_tail
        for (m, s), v in self.vars.x.items():
            if sf[m, s] + st[m, s] > horizon_us:
                self.model.add(v == 0)
        for (i, s, t), v in self.vars.pair.items():
            f = self.inst.flows[i]
            tr = 0 if s == t else f.transfer(s, t).latency_us
            if self._through(f, s, t, tr) > horizon_us:
                self.model.add(v == 0)

    # -- solve ---------------------------------------------------------------------------
    def _run(self, name: str, expr, time_limit: float,
             probing: bool = True) -> tuple[cp_model.CpSolver, PhaseResult, int]:
        self.model.minimize(expr)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.1, time_limit)
        solver.parameters.num_workers = self.config.workers
        solver.parameters.log_search_progress = self.config.log_search_progress
        if not probing:
            solver.parameters.cp_model_probing_level = 0
        timer = _FirstSolutionTimer()
        status = solve_checked(solver, self.model, timer)
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

    def _plan(self, solver: cp_model.CpSolver) -> tuple[dict[str, str], dict[str, str], dict[str, int]]:
        """The placement, builds and replicas of the solver's solution."""
        placement = {m: self.vars.site_of(solver, m, self._sites(m)) for m in self.inst.models}
        builds = {m: next(o.build for s, lit, o in self._choices(m) if s == placement[m] and solver.boolean_value(lit))
                  for m in self.inst.models}
        replicas = {s: solver.value(r) for s, r in self.vars.replicas.items() if s in placement.values()}
        return placement, builds, replicas

    def solve(self) -> Solution:
        t0 = time.perf_counter()
        primary, secondary = (
            (self.cost, self.vars.makespan) if self.config.objective == "cost" else (self.vars.makespan, self.cost)
        )
        names = ("cost", "latency") if self.config.objective == "cost" else ("latency", "cost")
        # Presolve probing takes most of the presolve on large models (8-10 s of 9-11 s at
        # 100 models x 8 sites) before the hinted plan is even used: none in the primary phase.
        solver, first, status = self._run(names[0], primary, self.config.time_limit_s, probing=False)
        if status == cp_model.INFEASIBLE:
            return Solution(status="INFEASIBLE", primary=first, wall_time_s=time.perf_counter() - t0)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return Solution(status="UNKNOWN", primary=first, wall_time_s=time.perf_counter() - t0)
        plan = self._plan(solver)

        # Lexicographic tie-break: keep the primary at its value, improve the secondary,
        # starting from the primary's whole solution (the model's variables are unchanged).
        # Probing stays on here: with the primary bounded it shrinks the model a lot.
        self.model.add(primary <= first.value)
        if self.config.objective == "latency":
            self._fix_beyond(first.value)
        else:  # the primary's plan bounds the latency to beat: nothing slower needs a look
            reached = solver.value(self.vars.makespan)
            self.model.add(self.vars.makespan <= reached)
            self._fix_beyond(reached)
        self.model.clear_hints()
        hint = self.model.proto.solution_hint
        values = list(solver.response_proto.solution)
        hint.vars.extend(range(len(values)))
        hint.values.extend(values)
        remaining = self.config.time_limit_s - (time.perf_counter() - t0)
        solver2, second, status2 = self._run(names[1], secondary, max(remaining, min(5.0, self.config.time_limit_s)))
        if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            plan = self._plan(solver2)
        proven = status == cp_model.OPTIMAL and status2 == cp_model.OPTIMAL
        # a free site's replicas are not in the objectives: keep only those the plan needs
        trimmed = without_spare_replicas(self.inst, evaluate(self.inst, *plan), self.excluded)
        return Solution(
            status="OPTIMAL" if proven else "FEASIBLE",
            placement=trimmed.placement, builds=trimmed.builds, replicas=trimmed.replicas,
            primary=first,
            secondary=second,
            wall_time_s=time.perf_counter() - t0,
        )
