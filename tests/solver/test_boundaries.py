"""Each bound holds with equality: a latency equal to the SLO, memory equal to the capacity, a load
of exactly max_replicas and a cost equal to the cap are feasible, for CP-SAT and the evaluator
alike, and one unit more is not. And the objective's documented tie-break in both directions:
`cost` takes the faster of two equally cheap plans, `latency` the cheaper of two equally fast
ones, whichever site the better one is."""

from __future__ import annotations

import pytest

from planner.errors import InputError
from planner.solver import constraints
from planner.solver.cpsat import PlacementSolver, SolverConfig
from planner.solver.evaluate import evaluate
from tests.appgen import changed, instance_of


def one_model_app(**changes) -> dict:
    """camera -> m -> screen, all on site `a`: m takes 40 ms and 300 MB there at 5 requests/s
    (0.2 replicas), the transfers are free (same site). Latency 40 ms, cost $0.40/h. The SLO
    bounds the median (percentile 50): one in five requests waits for m, so the median waits
    for nothing and the bounds below are the model's own."""
    app = {
        "name": "edge",
        "sites": {"a": {"tier": "edge", "target": "host", "cost_per_hour": 0.4, "memory_mb": 1000, "max_replicas": 1}},
        "links": [],
        "models": {"m": {"profile": {"a": {"latency_ms": 40, "memory_mb": 300}}}},
        "sources": {"camera": {"site": "a", "rate_rps": 5}},
        "sinks": {"screen": {"site": "a"}},
        "flows": [{"from": "camera", "to": "m", "bytes": 1000}, {"from": "m", "to": "screen", "bytes": 1000}],
        "constraints": {"percentile": 50},
    }
    return changed(app, **changes)


def verdicts(app: dict, placement: dict[str, str] | None = None) -> tuple[set[str], dict[str, str]]:
    """(the evaluator's violations of the only placement, CP-SAT's status for each objective)."""
    inst = instance_of(app)[0]
    ev = evaluate(inst, placement or {"m": "a"})
    statuses = {obj: PlacementSolver(inst, SolverConfig(objective=obj, time_limit_s=10, workers=1)).solve().status
                for obj in ("cost", "latency")}
    return {str(k) for k in ev.violated}, statuses


FEASIBLE = (set(), {"cost": "OPTIMAL", "latency": "OPTIMAL"})


def infeasible(key) -> tuple[set[str], dict[str, str]]:
    return {str(key)}, {"cost": "INFEASIBLE", "latency": "INFEASIBLE"}


@pytest.mark.parametrize("slo_ms, expected", [(40, FEASIBLE), (39.999, infeasible(constraints.SLO))])
def test_latency_equal_to_the_slo_is_feasible(slo_ms, expected):
    assert verdicts(one_model_app(**{"constraints.latency_ms": slo_ms})) == expected


@pytest.mark.parametrize("memory_mb, expected", [(300, FEASIBLE), (299.999, None)])
def test_memory_equal_to_the_capacity_is_feasible(memory_mb, expected):
    """One model exactly the site's size is an option there; a kilobyte less and no site may host it."""
    app = one_model_app(**{"sites.a.memory_mb": memory_mb})
    if expected is None:
        with pytest.raises(InputError, match="no site may host 'm'"):
            instance_of(app)
    else:
        assert verdicts(app) == expected


@pytest.mark.parametrize("memory_mb, expected", [(500, FEASIBLE), (499.999, infeasible(constraints.memory("a")))])
def test_models_that_fill_the_memory_exactly_are_feasible(memory_mb, expected):
    """Two models, 300 + 200 MB, on a site of 500 MB (each fits alone, both only exactly)."""
    app = one_model_app(**{"sites.a.memory_mb": memory_mb})
    app["models"]["n"] = {"profile": {"a": {"latency_ms": 10, "memory_mb": 200}}}
    app["flows"].append({"from": "m", "to": "n", "bytes": 1000})
    app["flows"][1]["from"] = "n"
    assert verdicts(app, {"m": "a", "n": "a"}) == expected


@pytest.mark.parametrize("latency_ms, replicas, expected", [
    (199.999, 1, FEASIBLE),  # 5 requests/s x 0.199999 s: one replica almost always busy, its queue still drains
    (200, 2, infeasible(constraints.replicas("a"))),  # exactly always busy: the queue never drains, a second replica
    (0.001, 1, FEASIBLE),  # any load at all needs one replica
])
def test_a_load_just_under_max_replicas_is_feasible(latency_ms, replicas, expected):
    app = one_model_app(**{"models.m.profile.a.latency_ms": latency_ms})
    inst = instance_of(app)[0]
    assert evaluate(inst, {"m": "a"}).replicas == {"a": replicas}
    assert verdicts(app) == expected


@pytest.mark.parametrize("cap, expected", [(0.4, FEASIBLE), (0.399999, infeasible(constraints.COST_CAP))])
def test_cost_equal_to_the_cap_is_feasible(cap, expected):
    assert verdicts(one_model_app(**{"constraints.cost_per_hour": cap})) == expected


def two_sites_app(latency_ms: dict[str, float], price: dict[str, float]) -> dict:
    """The source and sink on `hub`, joined to `a` and `b` by identical free links; m runs on
    `a` or `b`: the two plans differ only in m's latency and the site's price."""
    link = {"bandwidth_mbps": 100, "rtt_ms": 8, "cost_per_gb": 0}
    return {
        "name": "ties",
        "sites": {"hub": {"tier": "edge", "target": "host", "cost_per_hour": 0, "memory_mb": 1000},
                  **{s: {"tier": "cloud", "target": "host", "cost_per_hour": price[s], "memory_mb": 1000}
                     for s in ("a", "b")}},
        "links": [{"between": ["hub", "a"], **link}, {"between": ["hub", "b"], **link}],
        "models": {"m": {"profile": {s: {"latency_ms": latency_ms[s], "memory_mb": 10} for s in ("a", "b")}}},
        "sources": {"camera": {"site": "hub", "rate_rps": 1}},
        "sinks": {"screen": {"site": "hub"}},
        "flows": [{"from": "camera", "to": "m", "bytes": 1000}, {"from": "m", "to": "screen", "bytes": 1000}],
        "constraints": {},
    }


@pytest.mark.parametrize("better", ["a", "b"])
def test_cost_objective_takes_the_faster_of_equally_cheap_plans(better):
    worse = "b" if better == "a" else "a"
    inst = instance_of(two_sites_app({better: 10, worse: 20}, {"a": 0.4, "b": 0.4}))[0]
    sol = PlacementSolver(inst, SolverConfig(objective="cost", time_limit_s=10, workers=1)).solve()
    assert sol.status == "OPTIMAL" and sol.placement == {"m": better}


@pytest.mark.parametrize("better", ["a", "b"])
def test_latency_objective_takes_the_cheaper_of_equally_fast_plans(better):
    worse = "b" if better == "a" else "a"
    inst = instance_of(two_sites_app({"a": 10, "b": 10}, {better: 0.1, worse: 0.4}))[0]
    sol = PlacementSolver(inst, SolverConfig(objective="latency", time_limit_s=10, workers=1)).solve()
    assert sol.status == "OPTIMAL" and sol.placement == {"m": better}
