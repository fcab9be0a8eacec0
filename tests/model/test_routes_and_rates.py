"""The README's route and rate rules at their edges: among equally fast routes the cheaper, in
either order of the links and whichever route is the cheaper; a faster route wins over a cheaper
one by as little as a microsecond; a route's price is the sum over its links; a model's rate is
the sum of its upstream sources' rates, each source counted once."""

from __future__ import annotations

import pytest

from planner.app.spec import App
from planner.model.graph import EnsembleGraph
from planner.model.network import Network
from tests.appgen import instance_of


def triangle(direct: dict, via: dict, direct_first: bool) -> list[dict]:
    """a -> c directly, or a -> b -> c over two equal links."""
    links = [{"between": ["a", "c"], **direct}, {"between": ["a", "b"], **via}, {"between": ["b", "c"], **via}]
    return links if direct_first else links[1:] + links[:1]


def app_with(links: list[dict], sources: dict | None = None, flows: list[dict] | None = None) -> dict:
    return {
        "name": "routes",
        "sites": {s: {"tier": "cloud", "target": "host", "cost_per_hour": 0, "memory_mb": 1000} for s in "abc"},
        "links": links,
        "models": {"m": {"profile": {"c": {"latency_ms": 10}}}, "n": {"profile": {"c": {"latency_ms": 20}}}},
        "sources": sources or {"cam": {"site": "a", "rate_rps": 5}},
        "sinks": {"out": {"site": "c"}},
        "flows": flows or [{"from": "cam", "to": "m", "bytes": 1_000_000}, {"from": "m", "to": "n", "bytes": 1000},
                           {"from": "n", "to": "out", "bytes": 1000}],
    }


# a -> c: 8 ms + 1 MB over 50 Mbps (160 ms) directly, or twice 4 ms + 1 MB over 100 Mbps: 168 ms each way
SLOW_DIRECT = {"bandwidth_mbps": 50, "rtt_ms": 16}
HALF_VIA = {"bandwidth_mbps": 100, "rtt_ms": 8}


@pytest.mark.parametrize("direct_first", [True, False])
@pytest.mark.parametrize("direct_price, via_price, cheaper", [
    (0.1, 0.2, ("a", "c")),  # direct 0.1 $/GB vs 0.4 over two links
    (0.5, 0.2, ("a", "b", "c")),  # direct 0.5 vs 0.4
])
def test_equally_fast_routes_go_the_cheaper_way(direct_first, direct_price, via_price, cheaper):
    links = triangle({**SLOW_DIRECT, "cost_per_gb": direct_price}, {**HALF_VIA, "cost_per_gb": via_price}, direct_first)
    route = Network(App.model_validate(app_with(links))).route("a", "c", 1_000_000)
    assert route.latency_ms == pytest.approx(168)
    assert route.sites == cheaper
    assert route.cost_per_gb == pytest.approx(min(direct_price, 2 * via_price))
    # and the Instance prices the flow cam -> m (5 requests/s of 1 MB: 18 GB/h) on that route
    inst = instance_of(app_with(links))[0]
    assert inst.flows[0].transfer("a", "c").egress_uph == round(18 * min(direct_price, 2 * via_price) * 1e6)


@pytest.mark.parametrize("direct_first", [True, False])
def test_a_microsecond_faster_beats_any_price(direct_first):
    """The price only breaks ties: a route one microsecond faster wins at 1000 times the price."""
    links = triangle({**SLOW_DIRECT, "rtt_ms": 15.998, "cost_per_gb": 1000}, {**HALF_VIA, "cost_per_gb": 0.5},
                     direct_first)
    route = Network(App.model_validate(app_with(links))).route("a", "c", 1_000_000)
    assert route.sites == ("a", "c") and route.latency_ms == pytest.approx(167.999)
    links = triangle({**SLOW_DIRECT, "rtt_ms": 16.002, "cost_per_gb": 0}, {**HALF_VIA, "cost_per_gb": 1000},
                     direct_first)
    route = Network(App.model_validate(app_with(links))).route("a", "c", 1_000_000)
    assert route.sites == ("a", "b", "c") and route.cost_per_gb == 2000


def test_a_routes_price_is_the_sum_over_its_links():
    links = [{"between": ["a", "b"], "bandwidth_mbps": 100, "rtt_ms": 2, "cost_per_gb": 0.05},
             {"between": ["b", "c"], "bandwidth_mbps": 100, "rtt_ms": 2, "cost_per_gb": 0.2}]
    route = Network(App.model_validate(app_with(links))).route("a", "c", 1000)
    assert route.cost_per_gb == pytest.approx(0.25)
    assert route.latency_ms == pytest.approx(2 * (1 + 1000 * 8 / 100e6 * 1000))  # rtt/2 + serialization, per link


def test_rates_add_up_over_sources_and_count_each_once():
    """cam (5/s) and mic (2/s) both feed m; cam also reaches n through m and directly: n gets 7/s."""
    links = [{"between": ["a", "c"], "bandwidth_mbps": 100, "rtt_ms": 2, "cost_per_gb": 0.1}]
    sources = {"cam": {"site": "a", "rate_rps": 5}, "mic": {"site": "a", "rate_rps": 2}}
    flows = [{"from": "cam", "to": "m", "bytes": 1000}, {"from": "mic", "to": "m", "bytes": 1000},
             {"from": "cam", "to": "n", "bytes": 1000}, {"from": "m", "to": "n", "bytes": 1000},
             {"from": "n", "to": "out", "bytes": 1000}]
    app = app_with(links, sources, flows)
    assert EnsembleGraph(App.model_validate(app)).rate_rps == {"m": 7, "n": 7}
    inst = instance_of(app)[0]
    assert inst.options["m"]["c"].load == 7000 * 10_000  # 7 requests/s x 10 ms, in mrps x us
    assert inst.options["n"]["c"].load == 7000 * 20_000
    # the sources' own flows at their own rates: 1000 B x 3600 / 1e9 x 0.1 $/GB = 360 micro-$/h per request/s
    assert inst.flows[0].transfer("a", "c").egress_uph == 5 * 360
    assert inst.flows[1].transfer("a", "c").egress_uph == 2 * 360


@pytest.mark.parametrize("first", ["y", "z"])
def test_of_exactly_equal_routes_the_first_found_wins(first):
    """Equal time and price (exactly, in floating point): the route through the neighbour whose
    link is listed first, whichever name sorts first; and a direct link found before an equal
    two-hop route stays."""
    other = "z" if first == "y" else "y"
    second = {"bandwidth_mbps": 1, "rtt_ms": 0, "cost_per_gb": 0}  # 125 kB: 1000 ms per link
    links = [{"between": ["a", first], **second}, {"between": ["a", other], **second},
             {"between": [first, "t"], **second}, {"between": [other, "t"], **second},
             {"between": ["a", "t"], **second, "bandwidth_mbps": 0.5}]  # 2000 ms: as fast as either
    app = {**app_with(links), "sites": {s: {"tier": "cloud", "target": "host"} for s in ("a", "c", "y", "z", "t")}}
    route = Network(App.model_validate(app)).route("a", "t", 125_000)
    assert route.sites == ("a", "t") and route.latency_ms == 2000
    app["links"] = links[:4]
    route = Network(App.model_validate(app)).route("a", "t", 125_000)
    assert route.sites == ("a", first, "t") and route.latency_ms == 2000
