"""The ensemble graph: each node's kind, the flows a pair of nodes exchanges, and the number of
source->sink paths counted without listing them (checked against listing them, on generated apps)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from planner.app.spec import App
from planner.model.graph import EnsembleGraph
from tests.appgen import apps


def test_kinds_and_the_flows_between_a_pair():
    app = App.model_validate({
        "name": "pair",
        "sites": {"a": {"tier": "edge", "target": "host"}},
        "models": {"det": {"profile": {"a": {"latency_ms": 1}}}, "rec": {"profile": {"a": {"latency_ms": 1}}}},
        "sources": {"cam": {"site": "a", "rate_rps": 1}},
        "sinks": {"out": {"site": "a"}},
        "flows": [{"from": "cam", "to": "det", "bytes": 1}, {"from": "det", "to": "rec", "bytes": 1},
                  {"from": "det", "to": "rec", "bytes": 2}, {"from": "rec", "to": "out", "bytes": 1},
                  {"from": "det", "to": "rec", "bytes": 3}],
    })
    graph = EnsembleGraph(app)
    assert {n: graph.kind(n) for n in graph.g} == {"cam": "source", "det": "model", "rec": "model", "out": "sink"}
    assert graph.g.edges["det", "rec"]["flows"] == [1, 2, 4]  # every tensor the pair exchanges, by flow index
    assert graph.g.edges["cam", "det"]["flows"] == [0]
    assert graph.count_paths() == 1  # one path, however many tensors its hops carry


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=apps())
def test_counted_paths_are_the_listed_paths(data):
    graph = EnsembleGraph(App.model_validate(data))
    paths = list(graph.paths())
    assert graph.count_paths() == len(paths) == len({tuple(p) for p in paths})
    assert all(graph.kind(p[0]) == "source" and graph.kind(p[-1]) == "sink" for p in paths)
