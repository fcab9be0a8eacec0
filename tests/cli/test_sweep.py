"""`planner sweep`: one solve per value; on a crafted app the edge/cloud split moves with the
bandwidth of the radio link."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.errors import InputError
from planner.app.overrides import parse_sweep, split_values

# A detector that shrinks a 1 MB frame to 10 kB, then a recognizer. The phone is slow, the
# cloud fast, the radio link is what varies: at low bandwidth only the small crops can leave
# the phone (det on the phone, rec in the cloud); at high bandwidth everything goes to the cloud.
SPLIT_APP = """
name: split
sites:
  phone: {tier: edge, target: rpi5, cost_per_hour: 0, memory_mb: 4096, max_replicas: 1}
  cloud: {tier: cloud, target: c7i-2xlarge, cost_per_hour: 0.1, memory_mb: 16384, max_replicas: 8}
links:
  - {between: [phone, cloud], bandwidth_mbps: 20, rtt_ms: 10, cost_per_gb: 0}
models:
  det:
    profile: {phone: {latency_ms: 50, memory_mb: 100}, cloud: {latency_ms: 5, memory_mb: 100}}
  rec:
    profile: {phone: {latency_ms: 300, memory_mb: 100}, cloud: {latency_ms: 10, memory_mb: 100}}
sources: {camera: {site: phone, rate_rps: 1}}
sinks: {screen: {site: phone}}
flows:
  - {from: camera, to: det, bytes: 1000000}
  - {from: det, to: rec, bytes: 10000}
  - {from: rec, to: screen, bytes: 100}
constraints: {latency_ms: 10000}
objective: latency
"""


@pytest.fixture
def split_app(tmp_path) -> Path:
    p = tmp_path / "app.yaml"
    p.write_text(SPLIT_APP)
    return p


def test_split_values_keeps_collections():
    assert split_values("1,2, 3") == ["1", "2", "3"]
    assert split_values("[a,b],[c]") == ["[a,b]", "[c]"]
    key, values, fixed = parse_sweep(["links.0.rtt_ms=5", "links.0.bandwidth_mbps=1,10"])
    assert (key, values, fixed) == ("links.0.bandwidth_mbps", ["1", "10"], ["links.0.rtt_ms=5"])
    for bad in ([], ["a=1"], ["a=1,2", "b=3,4"], ["a=1,,2"], ["nonsense"]):
        with pytest.raises(InputError):
            parse_sweep(bad)


def test_bandwidth_sweep_moves_the_split(split_app, tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["sweep", str(split_app), "--set", "links.phone-cloud.bandwidth_mbps=2,20,200,2000",
                                 "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    sw = json.loads(r.output)
    placements = [p["placement"] for p in sw["points"]]
    assert placements[0] == {"det": "phone", "rec": "cloud"}  # 1 MB over 2 Mbps takes 4 s: keep it local
    assert placements[-1] == {"det": "cloud", "rec": "cloud"}  # 1 MB over 2 Gbps takes 4 ms: ship it
    moved_at = [p["value"] for p in sw["points"] if p["moved"]]
    assert len(moved_at) == 1 and sw["points"][[p["value"] for p in sw["points"]].index(moved_at[0])]["moved"] == ["det"]
    lat = [p["latency_ms"] for p in sw["points"]]
    assert lat == sorted(lat, reverse=True)  # more bandwidth never hurts
    for name in ("sweep.png", "sweep.svg", "sweep.md", "sweep.json"):
        assert (out / name).stat().st_size > 0
    md = (out / "sweep.md").read_text()
    assert "| 2 | OPTIMAL |" in md and "| 2000 | OPTIMAL |" in md


def test_sweep_table_and_infeasible_values(split_app, tmp_path):
    r = CliRunner().invoke(cli, ["sweep", str(split_app), "--set", "constraints.latency_ms=30,1000",
                                 "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "INFEASIBLE" in r.output and "OPTIMAL" in r.output
    r = CliRunner().invoke(cli, ["sweep", str(split_app), "--set", "constraints.latency_ms=1,2", "-o", str(tmp_path / "p")])
    assert r.exit_code == 3
    r = CliRunner().invoke(cli, ["sweep", str(split_app), "--set", "links.phone-moon.bandwidth_mbps=1,2"])
    assert r.exit_code == 2 and "phone-moon" in r.output
    r = CliRunner().invoke(cli, ["sweep", str(split_app), "--set", "constraints.latency_ms=100"])
    assert r.exit_code == 2 and "V1,V2" in r.output


def test_a_rate_sweep_shows_the_margin_shrinking(split_app, tmp_path):
    """The plan's service margin per value (planner.plan.margin): at the same placement, more
    requests a second leave less room for slower models before the SLO is missed; an infeasible
    value has none. Each is what `planner solve` reports at that value."""
    from planner.pipeline import prepare, solve_prepared
    from planner.solver.cpsat import SolverConfig

    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["sweep", str(split_app), "--set", "sources.camera.rate_rps=1,5,10,18",
                                 "--set", "constraints.latency_ms=400", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    points = json.loads(r.output)["points"]
    feasible = [p for p in points if p["placement"]]
    assert len(feasible) >= 3 and len({json.dumps(p["placement"]) for p in feasible}) == 1
    margins = [p["margin_pct"] for p in feasible]
    assert all(m > 0 for m in margins) and margins == sorted(margins, reverse=True) and len(set(margins)) == len(margins)
    assert all(p["margin_pct"] is None for p in points if not p["placement"])
    assert margins[:3] == [199.8, 80.0, 19.9]  # README, latency model, quotes them
    value = feasible[1]["value"]
    plan = solve_prepared(prepare(split_app, [f"sources.camera.rate_rps={value}", "constraints.latency_ms=400"]),
                          SolverConfig(objective="latency", time_limit_s=20, workers=2))  # the app's objective
    assert plan.service_margin.slower_pct == feasible[1]["margin_pct"]
    assert f"| {value} | OPTIMAL | " in (out / "sweep.md").read_text() and "margin %" in (out / "sweep.md").read_text()
