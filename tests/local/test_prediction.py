"""`planner bench`'s prediction for this machine: the plan's placement, with every pair of sites
joined by the loopback link, follows the README's latency formulas (recomputed independently
from app.yaml by tests/plan/readme_numbers.py)."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import yaml

from planner.errors import InputError
from planner.local.prediction import LOOPBACK_BANDWIDTH_MBPS, LOOPBACK_RTT_MS, predict_on_host
from planner.model.open_app import open_app
from planner.pipeline import prepare, solve_prepared
from planner.solver.cpsat import SolverConfig
from tests.plan.readme_numbers import numbers, readme_numbers
from tests import EXAMPLES, CAMERA



def on_loopback(app: dict) -> dict:
    app = copy.deepcopy(app)
    app["links"] = [{"between": [a, b], "bandwidth_mbps": LOOPBACK_BANDWIDTH_MBPS, "rtt_ms": LOOPBACK_RTT_MS}
                    for a, b in itertools.combinations(app["sites"], 2)]
    return app


@pytest.mark.parametrize("example", ["smart-camera", "voice-assistant"])
def test_host_prediction_is_the_placement_on_loopback(example):
    path = EXAMPLES / example / "app.yaml"
    app = yaml.safe_load(path.read_text())
    prepared = prepare(path)
    plan = solve_prepared(prepared, SolverConfig(objective="cost", time_limit_s=20))
    checked = open_app(path)
    placements = [plan.placement, *(b.placement for b in plan.baselines)]
    assert len({tuple(sorted(p.items())) for p in placements}) > 1  # several different placements
    for placement in placements:
        pred = predict_on_host(checked, placement)
        latency, _ = readme_numbers(on_loopback(app), placement)
        assert pred.latency_ms == pytest.approx(latency, abs=0.01)
        site_of = {**placement, **{k: v["site"] for k, v in [*app["sources"].items(), *app["sinks"].items()]}}
        for f in app["flows"]:
            term = pred.transfers[f"{f['from']}->{f['to']}"]
            assert term["sites"] == [site_of[f["from"]], site_of[f["to"]]]
            same = site_of[f["from"]] == site_of[f["to"]]
            expected = 0 if same else LOOPBACK_RTT_MS / 2 + f["bytes"] * 8 / (LOOPBACK_BANDWIDTH_MBPS * 1e6) * 1000
            assert term["ms"] == pytest.approx(expected, abs=0.001)
        waits = numbers(on_loopback(app), placement).wait_ms  # at the app's rate, as the plan
        for m, s in placement.items():
            assert pred.models[m] == {"site": s, "ms": app["models"][m]["profile"][s]["latency_ms"],
                                      "wait_ms": pytest.approx(waits[m], abs=0.001), "build": "given/fp32",
                                      "provenance": "given"}
        # the bench's client sends the source tensors in and gets the sink tensors back
        io = {(f["from"], f.get("output")): f["bytes"] for f in app["flows"] if f["from"] in app["sources"]}
        io = sum(io.values()) + sum(f["bytes"] for f in app["flows"] if f["to"] in app["sinks"])
        assert pred.client_ms == pytest.approx(LOOPBACK_RTT_MS / 2 + io * 8 / (LOOPBACK_BANDWIDTH_MBPS * 1e6) * 1000)
        assert pred.total_ms == pytest.approx(pred.latency_ms + pred.client_ms)


def test_host_prediction_refuses_a_placement_of_another_app():
    with pytest.raises(InputError, match="ghost"):
        predict_on_host(open_app(CAMERA), {"ghost": "mec"})


def test_the_loopback_link_is_the_line_through_the_committed_hops():
    """The loopback figures are the least-squares line through the measured runtime hops of
    benchmarks/results/runtime_overhead.json (rerun that benchmark, then these constants)."""
    import json

    import numpy as np

    from tests import ROOT

    sizes = json.loads((ROOT / "benchmarks" / "results" / "runtime_overhead.json").read_text())["sizes"]
    per_byte_ms, fixed_ms = np.polyfit([s["bytes"] for s in sizes], [s["runtime_hop_e2e_ms"] for s in sizes], 1)
    assert LOOPBACK_RTT_MS / 2 == pytest.approx(fixed_ms, rel=0.01)
    assert LOOPBACK_BANDWIDTH_MBPS == pytest.approx(8 / per_byte_ms / 1000, rel=0.01)


def test_the_simulated_machine_runs_a_python_step_on_one_core(tmp_path):
    """The profile of a python step records the profiler's threads (this host's cores); the
    simulation of this machine runs it on one (the GIL), with the plan's servers and hops."""
    from tests.load_app import SERVICE_MS, write_load_app

    path = write_load_app(tmp_path / "app", "sleep", instances=2)
    checked = open_app(path)
    pred = predict_on_host(checked, {"s": "mec"})
    [stage] = pred.stages
    assert (stage.name, stage.threads, stage.servers) == ("s", 1, 2)
    assert stage.service_ms == pytest.approx(pred.models["s"]["ms"]) and stage.service_ms >= SERVICE_MS
    assert [hop for _, hop in stage.inputs] == [pytest.approx(pred.transfers[k]["ms"], abs=0.001) for k in pred.transfers
                                                if k.endswith("->s")]


def test_the_stages_of_a_solved_plan_at_another_rate(tmp_path):
    """host_stages_for (load_accuracy's replay of a measured schedule): the plan's placement and
    builds, its source's overrides kept, at the rate asked; the same stages host_prediction runs."""
    from typer.testing import CliRunner

    from planner.cli.main import app as cli
    from planner.local.prediction import host_stages_for

    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["solve", str(EXAMPLES / "smart-camera" / "app.yaml"), "-o", str(out), "--no-bundles",
                                 "--set", "constraints.latency_ms=5000"])
    assert r.exit_code == 0, r.output
    stages, sinks, client_ms = host_stages_for(out, 3.0)
    plan = json.loads((out / "plan.json").read_text())
    app = yaml.safe_load((EXAMPLES / "smart-camera" / "app.yaml").read_text())
    assert [s.name for s in stages] == [m for m in plan["models"]]
    for s in stages:
        site = plan["models"][s.name]["site"]
        assert s.service_ms == pytest.approx(app["models"][s.name]["profile"][site]["latency_ms"])
    assert len(sinks) == sum(f["to"] in app["sinks"] for f in app["flows"]) and client_ms > 0
