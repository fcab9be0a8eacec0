"""The README's latency and cost model ("What the numbers mean"), re-implemented in plain floating
point from an app.yaml dict alone: no planner code and no graph library, so that a bug in how the
planner builds its Instance (routes, egress, rates, loads) cannot hide here too. It is the
independent truth that the Instance, the evaluator and plan.json are checked against.

Only given profiles (`models.<m>.profile`) are read: the apps checked this way have no ONNX
models or python steps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Two routes whose times differ by less than this are equally fast (the generated apps' times
# are whole microseconds, so this only absorbs floating-point noise in summing them).
SAME_MS = 1e-6


@dataclass(frozen=True)
class RouteNumbers:
    latency_ms: float  # summed over its links: rtt/2 + bytes*8/bandwidth
    cost_per_gb: float  # summed over its links
    sites: tuple[str, ...]


def link_ms(link: dict, nbytes: int) -> float:
    return link["rtt_ms"] / 2 + nbytes * 8 / (link["bandwidth_mbps"] * 1e6) * 1000


def simple_paths(app: dict, s: str, t: str) -> list[list[dict]]:
    """Every loop-free path from s to t over the links, as its list of links (depth-first)."""
    out: list[list[dict]] = []

    def walk(at: str, visited: list[str], used: list[dict]) -> None:
        if at == t:
            out.append(list(used))
            return
        for link in app["links"]:
            a, b = link["between"]
            nxt = b if a == at else a if b == at else None
            if nxt is not None and nxt not in visited:
                walk(nxt, visited + [nxt], used + [link])

    walk(s, [s], [])
    return out


def route(app: dict, s: str, t: str, nbytes: int) -> RouteNumbers | None:
    """The fastest route from s to t for `nbytes`; among equally fast ones the cheapest; None
    when no links join them."""
    best: RouteNumbers | None = None
    for links in simple_paths(app, s, t):
        sites = [s]
        for link in links:
            a, b = link["between"]
            sites.append(b if a == sites[-1] else a)
        cand = RouteNumbers(latency_ms=sum(link_ms(link, nbytes) for link in links),
                            cost_per_gb=sum(link.get("cost_per_gb", 0) for link in links), sites=tuple(sites))
        if best is None or cand.latency_ms < best.latency_ms - SAME_MS or (
                abs(cand.latency_ms - best.latency_ms) <= SAME_MS and cand.cost_per_gb < best.cost_per_gb):
            best = cand
    return best


def rates(app: dict) -> dict[str, float]:
    """rate_rps(m): the sum of the rates of the sources upstream of m (each source once, however
    many paths lead from it to m)."""
    out = {m: 0.0 for m in app["models"]}
    for name, source in app["sources"].items():
        reached, todo = set(), [name]
        while todo:
            node = todo.pop()
            for f in app["flows"]:
                if f["from"] == node and f["to"] not in reached:
                    reached.add(f["to"])
                    todo.append(f["to"])
        for m in reached & set(out):
            out[m] += source["rate_rps"]
    return out


def producer_rate(app: dict, node: str) -> float:
    return app["sources"][node]["rate_rps"] if node in app["sources"] else rates(app)[node]


def candidate_sites(app: dict, m: str) -> list[str]:
    """`sites:` if given, else every site; only those it has numbers for."""
    spec = app["models"][m]
    return [s for s in (spec.get("sites") or app["sites"]) if s in spec["profile"]]


def options(app: dict, m: str) -> dict[str, dict]:
    """The sites m may use, with their profile: candidates whose numbers fit in the site's memory."""
    return {s: app["models"][m]["profile"][s] for s in candidate_sites(app, m)
            if app["models"][m]["profile"][s].get("memory_mb", 0) <= app["sites"][s]["memory_mb"]}


def unpinned(app: dict, m: str) -> dict[str, dict]:
    """Sites only m's `sites:` excludes, where its numbers fit: what relaxing the pin would allow."""
    spec = app["models"][m]
    return {s: p for s, p in spec["profile"].items()
            if s not in candidate_sites(app, m) and p.get("memory_mb", 0) <= app["sites"][s]["memory_mb"]}


def fixed_site(app: dict, node: str) -> str | None:
    for kind in ("sources", "sinks"):
        if node in app[kind]:
            return app[kind][node]["site"]
    return None


def endpoint_sites(app: dict, node: str, with_unpinned: bool = True) -> list[str]:
    site = fixed_site(app, node)
    if site is not None:
        return [site]
    return [*options(app, node), *(unpinned(app, node) if with_unpinned else {})]


@dataclass(frozen=True)
class TransferNumbers:
    latency_ms: float
    egress_per_hour: float  # producer's rate x bytes x 3600 / 1e9 x the route's summed price


def transfers(app: dict, i: int) -> dict[tuple[str, str], TransferNumbers]:
    """Flow i between every routable pair of distinct sites its producer and consumer may use."""
    f = app["flows"][i]
    rate = producer_rate(app, f["from"])
    out = {}
    for s in endpoint_sites(app, f["from"]):
        for t in endpoint_sites(app, f["to"]):
            r = route(app, s, t, f["bytes"]) if s != t else None
            if r is not None:
                out[s, t] = TransferNumbers(r.latency_ms, rate * f["bytes"] * 3600 / 1e9 * r.cost_per_gb)
    return out


def topological(app: dict) -> list[str]:
    nodes = [*app["sources"], *app["models"], *app["sinks"]]
    done: list[str] = []
    while len(done) < len(nodes):
        ready = [n for n in nodes if n not in done and all(f["from"] in done for f in app["flows"] if f["to"] == n)]
        assert ready, "the flows form a cycle"
        done += ready
    return done


def load_replicas(rate_rps: float, latency_ms: float) -> float:
    return rate_rps * latency_ms / 1000


def replicas_for(load: float) -> int:
    # loads are exact in the README's units (milli-requests/s x microseconds); the guard only
    # absorbs floating-point noise in summing them
    return max(1, math.ceil(load - 1e-9))


def erlang_c(c: int, a: float) -> float:
    """The probability that a request waits in an M/M/c queue with offered load a = rate x service
    (a < c), by the textbook sum, its terms in logarithms (no overflow for large c)."""
    logs = [k * math.log(a) - math.lgamma(k + 1) for k in range(c)] if a > 0 else [0.0]
    top = c * math.log(a) - math.lgamma(c + 1) + math.log(c / (c - a)) if a > 0 else -math.inf
    peak = max(*logs, top)
    waiting = math.exp(top - peak)
    return waiting / (sum(math.exp(x - peak) for x in logs) + waiting)


def queue_wait_ms(rate_rps: float, service_ms: float, servers: int, percentile: float) -> float:
    """The README's queue: M/D/c (Poisson arrivals, the profile's constant service time). Mean wait
    C * S / (c (1 - rho)) x f, f Cosmetatos's factor for a fixed service time; the wait is 0 with
    probability 1 - C and beyond a shifted exponential of mean Wq / C and coefficient of variation
    s = sqrt(1 - 2 (1 - rho) / (c + 2)), so its percentile p is 0 when C <= 1 - p, else
    Wq / C x (1 + s (ln(C / (1 - p)) - 1))."""
    a = rate_rps * service_ms / 1000
    c, rho = servers, a / servers
    c_prob = erlang_c(c, a)
    tail = 1 - percentile / 100
    if c_prob <= tail:
        return 0.0
    f = (1 + (1 - rho) * (c - 1) * (math.sqrt(4 + 5 * c) - 2) / (16 * rho * c)) / 2
    mean = c_prob * service_ms / (c * (1 - rho)) * f
    spread = math.sqrt(1 - 2 * (1 - rho) / (c + 2))
    return mean / c_prob * (1 + spread * (math.log(c_prob / tail) - 1))


def least_replicas_for_queue(rate_rps: float, service_ms: float, instances: int, max_utilization: float | None) -> int:
    a = rate_rps * service_ms / 1000
    servers = math.floor(a) + 1  # a queue keeps up only below 100 %
    if max_utilization is not None:
        servers = max(servers, math.ceil(a / max_utilization - 1e-12))
    return max(1, math.ceil(servers / instances))


# the README's utilization levels of a site's cores, and the most replicas its table has rows for
SITE_LEVELS = [0.01, 0.02, 0.03, 0.04, 0.05, 0.075, *(0.1 + 0.05 * i for i in range(17)), 0.925, 0.95]
SITE_ROWS = 32


def site_cores(app: dict, s: str) -> int | None:
    """The cores of one replica: its target's (the catalog's data), 1 for a GPU; None without a target."""
    from planner.app.targets import get_target

    name = app["sites"][s].get("target")
    if name is None:
        return None
    target = get_target(name)
    return 1 if target.is_gpu else int(target.tvm_target.get("num-cores") or 1)


def site_wait_per_unit(load: float, replicas: int, percentile: float) -> int:
    """The README's site queue: its utilization load / replicas rounded up to a level, the M/D/c
    wait at the percentile per unit of service (c = the replicas, at most SITE_ROWS), in
    thousandths, rounded up."""
    level = min(v for v in SITE_LEVELS if v >= load / replicas - 1e-12)
    c = min(replicas, SITE_ROWS)
    return math.ceil(queue_wait_ms(level * c * 1000, 1.0, c, percentile) * 1000 - 1e-9)


@dataclass
class Numbers:
    """A placement's numbers by the README; `routable` False when some flow has no route."""

    routable: bool = True
    latency_ms: float = 0.0
    cost_per_hour: float = 0.0
    finish_ms: dict[str, float] = field(default_factory=dict)
    wait_ms: dict[str, float] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    memory_mb: dict[str, float] = field(default_factory=dict)
    violations: set[str] = field(default_factory=set)  # slo, cost_cap, memory:<site>, replicas:<site>


def numbers(app: dict, placement: dict[str, str], replicas: dict[str, int] | None = None,
            catalog: bool = True) -> Numbers:
    """With `replicas` per site, else the fewest the load and each queue allow. `catalog` False:
    the sites' cores unknown, as for the property tests' apps (tests/appgen.py: no catalog)."""
    site_of = {**placement, **{k: v["site"] for k, v in app["sources"].items()},
               **{k: v["site"] for k, v in app["sinks"].items()}}
    out = Numbers()
    rate = rates(app)
    limits = app.get("constraints", {})
    percentile = limits.get("percentile", 99)

    def latency(m: str) -> float:
        return app["models"][m]["profile"][site_of[m]]["latency_ms"]

    def instances(m: str) -> int:
        return app["models"][m].get("instances", 1)

    for s in set(placement.values()):
        hosted = [m for m, p in placement.items() if p == s]
        cores = site_cores(app, s) if catalog else None
        # given numbers run on every core of a replica: its instances share them (known cores)
        share = (lambda m: 1.0) if cores is not None else (lambda m: 1 / instances(m))  # noqa: E731
        load = sum(load_replicas(rate[m], latency(m)) * share(m) for m in hosted)
        core_load = sum(load_replicas(rate[m], latency(m)) for m in hosted) if cores is not None else 0.0
        cap = limits.get("max_utilization") or 1.0
        least = max(replicas_for(load / cap), replicas_for(core_load / SITE_LEVELS[-1]),
                    *(least_replicas_for_queue(rate[m], latency(m), instances(m), limits.get("max_utilization"))
                      for m in hosted))
        out.replicas[s] = (replicas or {}).get(s, least)
        per_unit = site_wait_per_unit(core_load, out.replicas[s], percentile) if core_load else 0
        for m in hosted:
            # in whole microseconds, as every time in the model
            own = round(queue_wait_ms(rate[m], latency(m), out.replicas[s] * instances(m), percentile), 3)
            site = math.ceil(round(latency(m) * 1000) * per_unit / 1000) / 1000
            out.wait_ms[m] = max(own, site)
    transfer_ms, egress = {}, 0.0
    for i, f in enumerate(app["flows"]):
        s, t = site_of[f["from"]], site_of[f["to"]]
        if s == t:
            transfer_ms[i] = 0.0
            continue
        r = route(app, s, t, f["bytes"])
        if r is None:
            out.routable = False
            return out
        transfer_ms[i] = r.latency_ms
        egress += producer_rate(app, f["from"]) * f["bytes"] * 3600 / 1e9 * r.cost_per_gb
    for n in topological(app):
        arrive = max([out.finish_ms[f["from"]] + transfer_ms[i] for i, f in enumerate(app["flows"]) if f["to"] == n],
                     default=0.0)
        own = latency(n) + out.wait_ms[n] if n in app["models"] else 0.0
        out.finish_ms[n] = arrive + own
    out.latency_ms = max(out.finish_ms[k] for k in app["sinks"])

    compute = 0.0
    for s, spec in app["sites"].items():
        hosted = [m for m, p in placement.items() if p == s]
        if not hosted:
            continue
        out.memory_mb[s] = sum(app["models"][m]["profile"][s].get("memory_mb", 0) for m in hosted)
        compute += out.replicas[s] * spec["cost_per_hour"]
        if out.replicas[s] > spec.get("max_replicas", 1):
            out.violations.add(f"replicas:{s}")
        if out.memory_mb[s] > spec["memory_mb"] + 1e-9:
            out.violations.add(f"memory:{s}")
    out.cost_per_hour = compute + egress
    if limits.get("latency_ms") is not None and out.latency_ms > limits["latency_ms"] + SAME_MS:
        out.violations.add("slo")
    if limits.get("cost_per_hour") is not None and out.cost_per_hour > limits["cost_per_hour"] + 1e-9:
        out.violations.add("cost_cap")
    return out


def readme_numbers(app: dict, placement: dict[str, str], replicas: dict[str, int] | None = None) -> tuple[float, float]:
    """(end-to-end latency in ms, cost in $/h) of a placement (with these replicas, else the fewest)."""
    n = numbers(app, placement, replicas)
    assert n.routable, placement
    return n.latency_ms, n.cost_per_hour
