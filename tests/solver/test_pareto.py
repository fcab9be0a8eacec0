"""The Pareto front is exact: every point is non-dominated, solving with its latency bound
gives its cost, and on small apps it equals the front of brute-force enumeration of every
placement through the independent evaluator."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.errors import InputError
from planner.pipeline import prepare
from planner.solver.cpsat import PlacementSolver, SolverConfig
from planner.solver.evaluate import evaluate
from planner.solver.pareto import dominated, pareto_front, with_slo
from tests import CAMERA
from tests.appgen import apps, instance_of
from tests.solver.plans import all_plans


def brute_front(inst) -> set[tuple[int, int]]:
    pts = set()
    for ev in all_plans(inst):
        if ev.feasible:
            pts.add((ev.latency_us, ev.cost_uph))
    return {p for p in pts if not any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in pts)}


def as_ints(front) -> set[tuple[int, int]]:
    return {(round(p.latency_ms * 1000), round(p.cost_per_hour * 1e6)) for p in front.points}


def check_front(inst, front) -> None:
    assert front.exact
    assert dominated(front.points) == []
    lat = [p.latency_ms for p in front.points]
    cost = [p.cost_per_hour for p in front.points]
    assert lat == sorted(lat, reverse=True) and cost == sorted(cost) and len(set(cost)) == len(cost)
    for p in front.points:
        ev = evaluate(inst, p.placement, p.builds, p.replicas)  # each point names a plan that has its numbers
        assert ev.feasible and (ev.latency_us, ev.cost_uph) == (round(p.latency_ms * 1000), round(p.cost_per_hour * 1e6))
        # minimizing cost under its own latency bound gives its cost
        sol = PlacementSolver(with_slo(inst, ev.latency_us), SolverConfig(objective="cost", time_limit_s=20,
                                                                         workers=2)).solve()
        assert sol.status == "OPTIMAL"
        assert sol.evaluate(inst).cost_uph == ev.cost_uph


EXAMPLES = 60
MIN_FRONTS = 30  # of the examples, at least this many feasible: a front of one point or more compared
MIN_SEVERAL = 15  # of the relaxed examples' fronts, at least this many of two points or more


def relaxed_app(data: dict) -> dict:
    """No SLO, cap or tight capacity, every model on every site, and faster on the dearer ones
    (its drawn latencies sorted against the sites' prices, the slowest doubled for the sites it
    had no numbers for): fronts of several points are common."""
    price = dict(zip(sorted(data["sites"]), [1.0, 0.4, 0.1, 0]))
    dearest_first = sorted(data["sites"], key=lambda s: -price[s])
    models = {}
    for name, m in data["models"].items():
        times = sorted(p["latency_ms"] for p in m["profile"].values())
        while len(times) < len(dearest_first):
            times.append(times[-1] * 2)
        memory = next(iter(m["profile"].values()))["memory_mb"]
        models[name] = {"profile": {s: {"latency_ms": t, "memory_mb": memory} for s, t in zip(dearest_first, times)}}
    sites = {n: {**s, "max_replicas": 4, "memory_mb": 4000, "cost_per_hour": price[n]} for n, s in data["sites"].items()}
    return {**data, "constraints": {}, "models": models, "sites": sites}


@pytest.mark.parametrize("relaxed", [False, True])
def test_front_equals_brute_force(relaxed):
    fronts = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=apps(max_models=4, max_sites=3))
    def example(data):
        if relaxed:
            data = relaxed_app(data)
        try:
            inst, _, _ = instance_of(data)
        except InputError:
            assume(False)
        front = pareto_front(inst, time_limit_s=20, workers=2)
        assert as_ints(front) == brute_front(inst)
        check_front(inst, front)
        if front.points:
            fronts.append(len(front.points))

    example()
    assert len(fronts) >= MIN_FRONTS, f"only {len(fronts)} of {EXAMPLES} examples had a non-empty front"
    if relaxed:
        assert sum(n > 1 for n in fronts) >= MIN_SEVERAL, f"fronts of several points: too few in {fronts}"


def test_front_of_smart_camera_without_slo():
    inst = prepare(CAMERA, ["constraints.latency_ms=null", "sites.camera.max_replicas=4",
                            "links.camera-mec.bandwidth_mbps=200"]).instance
    front = pareto_front(inst, app="smart-camera", time_limit_s=20, workers=2)
    # all on the camera; the heavy models on mec; or in the cloud; and between them more replicas
    # (shorter queues) at a higher price
    assert len({tuple(p.placement.values()) for p in front.points}) >= 3
    assert as_ints(front) == brute_front(inst)
    check_front(inst, front)


def test_pareto_cli_json_table_and_plots(tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["pareto", str(CAMERA), "-o", str(out), "--json", "--set", "constraints.latency_ms=400"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert set(data) == {"points"} and data["points"]
    for p in data["points"]:
        assert set(p) == {"latency_ms", "cost_per_hour", "placement", "replicas"}
        assert p["latency_ms"] <= 400
        assert set(p["placement"]) == {"detector", "plate-reader", "reid", "fusion"}
    for name in ("pareto.png", "pareto.svg", "pareto.md", "pareto.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (out / "pareto.svg").read_text()
    md = (out / "pareto.md").read_text()
    assert md.count("\n| ") == len(data["points"]) + 1  # header + one row per point
    r = CliRunner().invoke(cli, ["pareto", str(CAMERA), "-o", str(out)])
    assert r.exit_code == 0 and "Pareto front" in r.output and "detector@camera" in r.output


def test_pareto_of_infeasible_app_exits_3(tmp_path):
    r = CliRunner().invoke(cli, ["pareto", str(CAMERA), "-o", str(tmp_path), "--set", "constraints.latency_ms=5"])
    assert r.exit_code == 3, r.output
    assert "SLO" in r.output
