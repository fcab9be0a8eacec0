"""`planner diff`: what moved; exit 0 when nothing changed, 1 when something did, 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from planner.cli.main import app as cli
from tests import CAMERA



def solve(tmp_path: Path, name: str, *sets: str, app: Path = CAMERA) -> Path:
    args = ["solve", str(app), "-o", str(tmp_path / name), "--json"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    return tmp_path / name / "plan.json"


def test_same_plan_exits_0(tmp_path):
    a = solve(tmp_path, "a")
    b = solve(tmp_path, "b")
    r = CliRunner().invoke(cli, ["diff", str(a), str(b)])
    assert r.exit_code == 0, r.output
    assert "no change" in r.output
    r = CliRunner().invoke(cli, ["diff", str(a.parent), str(b.parent), "--json"])  # directories work too
    assert r.exit_code == 0 and json.loads(r.output)["changed"] is False


def test_moved_models_exit_1_with_path_and_cost_changes(tmp_path):
    a = solve(tmp_path, "a")
    # a tight SLO forces models into the cloud (4 mec replicas no longer meet it): they move, latency falls, cost rises
    b = solve(tmp_path, "b", "constraints.latency_ms=315")
    r = CliRunner().invoke(cli, ["diff", str(a), str(b), "--json"])
    assert r.exit_code == 1, r.output
    d = json.loads(r.output)
    old, new = json.loads(a.read_text()), json.loads(b.read_text())
    assert {m["model"] for m in d["moved"]} == {m for m in old["placement"] if old["placement"][m] != new["placement"][m]}
    assert d["moved"]
    assert abs(d["delta_cost_per_hour"] - (new["cost_per_hour"] - old["cost_per_hour"])) < 1e-6
    assert abs(d["delta_latency_ms"] - (new["latency_ms"] - old["latency_ms"])) < 1e-6
    by_path = {p["path"]: p for p in d["paths"]}
    for p in new["paths"]:
        key = " -> ".join(p["nodes"])
        assert abs(by_path[key]["new_ms"] - p["latency_ms"]) < 1e-9
    r = CliRunner().invoke(cli, ["diff", str(a), str(b)])
    assert r.exit_code == 1
    assert "moved reid: mec -> cloud" in r.output and "latency per path" in r.output and "cost: $" in r.output


def test_same_placement_other_numbers_exit_1(tmp_path):
    a = solve(tmp_path, "a")
    b = solve(tmp_path, "b", "links.camera-mec.bandwidth_mbps=100")
    r = CliRunner().invoke(cli, ["diff", str(a), str(b), "--json"])
    d = json.loads(r.output)
    # the faster link: the same placement and replicas, faster (one mec replica would meet the SLO
    # by the model, but its simulation refuses it: planner.plan.vetted)
    assert r.exit_code == 1 and d["moved"] == [] and d["delta_cost_per_hour"] == 0 > d["delta_latency_ms"]


def test_bad_input_exits_2_with_one_message(tmp_path):
    a = solve(tmp_path, "a")
    cases = {
        "missing.json": None,
        "garbage.json": "{not json",
        "other.json": json.dumps({"hello": 1}),
        "wrong.json": json.dumps({**json.loads(a.read_text()), "status": "MAYBE"}),
    }
    for name, text in cases.items():
        p = tmp_path / name
        if text is not None:
            p.write_text(text)
        r = CliRunner().invoke(cli, ["diff", str(a), str(p)])
        assert r.exit_code == 2, (name, r.output)
        assert "Traceback" not in r.output and r.output.count("error:") == 1, r.output
        assert name in r.output
        assert ("no such file" if text is None else "not a plan.json") in r.output
