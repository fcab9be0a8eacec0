"""The solver chooses the site and the build together: with two builds per (model, site), one
faster and the other smaller, CP-SAT's optimum equals brute force over placements x builds x
replicas; a build beaten in both latency and memory never reaches the solver."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.plan.problem import build_instance
from planner.profiling.app_profiles import given_profiles
from tests.appgen import apps, checked_app
from tests.solver.test_bruteforce import assert_enough_optima, check_against_brute_force, planned


def with_second_builds(data: dict, speedup: float, memory_factor: float):
    """The app's Instance where every (model, site) also has an ONNX Runtime build `speedup`
    times as fast and `memory_factor` times the memory (the given numbers are the TVM build)."""
    planned(data)  # an app the planner refuses is no example
    checked = checked_app(data)
    table = given_profiles(checked)
    for e in list(table.entries):
        table.entries.append(e.model_copy(update={
            "engine": "onnxruntime", "latency_ms": e.latency_ms / speedup, "memory_mb": e.memory_mb * memory_factor}))
        e.engine = "tvm"
    return build_instance(checked, table)


def test_cpsat_chooses_site_and_build_as_brute_force_does():
    optima = []

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=apps(max_models=4, max_sites=3), speedup=st.sampled_from([1.5, 4.0]),
           memory=st.sampled_from([1.5, 3.0]), objective=st.sampled_from(["cost", "latency"]))
    def example(data, speedup, memory, objective):
        inst = with_second_builds(data, speedup, memory)
        for m in inst.models:
            for s in inst.options[m]:
                mb = data["models"][m]["profile"][s]["memory_mb"]
                # both builds reach the solver wherever the faster one takes more memory and still fits
                both = 0 < mb and mb * memory <= data["sites"][s]["memory_mb"]
                assert len(inst.builds(m, s)) == (2 if both else 1), (m, s)
        optima.append(check_against_brute_force(inst, objective))

    example()
    assert_enough_optima(optima, 50)


def test_a_build_beaten_in_latency_and_memory_is_dropped():
    data = {
        "name": "b", "sites": {"a": {"tier": "edge", "target": "host", "cost_per_hour": 0, "memory_mb": 1000}},
        "links": [], "models": {"m": {"profile": {"a": {"latency_ms": 10, "memory_mb": 100}}}},
        "sources": {"cam": {"site": "a", "rate_rps": 1}}, "sinks": {"out": {"site": "a"}},
        "flows": [{"from": "cam", "to": "m", "bytes": 10}, {"from": "m", "to": "out", "bytes": 10}],
    }
    checked = checked_app(data)
    table = given_profiles(checked)
    tvm = table.entries[0].model_copy(update={"engine": "tvm"})
    faster_smaller = tvm.model_copy(update={"engine": "onnxruntime", "latency_ms": 5, "memory_mb": 50})
    slower_bigger = tvm.model_copy(update={"engine": "onnxruntime", "precision": "int8", "latency_ms": 20,
                                           "memory_mb": 200})
    table.entries = [tvm, faster_smaller, slower_bigger]
    inst = build_instance(checked, table)
    assert [o.build for o in inst.builds("m", "a")] == ["onnxruntime/fp32"]
    table.entries = [tvm, tvm.model_copy(update={"engine": "onnxruntime", "latency_ms": 5, "memory_mb": 500})]
    inst = build_instance(checked, table)
    assert [o.build for o in inst.builds("m", "a")] == ["onnxruntime/fp32", "tvm/fp32"]  # fastest first, both kept
