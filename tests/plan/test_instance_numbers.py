"""Every number of the solver's Instance follows the README's formulas: each transfer's time and
egress price, each option's time, memory and load, each site's price and capacity, checked on
generated apps against tests/plan/readme_numbers.py (plain floating point, no planner code). The
CP-SAT model and the evaluator both read the Instance, so they cannot catch a mistake in it: this
test can. The evaluator's numbers for placements of the same apps are checked the same way."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.errors import InputError
from planner.plan.problem import build_instance
from planner.profiling.table import NodeProfile, ProfileTable
from planner.solver.evaluate import evaluate
from planner.solver.instance import REPLICA_CAPACITY
from tests.appgen import app_and_witness, changed, checked_app, instance_of
from tests.plan import readme_numbers as readme

EXAMPLES = 150
# apps whose flows can all be routed somewhere (the rest must be refused as input): most of them
MIN_CHECKED = 120


def within_rounding(integer: int, exact: float, scale: float) -> bool:
    """`integer` is `exact` (in the README's unit) converted to the solver's unit and rounded once."""
    return abs(integer - exact * scale) <= 0.5 + 1e-9 * abs(exact * scale)  # and floating-point noise


def check_instance(app: dict, inst) -> None:
    sites = {s.name: s for s in inst.sites}
    assert set(sites) == set(app["sites"])
    for name, spec in app["sites"].items():
        assert within_rounding(sites[name].cost_uph, spec["cost_per_hour"], 1e6)
        assert within_rounding(sites[name].memory_kb, spec["memory_mb"], 1000)
        assert sites[name].max_replicas == spec["max_replicas"]

    rate = readme.rates(app)
    assert set(inst.models) == set(app["models"])
    for m in app["models"]:
        pairs = ((inst.options[m], readme.options(app, m)), (inst.unpinned.get(m, {}), readme.unpinned(app, m)))
        for got, want in pairs:
            assert set(got) == set(want), m
            for s, p in want.items():
                opt = got[s]
                assert within_rounding(opt.latency_us, p["latency_ms"], 1000) and opt.latency_us >= 1
                assert within_rounding(opt.memory_kb, p.get("memory_mb", 0), 1000)
                # load in replicas: rate x latency / 1000, rate and latency each rounded once
                exact = readme.load_replicas(rate[m], p["latency_ms"])
                rounding = 1e-6 * (1 + exact) + 0.0005 * (rate[m] + p["latency_ms"]) / 1000
                assert abs(opt.load / REPLICA_CAPACITY - exact) <= rounding, (m, s)

    assert [f.index for f in inst.flows] == list(range(len(app["flows"])))
    for f in inst.flows:
        want = readme.transfers(app, f.index)
        got = {(t.src_site, t.dst_site): t for t in f.transfers}
        assert set(got) == set(want), (f.src, f.dst)
        assert f.nbytes == app["flows"][f.index]["bytes"]
        for pair, t in want.items():
            assert within_rounding(got[pair].latency_us, t.latency_ms, 1000), (f.src, f.dst, pair)
            assert within_rounding(got[pair].egress_uph, t.egress_per_hour, 1e6), (f.src, f.dst, pair)

    assert inst.fixed == {**{k: v["site"] for k, v in app["sources"].items()},
                          **{k: v["site"] for k, v in app["sinks"].items()}}
    limits = app["constraints"]
    assert (inst.slo_us is None) == (limits.get("latency_ms") is None)
    if inst.slo_us is not None:
        assert within_rounding(inst.slo_us, limits["latency_ms"], 1000)
    assert (inst.cost_cap_uph is None) == (limits.get("cost_per_hour") is None)
    if inst.cost_cap_uph is not None:
        assert within_rounding(inst.cost_cap_uph, limits["cost_per_hour"], 1e6)


def check_evaluation(app: dict, inst, placement: dict[str, str]) -> None:
    """The evaluator's latency, cost, replicas and verdict agree with the README's for a placement."""
    want = readme.numbers(app, placement, catalog=False)
    ev = evaluate(inst, placement)
    if not want.routable:
        assert "route" in {v.key.family.value for v in ev.violations}
        return
    terms = len(app["flows"]) + len(app["models"])  # each rounded to the microsecond once
    assert abs(ev.latency_us - want.latency_ms * 1000) <= 0.5 * terms + 1e-6, placement
    assert ev.replicas == want.replicas, placement
    assert abs(ev.cost_uph - want.cost_per_hour * 1e6) <= 0.5 * (len(app["flows"]) + len(app["sites"])) + 1e-3
    got = {str(v.key) for v in ev.violations}
    assert got == want.violations, (placement, ev.violations)


def test_instance_and_evaluator_follow_the_readme():
    checked = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(aw=app_and_witness(max_models=6, max_sites=5), data=st.data())
    def example(aw, data):
        app, witness = aw
        hostless = [m for m in app["models"] if not readme.options(app, m)]
        unroutable = [f for i, f in enumerate(app["flows"]) if not readme.transfers(app, i) and not set(
            readme.endpoint_sites(app, f["from"])) & set(readme.endpoint_sites(app, f["to"]))]
        if hostless or unroutable:  # the README's model has no numbers for it: the planner must refuse it as input
            with pytest.raises(InputError, match="no site may host" if hostless else "no route joins"):
                instance_of(app)
            return
        inst = instance_of(app)[0]
        check_instance(app, inst)
        if witness is not None:  # feasible, with its bounds exactly at its numbers
            check_evaluation(app, inst, witness)
            assert evaluate(inst, witness).feasible
        everything = list(itertools.product(*(list(readme.options(app, m)) for m in inst.models)))
        for combo in data.draw(st.lists(st.sampled_from(everything), max_size=8)):
            check_evaluation(app, inst, dict(zip(inst.models, combo)))
        checked.append(app)

    example()
    assert len(checked) >= MIN_CHECKED, f"only {len(checked)} of {EXAMPLES} apps were checked (the rest: input errors)"


def small_app(**changes) -> dict:
    """cam (on a) -> m (on a or b) -> out (on b), over one priced link."""
    app = {
        "name": "small",
        "sites": {s: {"tier": "cloud", "target": "host", "cost_per_hour": 0.5, "memory_mb": 1000} for s in "ab"},
        "links": [{"between": ["a", "b"], "bandwidth_mbps": 100, "rtt_ms": 2, "cost_per_gb": 1}],
        "models": {"m": {"profile": {"a": {"latency_ms": 10, "memory_mb": 100},
                                     "b": {"latency_ms": 5, "memory_mb": 100}}}},
        "sources": {"cam": {"site": "a", "rate_rps": 5}},
        "sinks": {"out": {"site": "b"}},
        "flows": [{"from": "cam", "to": "m", "bytes": 1000}, {"from": "m", "to": "out", "bytes": 1000}],
        "constraints": {},
    }
    return changed(app, **changes)


def test_tiny_rates_and_times_never_round_to_zero():
    """The smallest unit is the floor: a model's time is at least 1 microsecond and its rate at
    least 1 milli-request/s, so a model always has some load."""
    inst = instance_of(small_app(**{"sources.cam.rate_rps": 0.0001, "models.m.profile.a.latency_ms": 0.0004}))[0]
    assert inst.options["m"]["a"].latency_us == 1 and inst.options["m"]["a"].load == 1 * 1
    assert inst.options["m"]["b"].latency_us == 5000 and inst.options["m"]["b"].load == 1 * 5000
    inst = instance_of(small_app(**{"sources.cam.rate_rps": 0.002, "models.m.profile.a.latency_ms": 0.002}))[0]
    assert (inst.options["m"]["a"].latency_us, inst.options["m"]["a"].load) == (2, 2 * 2)


def test_egress_is_exact_to_the_micro_dollar_at_scale():
    """1000 requests/s of 10 MB over a $1/GB link: 36,000 $/h, to the micro-dollar."""
    inst = instance_of(small_app(**{"sources.cam.rate_rps": 1000, "flows": [
        {"from": "cam", "to": "m", "bytes": 10_000_000}, {"from": "m", "to": "out", "bytes": 1000}]}))[0]
    assert inst.flows[0].transfer("a", "b").egress_uph == 36_000_000_000
    assert [(t.src_site, t.dst_site) for t in inst.flows[0].transfers] == [("a", "b")]  # a -> a is no transfer


def test_a_site_the_profiler_excluded_is_no_option():
    """Without numbers for a site (the model did not compile there), the model may use the others."""
    app = small_app()
    app["sites"]["c"] = {"tier": "edge", "target": "host", "cost_per_hour": 0, "memory_mb": 1000}
    app["links"].append({"between": ["b", "c"], "bandwidth_mbps": 100, "rtt_ms": 2})
    app["models"]["m"] = {"onnx": "m.onnx", "sites": ["a", "c", "b"]}
    checked = checked_app(app)
    table = ProfileTable(entries=[NodeProfile(node="m", site=s, latency_ms=3, memory_mb=1, provenance="estimated")
                                  for s in ("a", "b")])
    assert list(build_instance(checked, table).options["m"]) == ["a", "b"]


def test_a_model_no_site_can_hold_is_an_input_error_at_the_model():
    app = small_app(**{"sites.a.memory_mb": 99.999, "sites.b.memory_mb": 50})
    with pytest.raises(InputError) as err:
        instance_of(app)
    assert err.value.message == "no site may host 'm': it needs more memory than a (99.999 MB), b (50 MB)"
    assert err.value.key == ("models", "m")
    app = small_app()
    app["models"]["m"]["sites"] = ["a"]
    app["models"]["m"]["profile"] = {"b": {"latency_ms": 1}}  # numbers only where its `sites:` excludes it
    with pytest.raises(InputError) as err:
        instance_of(app)
    assert err.value.message == "no site may host 'm'" and err.value.key == ("models", "m")


def test_a_flow_no_link_can_carry_is_an_input_error_at_the_flow():
    app = small_app(links=[])
    app["models"]["m"]["profile"].pop("b")
    with pytest.raises(InputError) as err:
        instance_of(app)
    assert err.value.message == "flow m -> out: no route joins the sites where its ends may run"
    assert err.value.key == ("flows", 1)


def test_a_plan_longer_than_the_solver_integers_is_an_input_error_at_the_flow():
    """The largest flow (2**40 bytes) on the slowest link (1 kbit/s): longer than the solver's
    2**48 microseconds, refused naming the flow rather than overflowing inside CP-SAT."""
    app = small_app()
    app["flows"][0]["bytes"] = 2**40
    app["links"][0]["bandwidth_mbps"] = 0.001
    year_s = 365 * 86400
    flow_years = 2**40 * 8 / (0.001 * 1e6) / year_s  # the rtt and model times do not show in 3 digits
    with pytest.raises(InputError) as err:
        instance_of(app)
    limit_years = 2**48 / 1e6 / year_s
    assert err.value.message == (f"a plan could take {flow_years:,.3g} years, more than the {limit_years:,.3g} years "
                                 "the solver's integers hold; the largest part: flow cam -> m from a to b "
                                 f"({flow_years:,.3g} years); check the numbers' units")
    assert err.value.key == ("flows", 0)


def test_a_flow_without_bytes_carries_the_consumers_declared_input():
    app = small_app()
    app["models"]["m"]["inputs"] = {"x": [1, 64]}  # float32: 256 bytes
    app["flows"][0].pop("bytes")
    assert instance_of(app)[0].flows[0].nbytes == 256


def test_the_instance_answers_by_name():
    app = small_app()
    app["models"]["m"]["sites"] = ["b"]
    inst = instance_of(app)[0]
    assert inst.allowed("m") == ["b"] and inst.allowed("m", unpinned=True) == ["b", "a"]
    assert inst.allowed("cam") == ["a"] and inst.site("b").name == "b"
    with pytest.raises(KeyError, match="'nowhere'"):
        inst.site("nowhere")
