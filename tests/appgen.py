"""Random small apps for property tests: DAGs with fan-out and fan-in, one or two sources and
sinks, multi-hop link graphs with several priced links per route and equally fast routes at
different prices.

Most apps are built around a witness: a placement drawn first, whose sites are joined by links,
and whose numbers (by the README's formulas, tests/plan/readme_numbers.py) set the SLO, the cost
cap, each site's memory and max_replicas exactly: the witness is feasible with every one of these
at its boundary, so the app is feasible and boundary-exact. The rest have loose random
constraints (some infeasible, some with sites no link reaches). With `broken`, one of the
witness's bounds is then tightened by one unit (a microsecond, a kilobyte, a micro-dollar, a
replica): apps that are mostly infeasible, for the explanation tests.

Every number is exact in the solver's units (whole microseconds, kilobytes, micro-dollars), so
"exactly at the boundary" survives the conversion to integers."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import strategies as st

from planner.app.loader import LoadedApp
from planner.app.sites import ResolvedSite
from planner.app.spec import App
from planner.app.yaml_lines import LineMap
from planner.model.checked_app import CheckedApp
from planner.model.graph import EnsembleGraph
from planner.model.network import Network
from planner.plan.problem import build_instance
from planner.profiling.app_profiles import given_profiles
from tests.plan import readme_numbers as readme

# bytes that are multiples of 1000 over these bandwidths (and their halves) take whole microseconds
BANDWIDTHS = [10, 100, 1000]
RTTS = [0, 1, 8, 30]
PRICES_PER_GB = [0, 0.05, 0.2]
FLOW_BYTES = [1000, 100_000, 2_000_000]


@st.composite
def _link(draw, a: str, b: str) -> dict:
    return {"between": [a, b], "bandwidth_mbps": draw(st.sampled_from(BANDWIDTHS)),
            "rtt_ms": draw(st.sampled_from(RTTS)), "cost_per_gb": draw(st.sampled_from(PRICES_PER_GB))}


def _links(draw, sites: list[str], chain: bool) -> dict[frozenset, dict]:
    pairs = list(itertools.combinations(sites, 2))
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, min_size=1, max_size=len(pairs)))
    if chain:  # a chain through all sites gives multi-hop routes
        chosen = list(dict.fromkeys(chosen + list(zip(sites, sites[1:]))))
    links = {frozenset(p): draw(_link(*p)) for p in chosen}
    if len(sites) >= 3 and draw(st.booleans()):
        # equally fast routes: a -> c -> b, and a direct a -> b link with the two hops' round
        # trips and half their bandwidth; the prices are drawn apart, so the cheaper must win
        a, c, b = draw(st.permutations(sites))[:3]
        bw, rtt1, rtt2 = (draw(st.sampled_from(v)) for v in (BANDWIDTHS, RTTS, RTTS))
        price = lambda: draw(st.sampled_from([0.05, 0.1, 0.2, 0.4]))  # noqa: E731
        links[frozenset((a, c))] = {"between": [a, c], "bandwidth_mbps": bw, "rtt_ms": rtt1, "cost_per_gb": price()}
        links[frozenset((c, b))] = {"between": [c, b], "bandwidth_mbps": bw, "rtt_ms": rtt2, "cost_per_gb": price()}
        links[frozenset((a, b))] = {"between": [a, b], "bandwidth_mbps": bw / 2, "rtt_ms": rtt1 + rtt2,
                                    "cost_per_gb": price()}
    return links


@st.composite
def app_and_witness(draw, max_models: int = 6, max_sites: int = 4, broken: bool = False) -> tuple[dict, dict | None]:
    """(app dict, witness placement or None for a loose app)."""
    witness_mode = broken or draw(st.integers(0, 3)) > 0  # 3 in 4 apps have a witness
    n_sites = draw(st.integers(2, max_sites))
    sites = [f"s{i}" for i in range(n_sites)]
    site_specs = {
        s: {
            "tier": draw(st.sampled_from(["edge", "base-station", "cloud"])),
            "target": "host",
            "cost_per_hour": draw(st.sampled_from([0, 0.1, 0.25, 0.4, 1.0])),
            "memory_mb": draw(st.sampled_from([300, 700, 4000])),
            "max_replicas": draw(st.integers(1, 4)),
        }
        for s in sites
    }
    links = _links(draw, sites, chain=not witness_mode and draw(st.booleans()))

    n_models = draw(st.integers(1, max_models))
    models = [f"m{i}" for i in range(n_models)]
    sources = {"src": {"site": draw(st.sampled_from(sites)), "rate_rps": draw(st.sampled_from([0.5, 5, 20]))}}
    flows = [{"from": "src", "to": models[0], "bytes": draw(st.sampled_from(FLOW_BYTES))}]
    for i in range(1, n_models):
        # fan-in: one or two earlier producers
        preds = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=2, unique=True))
        for p in preds:
            flows.append({"from": models[p], "to": models[i], "bytes": draw(st.sampled_from(FLOW_BYTES))})
    if draw(st.booleans()):  # a second source, feeding one or two models: their rates add up downstream
        sources["src2"] = {"site": draw(st.sampled_from(sites)), "rate_rps": draw(st.sampled_from([0.5, 2, 5]))}
        for m in draw(st.lists(st.sampled_from(models), min_size=1, max_size=2, unique=True)):
            flows.append({"from": "src2", "to": m, "bytes": draw(st.sampled_from(FLOW_BYTES))})
    sinks = {"out": {"site": draw(st.sampled_from(sites))}}
    # every model without a consumer feeds the sink (so fan-out ends in fan-in at the sink)
    used = {f["from"] for f in flows}
    for m in models:
        if m not in used:
            flows.append({"from": m, "to": "out", "bytes": draw(st.sampled_from([1000, 10_000]))})
    if draw(st.integers(0, 3)) == 0:  # a second sink: the latency is the latest arrival at either
        sinks["out2"] = {"site": draw(st.sampled_from(sites))}
        flows.append({"from": draw(st.sampled_from(models)), "to": "out2", "bytes": 1000})

    model_specs = {}
    for m in models:
        allowed = draw(st.lists(st.sampled_from(sites), min_size=1, max_size=n_sites, unique=True))
        model_specs[m] = {
            "profile": {s: {"latency_ms": draw(st.sampled_from([2, 10, 40, 120, 300])),
                            "memory_mb": draw(st.sampled_from([0, 50, 200, 600]))} for s in allowed},
        }
        if len(allowed) > 1 and draw(st.integers(0, 3)) == 0:  # pinned to some of its profiled sites
            model_specs[m]["sites"] = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=len(allowed) - 1,
                                                    unique=True))
    app = {"name": "random", "sites": site_specs, "links": list(links.values()), "models": model_specs,
           "sources": sources, "sinks": sinks, "flows": flows, "constraints": {}}

    if not witness_mode:
        if draw(st.booleans()):
            app["constraints"]["latency_ms"] = draw(st.sampled_from([50, 150, 400, 1000]))
        if draw(st.booleans()):
            app["constraints"]["cost_per_hour"] = draw(st.sampled_from([0.2, 0.5, 1.5]))
        return app, None

    witness = {m: draw(st.sampled_from(readme.candidate_sites(app, m))) for m in models}
    for m, s in witness.items():  # the witness fits wherever its sites' memory is set below
        app["sites"][s]["memory_mb"] = max(app["sites"][s]["memory_mb"], 4000)
    _join(draw, app, links, {*witness.values(), *(v["site"] for v in [*sources.values(), *sinks.values()])})
    _set_bounds_at(draw, app, witness, broken)
    return app, witness


def _join(draw, app: dict, links: dict[frozenset, dict], used: set[str]) -> None:
    """Links along a chain through the sites the witness uses, where none is yet."""
    chain = sorted(used)
    for a, b in zip(chain, chain[1:]):
        if readme.route(app, a, b, 1000) is None:
            links[frozenset((a, b))] = draw(_link(a, b))
            app["links"] = list(links.values())


def _set_bounds_at(draw, app: dict, witness: dict[str, str], broken: bool) -> None:
    """The SLO, the cost cap, memory and max_replicas of the witness's sites at its own numbers
    (each bound present or not at random); with `broken`, one of them a unit below."""
    n = readme.numbers(app, witness, catalog=False)
    assert n.routable
    bounds: list[tuple] = []
    for s, mb in n.memory_mb.items():
        if mb > 0 and draw(st.booleans()):
            app["sites"][s]["memory_mb"] = mb
            bounds.append(("sites", s, "memory_mb", 0.001))
        app["sites"][s]["max_replicas"] = n.replicas[s]
        if n.replicas[s] > 1:
            bounds.append(("sites", s, "max_replicas", 1))
    if draw(st.integers(0, 3)) > 0:
        app["constraints"]["latency_ms"] = round(n.latency_ms, 3)
        bounds.append(("constraints", None, "latency_ms", 0.001))
    if draw(st.booleans()):
        app["constraints"]["cost_per_hour"] = round(n.cost_per_hour, 6)
        if n.cost_per_hour > 0:
            bounds.append(("constraints", None, "cost_per_hour", 1e-6))
    if broken and bounds:
        kind, name, key, unit = draw(st.sampled_from(bounds))
        spec = app[kind][name] if name else app[kind]
        spec[key] = round(spec[key] - unit, 6)


def apps(max_models: int = 6, max_sites: int = 4, broken: bool = False) -> st.SearchStrategy[dict]:
    return app_and_witness(max_models, max_sites, broken).map(lambda aw: aw[0])


def changed(app: dict, **changes) -> dict:
    """`app` with each dotted key path (`sites.a.memory_mb`) set to its value, in place."""
    for path, value in changes.items():
        *keys, last = path.split(".")
        spec = app
        for k in keys:
            spec = spec[k]
        spec[last] = value
    return app


def stub_sites(app: App) -> dict[str, ResolvedSite]:
    """Sites resolved from their app.yaml numbers alone (the property tests need no catalog)."""
    return {
        n: ResolvedSite(name=n, tier=s.tier, target=None, target_name=str(s.target), cost_per_hour=s.cost_per_hour,
                        memory_mb=s.memory_mb, max_replicas=s.max_replicas, rpc=None)
        for n, s in app.sites.items()
    }


def checked_app(data: dict) -> CheckedApp:
    """App dict -> CheckedApp, bypassing file, catalog and checks."""
    app = App.model_validate(data)
    loaded = LoadedApp(app=app, path=Path("random.yaml"), lines=LineMap())
    return CheckedApp(loaded=loaded, sites=stub_sites(app), graph=EnsembleGraph(app), network=Network(app))


def instance_of(data: dict):
    """App dict -> (Instance, graph, network), from the app's given profiles."""
    checked = checked_app(data)
    return build_instance(checked, given_profiles(checked)), checked.graph, checked.network


def with_site_cores(inst, shares: list[int]):
    """The instance with every site's cores known (its generated sites have no target): each build
    takes 1/share of them per run (its core time latency / share), its core load its load / share."""
    from planner.plan.problem import SITE_TABLE_ROWS, site_wait_table

    table = site_wait_table(SITE_TABLE_ROWS, inst.percentile)
    sites = [s.model_copy(update={"waits": table}) for s in inst.sites]

    def cored(o, i):
        share = shares[i % len(shares)]
        return o.model_copy(update={"core_us": -(-o.latency_us // share), "core_load": -(-o.load // share)})

    i = 0
    options, more = {}, {}
    for m in inst.models:
        options[m] = {}
        for s, o in inst.options[m].items():
            options[m][s] = cored(o, i)
            i += 1
        for s, extra in inst.more_builds.get(m, {}).items():
            more.setdefault(m, {})[s] = [cored(o, i + k) for k, o in enumerate(extra)]
    return inst.model_copy(update={"sites": sites, "options": options, "more_builds": more})
