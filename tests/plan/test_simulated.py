"""plan.json `simulated`: the chosen plan simulated at its planned rate, each site's models sharing
its cores (planner.plan.simulated), through `planner solve` on small apps with given profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.model.queueing import Queue

# Two models on the phone (an rpi5: 4 cores), each given, so each runs on all 4 cores: the phone
# is one server for both, while the solver gives each its own.
SHARED = """
name: shared
sites:
  phone: {{tier: edge, target: rpi5, cost_per_hour: 0, memory_mb: 4096, max_replicas: 1}}
links: []
models:
  a: {{profile: {{phone: {{latency_ms: 40, memory_mb: 10}}}}}}
  b: {{profile: {{phone: {{latency_ms: 60, memory_mb: 10}}}}}}
sources: {{cam: {{site: phone, rate_rps: {rate}}}{more}}}
sinks: {{screen: {{site: phone}}}}
flows:
  - {{from: cam, to: a, bytes: 1000}}
  - {{from: a, to: b, bytes: 1000}}
  - {{from: b, to: screen, bytes: 100}}{more_flows}
constraints: {{latency_ms: {slo}}}
objective: cost
"""


def solve(tmp_path: Path, rate: float, slo: float, second_source_rate: float | None = None) -> dict:
    more = "" if second_source_rate is None else f", cam2: {{site: phone, rate_rps: {second_source_rate}}}"
    more_flows = "" if second_source_rate is None else "\n  - {from: cam2, to: b, input: y, bytes: 10}"
    tmp_path.mkdir(parents=True, exist_ok=True)
    app = tmp_path / "app.yaml"
    app.write_text(SHARED.format(rate=rate, slo=slo, more=more, more_flows=more_flows))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["solve", str(app), "-o", str(out), "--no-bundles"])
    assert r.exit_code == 0, r.output
    return json.loads((out / "plan.json").read_text())


def test_alone_the_simulation_is_the_plans_latency(tmp_path):
    """At a rate where requests never meet, a request takes the two models one after the other."""
    plan = solve(tmp_path, rate=0.01, slo=1000)
    s = plan["simulated"]
    assert s["status"] == "ok" and s["requests"] == 10_000
    assert s["p50_ms"] == pytest.approx(100.0, abs=0.01) and s["tail_ms"] == pytest.approx(100.0, abs=0.01)
    assert plan["latency_ms"] == pytest.approx(100.0, abs=0.01)
    assert s["cores_utilization"] == {"phone": pytest.approx(0.01 * 0.1 * 4 / 4)}


def test_models_sharing_a_site_wait_for_each_other_where_the_plan_does_not(tmp_path):
    """7.5 rps x 100 ms: the phone is 75 % busy. Each model's own queue (30 and 45 % busy) waits
    less than its share of the phone's cores as one queue (M/D/1 at 75 % of 100 ms), so the plan's
    bound is that one queue's p99; in the simulation the two models share the cores as they come
    (processor sharing), slower still, so a plan with its SLO between the two carries a warning."""
    plan = solve(tmp_path, rate=7.5, slo=5000)
    s = plan["simulated"]
    own = Queue(7.5, 40, 1).response_ms(99) + Queue(7.5, 60, 1).response_ms(99)
    one_server = Queue(7.5, 100, 1).response_ms(99)
    # the site's table holds the wait per ms of core time to a thousandth, rounded up: +0.1 ms at most here
    assert 0 <= plan["latency_ms"] - one_server <= 0.1 and one_server > 2 * own
    # and its median the same queue's median
    assert 0 <= plan["paths"][0]["p50_ms"] - Queue(7.5, 100, 1).response_ms(50) <= 0.1
    assert s["tail_ms"] > 1.1 * plan["latency_ms"]
    assert s["cores_utilization"] == {"phone": pytest.approx(0.75)}
    assert not any("simulated" in w for w in plan["warnings"])
    between = solve(tmp_path / "slo", rate=7.5, slo=round((plan["latency_ms"] + s["tail_ms"]) / 2))
    assert any(w.startswith("simulated at the planned rate, p99 is") and "phone, 75%" in w
               and w.endswith("no other plan meets the SLO by the model (simulated.rounds in plan.json)")
               for w in between["warnings"]), between["warnings"]
    # the solver ran again without that plan (nor it with fewer replicas): the phone is the only
    # site, so no plan is left, and the first plan stays
    first, second = between["simulated"]["rounds"]
    assert first == {"status": "OPTIMAL", "placement": {"a": "phone", "b": "phone"}, "replicas": {"phone": 1},
                     "cost_per_hour": 0.0, "latency_ms": plan["latency_ms"], "simulated_ms": s["tail_ms"],
                     "met": False}
    assert second == {"status": "INFEASIBLE", "placement": {}, "replicas": {}, "cost_per_hour": None,
                      "latency_ms": None, "simulated_ms": None, "met": False}
    assert between["placement"] == plan["placement"] and between["latency_ms"] == plan["latency_ms"]


def test_sources_at_different_rates_are_not_simulated(tmp_path):
    plan = solve(tmp_path, rate=1, slo=1000, second_source_rate=2)
    assert plan["simulated"]["status"] == "not simulated"
    assert "different rates" in plan["simulated"]["why"]


def test_two_instances_of_a_build_on_every_core_do_not_double_what_a_replica_serves(tmp_path):
    """2 models x 2 instances on the 4-core phone, each on all 4 cores: 12 rps x (40 + 60) ms is
    120 % of the phone's cores, though only 60 % of its 2 instances' servers. The solver counts
    the cores (planner.plan.problem.replica_load): one phone cannot carry it, and no plan says
    which limit binds."""
    app = tmp_path / "app.yaml"
    app.write_text(SHARED.format(rate=12, slo=100000, more="", more_flows="").replace(
        "latency_ms: 40, memory_mb: 10}}}", "latency_ms: 40, memory_mb: 10}}, instances: 2}").replace(
        "latency_ms: 60, memory_mb: 10}}}", "latency_ms: 60, memory_mb: 10}}, instances: 2}"))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["solve", str(app), "-o", str(out), "--no-bundles"])
    plan = json.loads((out / "plan.json").read_text())
    assert plan["status"] == "INFEASIBLE", r.output
    assert [c["constraint"] for c in plan["conflicts"]] == ["replicas:phone"]
    # with room for a second phone the plan takes it, and the cores are 60 % busy
    r = CliRunner().invoke(cli, ["solve", str(app), "-o", str(out), "--no-bundles",
                                 "--set", "sites.phone.max_replicas=2"])
    assert r.exit_code == 0, r.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["sites"]["phone"]["replicas"] == 2
    assert plan["simulated"]["cores_utilization"] == {"phone": pytest.approx(0.6)}




# The same two models, and a base station that runs b for a price: on the phone alone the
# plan's bound meets the SLO and its simulation does not.
TWO_SITES = """
name: moved
sites:
  phone: {tier: edge, target: rpi5, cost_per_hour: 0, memory_mb: 4096, max_replicas: 1}
  mec: {tier: base-station, target: xeon-d, cost_per_hour: 0.5, memory_mb: 4096, max_replicas: 1}
links:
  - {between: [phone, mec], bandwidth_mbps: 1000, rtt_ms: 2}
models:
  a: {profile: {phone: {latency_ms: 40, memory_mb: 10}}, sites: [phone]}
  b: {profile: {phone: {latency_ms: 60, memory_mb: 10}, mec: {latency_ms: 60, memory_mb: 10}}}
sources: {cam: {site: phone, rate_rps: 7.5}}
sinks: {screen: {site: phone}}
flows:
  - {from: cam, to: a, bytes: 1000}
  - {from: a, to: b, bytes: 1000}
  - {from: b, to: screen, bytes: 100}
constraints: {latency_ms: SLO}
objective: cost
"""


def test_a_plan_whose_simulation_misses_the_slo_is_solved_again_until_one_meets_it(tmp_path):
    """Both on the phone is free; the model's bound for it (each model its queue's wait or its
    share of the phone's cores' queue) meets an SLO set halfway to its simulation, which does not
    (in the simulation the two models share the cores as they come, not one after the other); b on
    the base station costs 0.5 $/h and its simulation meets it. Brute force: every placement
    simulated, the cheapest whose bound and simulated p99 meet the SLO is the plan."""
    from planner.model.open_app import open_app
    from planner.plan.problem import build_instance
    from planner.plan.simulated import simulated_check
    from planner.profiling.app_profiles import profile_app
    from planner.solver.evaluate import evaluate

    def numbers(slo):
        app = tmp_path / "app.yaml"
        app.write_text(TWO_SITES.replace("SLO", str(slo)))
        checked = open_app(app)
        table = profile_app(checked).table
        inst = build_instance(checked, table)
        out = {}
        for site in ("phone", "mec"):
            evaluation = evaluate(inst, {"a": "phone", "b": site})
            check = simulated_check(checked, inst, evaluation, table.entries)
            out[site] = (evaluation, check)
        return app, out

    _, loose = numbers(100_000)
    bound, simulated = loose["phone"][0].latency_us / 1000, loose["phone"][1].tail_ms
    assert simulated > 1.1 * bound
    app, plans = numbers(round((bound + simulated) / 2))
    slo = round((bound + simulated) / 2)
    meets = {site: ev.feasible and check.tail_ms <= slo for site, (ev, check) in plans.items()}
    assert meets == {"phone": False, "mec": True} and plans["phone"][0].feasible
    assert (plans["phone"][0].cost_uph, plans["mec"][0].cost_uph) == (0, 500_000)

    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["solve", str(app), "-o", str(out), "--no-bundles"])
    assert r.exit_code == 0, r.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["placement"] == {"a": "phone", "b": "mec"} and plan["cost_per_hour"] == 0.5
    assert plan["simulated"]["tail_ms"] == plans["mec"][1].tail_ms <= slo
    first, second = plan["simulated"]["rounds"]
    assert first["latency_ms"] == pytest.approx(bound, abs=0.002) and not first["met"]
    assert first["simulated_ms"] == plans["phone"][1].tail_ms
    assert second["met"] and second["placement"] == plan["placement"]
    assert not any("simulated" in w for w in plan["warnings"]), plan["warnings"]
