"""Why this plan: how close each constraint runs to its limit in the chosen plan, and what
stops the cheaper (or faster) alternatives.

Headroom is read off plan.json alone: SLO slack per path, memory and replicas per site, the
cost cap. A constraint *binds* when the plan sits at its limit (no headroom left); it is
*tight* when less than 10% of the limit is left.
"""

from __future__ import annotations

from pydantic import BaseModel

from planner.plan.schema import Plan
from planner.solver import constraints
from planner.solver.constraints import ConstraintKey, Family

TIGHT = 0.10
EPS = 1e-6


class Headroom(BaseModel):
    constraint: ConstraintKey  # slo:<source>-><sink> | memory:<site> | replicas:<site> | cost_cap
    subject: str  # what it applies to, in words
    used: float
    limit: float
    unit: str
    headroom: float
    state: str  # binding | tight | slack

    @property
    def fraction(self) -> float:
        return self.headroom / self.limit if self.limit else 0.0


def _state(headroom: float, limit: float) -> str:
    if headroom <= EPS:
        return "binding"
    if limit > 0 and headroom / limit < TIGHT:
        return "tight"
    return "slack"


def headroom(plan: Plan) -> list[Headroom]:
    out: list[Headroom] = []
    for p in plan.paths:
        if p.slo_ms is None:
            continue
        h = p.slo_ms - p.latency_ms
        out.append(Headroom(constraint=ConstraintKey(Family.SLO, f"{p.source}->{p.sink}"), subject=" -> ".join(p.nodes), used=p.latency_ms,
                            limit=p.slo_ms, unit="ms", headroom=round(h, 6), state=_state(h, p.slo_ms)))
    for name, s in plan.sites.items():
        h = s.memory_mb - s.memory_mb_used
        out.append(Headroom(constraint=constraints.memory(name), subject=f"memory per replica on {name}", used=s.memory_mb_used,
                            limit=s.memory_mb, unit="MB", headroom=round(h, 6), state=_state(h, s.memory_mb)))
        # replicas: the load the site can still take before it needs more than max_replicas
        h = s.max_replicas - s.load_replicas
        state = "binding" if s.replicas >= s.max_replicas and h <= EPS else _state(h, s.max_replicas)
        if s.replicas >= s.max_replicas and state == "slack" and h < 1:
            state = "tight"
        out.append(Headroom(constraint=constraints.replicas(name), subject=f"replica load on {name} ({s.replicas} running)",
                            used=s.load_replicas, limit=s.max_replicas, unit="replicas", headroom=round(h, 6),
                            state=state))
    cap = plan.constraints.get("cost_per_hour")
    if cap is not None and plan.cost_per_hour is not None:
        h = cap - plan.cost_per_hour
        out.append(Headroom(constraint=constraints.COST_CAP, subject="cost per hour", used=plan.cost_per_hour, limit=cap,
                            unit="$/h", headroom=round(h, 6), state=_state(h, cap)))
    return out


def binding(plan: Plan) -> list[Headroom]:
    """The constraints at or near their limits, tightest first."""
    return sorted((h for h in headroom(plan) if h.state != "slack"), key=lambda h: h.fraction)


# what a broken constraint is called in a sentence, by its family
_FAMILY_WORDS = {
    Family.SLO: "the SLO",
    Family.REPLICAS: "max_replicas",
    Family.MEMORY: "memory",
    Family.COST_CAP: "the cost cap",
    Family.PIN: "a `sites:` pin",
    Family.ROUTE: "routing",
}


def blocked_alternatives(plan: Plan) -> list[str]:
    """Each baseline better than the optimum on its objective, and the constraint it breaks:
    the reason the optimizer could not take it."""
    if plan.cost_per_hour is None or plan.latency_ms is None:
        return []
    lines = []
    for b in plan.baselines:
        better = (b.cost_per_hour < plan.cost_per_hour - EPS) if plan.objective == "cost" else (
            b.latency_ms < plan.latency_ms - EPS)
        if not better:
            continue
        what = (f"costs ${b.cost_per_hour:.6g}/h (vs ${plan.cost_per_hour:.6g}/h)" if plan.objective == "cost"
                else f"takes {b.latency_ms:.6g} ms (vs {plan.latency_ms:.6g} ms)")
        if b.feasible:  # cannot happen for an OPTIMAL plan; say so plainly if it does
            lines.append(f"{b.name} {what} and is feasible: the solver stopped at {plan.status}")
            continue
        broken = dict.fromkeys(_FAMILY_WORDS[key.family] for key in b.violated)
        lines.append(f"{b.name} {what} but breaks {', '.join(broken)}: "
                     + "; ".join(b.violations))
    return lines


def why_lines(plan: Plan) -> list[str]:
    """A short 'why' in words: what binds, and what blocks the better-looking alternatives."""
    lines = []
    for h in binding(plan):
        if h.constraint.family is Family.SLO:
            lines.append(f"the SLO is {h.state} on {h.subject}: {h.used:.6g} of {h.limit:.6g} ms "
                         f"({h.headroom:.6g} ms left)")
        elif h.constraint == constraints.COST_CAP:
            lines.append(f"the cost cap is {h.state}: ${h.used:.6g} of ${h.limit:.6g}/h (${h.headroom:.6g}/h left)")
        else:
            lines.append(f"{h.subject} is {h.state}: {h.used:.6g} of {h.limit:.6g} {h.unit} "
                         f"({h.headroom:.6g} {h.unit} left)")
    lines.extend(blocked_alternatives(plan))
    if not lines and plan.models:
        lines.append("no constraint is within 10% of its limit and no baseline beats the optimum: "
                     "the plan is the cheapest placement outright" if plan.objective == "cost" else
                     "no constraint is within 10% of its limit: the plan is the fastest placement outright")
    return lines
