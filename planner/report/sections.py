"""The report's content, once, as plain blocks; markdown.py and html.py only render them.

Every number of plan.json appears in some table here (tests/report/test_report.py parses report.md
back and checks), printed by `svg.num` with up to 6 decimals, which is what plan.json holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.plan.schema import Plan
from planner.report import binding as why
from planner.report.svg import num

# -- blocks -----------------------------------------------------------------------------------


@dataclass
class Code:
    text: str


@dataclass
class Bold:
    text: str


@dataclass
class Link:
    text: str
    href: str


Inline = str | Code | Bold | Link


@dataclass
class Heading:
    level: int
    text: str

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.text.lower()).strip("-")


@dataclass
class Para:
    parts: list[Inline]


@dataclass
class Bullets:
    items: list[list[Inline]]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    right: set[int] = field(default_factory=set)  # right-aligned (numeric) columns


@dataclass
class Graph:
    """The ensemble colored by site: Mermaid in Markdown, inline SVG in HTML."""


@dataclass
class Figure:
    name: str  # the SVG file beside the report, and the key of the inline SVG
    alt: str


@dataclass
class FileLinks:
    """Links to files beside the report (e.g. the Pareto plot); HTML inlines SVGs it has."""

    files: list[str]
    inline_svg: str | None = None  # the SVG file to draw inline in HTML


Block = Heading | Para | Bullets | Table | Graph | Figure | FileLinks


# -- content ----------------------------------------------------------------------------------

def _ms(x: float | None) -> str:
    return num(x, 3)


def _usd(x: float | None) -> str:
    return num(x, 6)


def _summary(plan: Plan) -> list[Block]:
    c = plan.constraints
    blocks: list[Block] = [Heading(1, f"Plan review: {plan.app}")]
    parts: list[Inline] = [Bold(plan.status), f" plan, objective {Code(plan.objective).text}: "]
    if plan.latency_ms is not None:
        slo = c.get("latency_ms")
        cap = c.get("cost_per_hour")
        parts += [f"end-to-end p{plan.percentile:g} latency under the planned load ", Bold(f"{_ms(plan.latency_ms)} ms"),
                  f" (SLO {_ms(slo)} ms)" if slo is not None else " (no SLO)",
                  ", cost ", Bold(f"${_usd(plan.cost_per_hour)}/h"),
                  f" (cap ${_usd(cap)}/h)." if cap is not None else " (no cost cap)."]
    else:
        parts += ["no placement meets the constraints."]
    blocks.append(Para(parts))
    rows = [["status", plan.status], ["objective", plan.objective],
            [f"latency ms (p{plan.percentile:g} under the planned load)", _ms(plan.latency_ms)],
            ["cost $/h", _usd(plan.cost_per_hour)],
            ["SLO ms (constraints.latency_ms)", _ms(c.get("latency_ms"))],
            ["cost cap $/h (constraints.cost_per_hour)", _usd(c.get("cost_per_hour"))],
            ["models", str(len(plan.placement))], ["source->sink paths", str(plan.paths_total)],
            ["plan.json version", str(plan.version)]]
    if plan.source is not None:  # what to re-solve, and whether the file changed since
        rows += [["app.yaml", plan.source.file], ["app.yaml sha256", plan.source.sha256],
                 ["--set", ", ".join(plan.source.overrides) or "none"]]
    blocks.append(Table(["", "value"], rows, {1}))
    return blocks


def _placement(plan: Plan) -> list[Block]:
    if not plan.models:
        if plan.placement:
            return [Heading(2, "Placement"), Table(["model", "site"], [[m, s] for m, s in plan.placement.items()])]
        return []
    rows = []
    for name, m in plan.models.items():
        site = plan.sites.get(m.site)
        rows.append([name, m.site, m.tier, m.target, f"{m.engine}/{m.precision}", _ms(m.latency_ms),
                     _ms(m.wait_ms), _ms(m.wait_p50_ms), _ms(m.mean_wait_ms), num(m.utilization), num(m.memory_mb),
                     num(m.rate_rps),
                     _ms(m.start_ms), _ms(m.finish_ms), f"{site.replicas} / {site.max_replicas}" if site else "-",
                     f"{m.servers} ({m.instances} per replica)",
                     m.provenance + (f" ({m.tuning})" if m.tuning else "")])
    return [Heading(2, "Placement"),
            Para([f"Latency is one request's service time; the waits are its queue's at p{plan.percentile:g} and "
                  "p50 under the planned load, and its mean (busy: rate x latency / servers, 1 = always; servers: the site's replicas x "
                  "the model's instances)."]),
            Table(["model", "site", "tier", "target", "build", "latency ms", f"wait p{plan.percentile:g} ms",
                   "wait p50 ms", "mean wait ms", "busy", "memory MB", "rate rps", "start ms", "finish ms",
                   "site replicas", "servers", "provenance"], rows, {5, 6, 7, 8, 9, 10, 11, 12, 13, 14}),
            Heading(3, "Ensemble"),
            Para(["Each model colored by the site it runs on; a labelled arrow is a transfer between sites."
                  + (f" Only the flows on the {len(plan.paths)} listed paths are drawn."
                     if len(plan.paths) < plan.paths_total else "")]),
            Graph()]


def _paths(plan: Plan) -> list[Block]:
    if not plan.paths:
        return []
    blocks: list[Block] = [Heading(2, "Latency per source->sink path")]
    if len(plan.paths) < plan.paths_total:
        blocks.append(Para([f"{plan.paths_total} paths in all; listed: {len(plan.paths)}, "
                            "the critical path into each sink."]))
    blocks.append(Figure("latency.svg", "latency breakdown per path against the SLO"))
    rows = [[" -> ".join(p.nodes), _ms(p.latency_ms), _ms(p.queueing_ms), _ms(p.p50_ms), _ms(p.slo_ms),
             _ms(p.slack_ms)] for p in plan.paths]
    blocks.append(Para([f"A path's latency adds each model's service, its queue's p{plan.percentile:g} wait and "
                        "each transfer: a bound on the path's percentile (requests are rarely slow at every stage "
                        "at once). p50 adds the median waits instead."]))
    blocks.append(Table(["path", f"p{plan.percentile:g} ms", "of it queueing ms", "p50 ms", "SLO ms", "slack ms"],
                        rows, {1, 2, 3, 4, 5}))
    for i, p in enumerate(plan.paths, 1):
        blocks.append(Heading(3, f"Path {i}: {p.source} -> {p.sink}"))
        blocks.append(Para([Code(" -> ".join(p.nodes)), f": {_ms(p.latency_ms)} ms"
                            + (f" of the {_ms(p.slo_ms)} ms SLO, slack {_ms(p.slack_ms)} ms" if p.slo_ms is not None
                               else "")]))
        rows = []
        for t in p.terms:
            where = t.site if t.kind in ("model", "queue") else (" -> ".join(t.route) if t.route else "within one site")
            rows.append([t.kind, t.name, where or "-", _ms(t.ms), "-" if t.bytes is None else str(t.bytes)])
        rows.append(["total", "", "", _ms(p.latency_ms), ""])
        blocks.append(Table(["term", "name", "site / route", "ms", "bytes"], rows, {3, 4}))
    return blocks


def _cost(plan: Plan) -> list[Block]:
    if not plan.sites and plan.cost is None:
        return []
    blocks: list[Block] = [Heading(2, "Cost"), Figure("cost.svg", "cost per hour by site and egress link")]
    rows = []
    for name, s in plan.sites.items():
        per = s.cost_per_hour / s.replicas if s.replicas else 0.0
        rows.append([name, s.tier, s.target, ", ".join(s.models), f"{s.replicas} / {s.max_replicas}",
                     num(s.load_replicas), num(s.utilization), f"{num(s.memory_mb_used)} / {num(s.memory_mb)}",
                     _usd(per), _usd(s.cost_per_hour)])
    blocks.append(Table(["site", "tier", "target", "models", "replicas / max", "load (replicas)", "busy",
                         "memory MB used / per replica", "$/h per replica", "compute $/h"], rows, {4, 5, 6, 7, 8, 9}))
    if plan.cost is not None:
        if plan.cost.egress:
            blocks.append(Table(["flow", "link", "GB/h", "egress $/h"],
                                [[e.flow, " - ".join(e.link), num(e.gb_per_hour), _usd(e.cost_per_hour)]
                                 for e in plan.cost.egress], {2, 3}))
        else:
            blocks.append(Para(["No flow crosses a priced link: egress is free."]))
        blocks.append(Table(["", "$/h"], [["compute", _usd(plan.cost.compute_per_hour)],
                                          ["egress", _usd(plan.cost.egress_per_hour)],
                                          ["total", _usd(plan.cost_per_hour)]], {1}))
    return blocks


def _load(plan: Plan) -> list[Block]:
    if not plan.load_curve:
        return []
    rows = [[num(p.rate_scale), num(p.rate_rps), num(p.max_utilization),
             _ms(p.p50_ms) if p.stable else "unbounded", _ms(p.tail_ms) if p.stable else "unbounded",
             "yes" if p.within_knee else ""] for p in plan.load_curve]
    return [Heading(2, "Latency against load"), Figure("load.svg", "p50 and the plan's percentile against the request rate"),
            Para(["The same plan (placement, builds, replicas) with every source's rate scaled: the slowest "
                  f"path's p50 and p{plan.percentile:g}. Within the knee: p{plan.percentile:g} at most 1.5x its "
                  "value at a quarter of the planned rates; past it, queueing dominates. A row marked unbounded has a queue "
                  "that cannot keep up."]),
            Table(["x planned rate", "rps", "busiest queue", "p50 ms", f"p{plan.percentile:g} ms", "within the knee"], rows,
                  {1, 2, 3, 4}), *_margin(plan), *_simulated(plan)]


def _margin(plan: Plan) -> list[Block]:
    m = plan.service_margin
    if m is None or not m.points:
        return []
    q = f"p{plan.percentile:g}"
    if m.slower_pct is None:
        head = "No SLO: no margin against it."
    elif m.slower_pct == 0:
        head = f"No margin: {q} misses the SLO at the profiles' own times."
    else:
        head = (f"Margin: the SLO holds at the planned rate with every model {'at least ' if m.at_least else 'up to '}"
                f"{num(m.slower_pct)} % slower than its profile.")
    rows = [[num(p.slower), num(p.max_utilization), _ms(p.p50_ms) if p.stable else "unbounded",
             _ms(p.tail_ms) if p.stable else "unbounded", "" if p.within_slo is None else "yes" if p.within_slo else "no"]
            for p in m.points]
    return [Para([f"{head} Near the knee a small error in a service time is a large error in the wait: the same plan "
                  "(placement, builds, replicas, links) with every model's service time slower than its profile, "
                  "as a slower machine or an optimistic estimate would make it."]),
            Table(["x the profiles' times", "busiest", "p50 ms", f"{q} ms", "within the SLO"], rows, {0, 1, 2, 3}),
            *_stated_errors(m, q)]


def _stated_errors(m, q: str) -> list[Block]:
    blocks: list[Block] = []
    s = m.at_stated_errors
    if s is not None:
        latency = (f"p50 {_ms(s.p50_ms)} ms, {q} {_ms(s.tail_ms)} ms" if s.stable else "a queue that cannot keep up")
        slo = "" if s.within_slo is None else (", within the SLO" if s.within_slo else ", over the SLO")
        blocks += [Para([f"With each estimated model at the slow end of the error its calibration states (the others as "
                         f"profiled): {latency}{slo}; the busiest queue or site {num(s.max_utilization)}."]),
                   Table(["model", "stated error %"], [[name, num(pct)] for name, pct in s.errors_pct.items()], {1})]
    if m.unknown_errors:
        blocks.append(Para([f"Estimated with no stated error (no calibration to derive one from): "
                            f"{', '.join(m.unknown_errors)}."]))
    return blocks


def _simulated(plan: Plan) -> list[Block]:
    s = plan.simulated
    if s is None:
        return []
    if s.status != "ok":
        return [Para([f"Simulated at the planned rate: not simulated, {s.why}."])]
    cores = ", ".join(f"{site} {v:.0%}" for site, v in s.cores_utilization.items())
    return [Para([f"Simulated at the planned rate ({s.requests} Poisson requests, seed {s.seed}; each site's models "
                  f"sharing its cores, a request's stages overlapping as they do): p50 {_ms(s.p50_ms)} ms, "
                  f"p{plan.percentile:g} {_ms(s.tail_ms)} ms for the whole request, against the plan's "
                  f"{_ms(plan.latency_ms)} ms (each model its own servers, percentiles added along the slowest path). "
                  f"Cores busy: {cores}."]), *_rounds(plan)]


def _rounds(plan: Plan) -> list[Block]:
    rounds = plan.simulated.rounds
    if len(rounds) < 2:
        return []
    rows = []
    for i, r in enumerate(rounds, 1):
        sites = "; ".join(f"{site} x{n}: {', '.join(m for m, at in r.placement.items() if at == site)}"
                          for site, n in r.replicas.items())
        rows.append([str(i), sites or f"no plan ({r.status.lower()})", _usd(r.cost_per_hour) if r.placement else "-",
                     _ms(r.latency_ms) if r.placement else "-", _ms(r.simulated_ms) if r.placement else "-",
                     "yes" if r.met else "no"])
    return [Para([f"The solver's plans in turn: each one the simulation refused (p{plan.percentile:g} over the SLO) "
                  "was excluded, with its placement on no more replicas, and the solver ran again "
                  "(planner.plan.vetted)."]),
            Table(["solve", "sites x replicas: models", "cost $/h", f"p{plan.percentile:g} ms (model)",
                   f"p{plan.percentile:g} ms (simulated)", "meets the SLO"], rows, {2, 3, 4})]


def _baselines(plan: Plan) -> list[Block]:
    if not plan.baselines:
        return []
    rows = []
    if plan.latency_ms is not None:
        rows.append([f"optimum ({plan.status.lower()})", "the plan above", _ms(plan.latency_ms),
                     _usd(plan.cost_per_hour), "yes", "-", "-"])
    for b in plan.baselines:
        saves_cost = saves_ms = "-"
        if plan.cost_per_hour is not None and plan.latency_ms is not None:
            saves_cost = _usd(b.cost_per_hour - plan.cost_per_hour)
            saves_ms = _ms(b.latency_ms - plan.latency_ms)
        placement = ", ".join(f"{m}@{s}" for m, s in b.placement.items())
        rows.append([b.name, f"{b.description}: {placement}", _ms(b.latency_ms), _usd(b.cost_per_hour),
                     "yes" if b.feasible else "no: " + "; ".join(b.violations), saves_cost, saves_ms])
    blocks: list[Block] = [Heading(2, "Baselines"),
                           Para(["Plans an architect would try by hand, scored by the same evaluator. "
                                 "'optimum saves' is the baseline's number minus the optimum's "
                                 "(positive: the optimum is cheaper or faster)."]),
                           Table(["plan", "placement", "latency ms", "cost $/h", "feasible",
                                  "optimum saves $/h", "optimum saves ms"], rows, {2, 3, 5, 6})]
    feasible = [b for b in plan.baselines if b.feasible]
    if feasible and plan.cost_per_hour is not None:
        best = min(feasible, key=lambda b: (b.cost_per_hour, b.latency_ms))
        dc, dl = best.cost_per_hour - plan.cost_per_hour, best.latency_ms - plan.latency_ms
        if abs(dc) < 1e-9 and abs(dl) < 1e-9:
            blocks.append(Para([f"The cheapest feasible baseline ({best.name}) is as good as the optimum here: "
                                "the solver proves that nothing beats it."]))
        else:
            cost = ("as cheap" if abs(dc) < 1e-9 else f"${_usd(dc)}/h cheaper" if dc > 0 else f"${_usd(-dc)}/h dearer")
            lat = ("as fast" if abs(dl) < 1e-9 else f"{_ms(dl)} ms faster" if dl > 0 else f"{_ms(-dl)} ms slower")
            blocks.append(Para([f"Against the cheapest feasible baseline ({best.name}), the optimum is {cost} and "
                                f"{lat}."]))
    elif plan.cost_per_hour is not None:
        blocks.append(Para(["No baseline is feasible: every hand-made plan breaks a constraint the optimum meets."]))
    return blocks


def _why(plan: Plan) -> list[Block]:
    heads = why.headroom(plan)
    if not heads and not plan.conflicts and not plan.explanation:
        return []
    if plan.status == "INFEASIBLE" or plan.conflicts or plan.explanation:
        blocks: list[Block] = [Heading(2, "Why there is no plan: conflicting constraints")]
        blocks.append(Para(["No placement meets every constraint. A minimal conflicting set, and the smallest "
                            "relaxation of each that alone makes the app feasible:"]))
        if plan.conflicts:
            blocks.append(Table(["constraint", "says", "smallest relaxation"],
                                [[str(c.constraint), c.statement, c.relaxation or "relaxing it alone is not enough"]
                                 for c in plan.conflicts]))
        if plan.explanation:
            blocks.append(Bullets([[line] for line in plan.explanation]))
        return blocks
    blocks = [Heading(2, "Why this plan: binding constraints")]
    lines = why.why_lines(plan)
    if lines:
        blocks.append(Bullets([[line] for line in lines]))
    blocks.append(Para([f"Headroom of every constraint ({Code('binding').text}: at its limit; "
                        f"tight: under {int(why.TIGHT * 100)}% of the limit left):"]))
    blocks.append(Table(["constraint", "applies to", "used", "limit", "headroom", "unit", "state"],
                        [[str(h.constraint), h.subject, num(h.used), num(h.limit), num(h.headroom), h.unit, h.state]
                         for h in heads], {2, 3, 4}))
    return blocks


def _solver(plan: Plan) -> list[Block]:
    s = plan.solver
    rows = []
    for label, p in (("primary", s.primary), ("secondary (tie-break)", s.secondary)):
        if p is None:
            continue
        unit = "ms" if p.objective == "latency" else "$/h"
        rows.append([label, p.objective, p.status, f"{num(p.value)} {unit}" if p.value is not None else "-",
                     f"{num(p.bound)} {unit}" if p.bound is not None else "-",
                     "-" if p.gap is None else f"{num(p.gap * 100, 4)}%", num(p.wall_time_s, 4),
                     num(p.first_solution_s, 4)])
    return [Heading(2, "Solver"),
            Para([f"CP-SAT status {Code(s.status).text}, objective {s.objective}, {s.workers} workers, "
                  f"time limit {num(s.time_limit_s)} s, wall time {num(s.wall_time_s, 4)} s. "
                  "OPTIMAL means the bound meets the value (gap 0): no cheaper/faster placement exists."]),
            Table(["phase", "objective", "status", "value", "bound", "gap", "wall s", "first solution s"], rows,
                  {3, 4, 5, 6, 7})]


def _provenance(plan: Plan) -> list[Block]:
    if not plan.profiles:
        return []
    counts: dict[str, int] = {}
    for p in plan.profiles:
        counts[p.provenance] = counts.get(p.provenance, 0) + 1
    rows = []
    for p in plan.profiles:
        model = plan.models.get(p.node)
        chosen = model is not None and model.site == p.site and f"{model.engine}/{model.precision}" == p.build
        rows.append([p.node, p.site, p.target or "-", p.build_label, _ms(p.latency_ms),
                     num(p.memory_mb), p.provenance, p.verification, p.tuning or "-", _ms(p.tvm_ms), _ms(p.ort_ms),
                     "yes" if chosen else "", p.note or ""])
    return [Heading(2, "Provenance of every number"),
            Para(["measured: timed on this host; rpc: timed on the device through TVM's RPC tracker; estimated: "
                  "the roofline time on the target over its calibrated efficiency (or the host measurement of the same "
                  "build scaled by the roofline model, where no calibration applies); given: written in app.yaml. "
                  "Verified: the build's outputs matched the fp32 ONNX Runtime reference on this host (max relative "
                  "error); unverified: it did not run here (`unverified (CPU e)`: an fp16 GPU build, its fp16 "
                  "arithmetic emulated on this host's CPU with error e, the GPU build itself unchecked). Tuning: "
                  "untuned, or tuned with MetaSchedule (trials). "
                  "Counts: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "."]),
            Table(["node", "site", "target", "build", "latency ms", "memory MB", "provenance", "verified", "tuning",
                   "TVM host ms", "ORT host ms", "chosen", "note"], rows, {4, 5, 9, 10})]


def _tradeoffs(assets: list[str]) -> list[Block]:
    files = [a for a in ("pareto.svg", "pareto.png", "pareto.md", "pareto.json") if a in assets]
    if not files:
        return [Heading(2, "Trade-offs"),
                Para(["No Pareto front computed yet: run ", Code("planner pareto APP -o OUT"),
                      " with this OUT to add the latency-cost front here."])]
    return [Heading(2, "Trade-offs"),
            Para(["The exact latency-cost Pareto front (", Code("planner pareto"), "):"]),
            FileLinks(files, inline_svg="pareto.svg" if "pareto.svg" in files else None)]


def _warnings(plan: Plan) -> list[Block]:
    if not plan.warnings:
        return [Heading(2, "Warnings and exclusions"), Para(["None."])]
    return [Heading(2, "Warnings and exclusions"), Bullets([[w] for w in plan.warnings])]


def build(plan: Plan, assets: list[str] = ()) -> list[Block]:
    """The report as blocks; `assets` are the files beside it (to link the Pareto plot)."""
    blocks: list[Block] = []
    for part in (_summary(plan), _placement(plan), _paths(plan), _load(plan), _cost(plan), _baselines(plan), _why(plan),
                 _solver(plan), _provenance(plan), _tradeoffs(list(assets)), _warnings(plan)):
        blocks.extend(part)
    return blocks
