"""The evaluator's words: each violation names its constraint and both numbers in the user's
units (plan.json lists them for every baseline), and a placement it cannot score is refused
naming the model. Its numbers are checked against the README in tests/plan/test_instance_numbers.py."""

from __future__ import annotations

import pytest

from planner.solver import constraints
from planner.solver.evaluate import evaluate
from planner.solver.instance import FlowData, Instance, Option, SiteData, Transfer
from tests.appgen import instance_of
from tests.solver.test_boundaries import one_model_app


def messages(app: dict, placement: dict[str, str]) -> dict[str, str]:
    return {str(v.key): v.message for v in evaluate(instance_of(app)[0], placement).violations}


def test_each_violation_says_what_and_by_how_much():
    app = one_model_app(**{"constraints.latency_ms": 39.5, "constraints.cost_per_hour": 0.654321,
                           "sites.a.memory_mb": 320,
                           "models.m.profile.a.latency_ms": 240})  # with n: 5/s x 241.5 ms, 1.2 replicas: 2
    app["models"]["n"] = {"profile": {"a": {"latency_ms": 1.5, "memory_mb": 20.5}}}
    app["flows"] += [{"from": "camera", "to": "n", "bytes": 1000}, {"from": "n", "to": "screen", "bytes": 1000}]
    assert messages(app, {"m": "a", "n": "a"}) == {
        "replicas:a": "a needs 2 replicas, max_replicas is 1",
        "memory:a": "a needs 320.5 MB, has 320 MB",
        "slo": "p50 latency 240 ms exceeds the SLO of 39.5 ms",
        "cost_cap": "cost 0.8 $/h exceeds the cap of 0.654321 $/h",
    }


def test_a_pin_and_a_missing_route_are_named():
    app = one_model_app()
    app["sites"]["b"] = {"tier": "cloud", "target": "host", "cost_per_hour": 0, "memory_mb": 1000}
    app["models"]["m"]["profile"]["b"] = {"latency_ms": 1}
    app["models"]["m"]["sites"] = ["a"]
    app["links"] = [{"between": ["a", "b"], "bandwidth_mbps": 100, "rtt_ms": 2}]
    assert messages(app, {"m": "b"}) == {"pin:m": "m runs on b, outside its `sites:`"}
    inst = instance_of(app)[0]
    no_link = inst.model_copy(update={"flows": [f.model_copy(update={"transfers": []}) for f in inst.flows]})
    ev = evaluate(no_link, {"m": "b"})
    assert [(str(v.key), v.message) for v in ev.violations] == [
        ("pin:m", "m runs on b, outside its `sites:`"), ("route", "flow camera->m: no route from a to b")]
    assert not ev.feasible and ev.violated == {constraints.pin("m"), constraints.ROUTE}


def test_a_placement_it_cannot_score_is_refused_naming_the_model():
    inst = instance_of(one_model_app())[0]
    with pytest.raises(ValueError, match="^m is not placed$"):
        evaluate(inst, {})
    with pytest.raises(ValueError, match="^m cannot run on b$"):
        evaluate(inst, {"m": "b"})


def test_a_node_nothing_feeds_starts_at_zero():
    """The evaluator scores any Instance: a model without inputs starts at time 0, like a source."""
    inst = Instance(
        sites=[SiteData(name="a", cost_uph=0, memory_kb=1000, max_replicas=1),
               SiteData(name="b", cost_uph=0, memory_kb=1000, max_replicas=1)],
        models=["m"], options={"m": {"a": Option(latency_us=7, memory_kb=0, load=7)}},
        fixed={"out": "b"}, sources=[], sinks=["out"],
        flows=[FlowData(index=0, src="m", dst="out", nbytes=1,
                        transfers=[Transfer(src_site="a", dst_site="b", latency_us=3, egress_uph=0)])])
    ev = evaluate(inst, {"m": "a"})
    assert (ev.start_us, ev.finish_us, ev.latency_us) == ({"m": 0, "out": 10}, {"m": 7, "out": 10}, 10)
