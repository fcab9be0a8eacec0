"""The CLI end to end: typer's CliRunner for each command, and one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.app.spec import app_json_schema
from planner.plan.schema import Plan
from tests import ROOT, CAMERA, VOICE



def test_schema_file_is_in_sync():
    committed = json.loads((ROOT / "schema" / "app.schema.json").read_text())
    assert committed == app_json_schema(), "run `make schema` and commit schema/app.schema.json"


def test_schema_command_prints_the_schema():
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["additionalProperties"] is False
    assert {"sites", "models", "flows", "sources", "sinks"} <= set(schema["required"])


def test_validate_examples():
    for path in (CAMERA, VOICE):
        result = CliRunner().invoke(cli, ["validate", str(path)])
        assert result.exit_code == 0, result.output
        assert "valid:" in result.output


def test_solve_writes_plan_and_prints_tables(tmp_path):
    result = CliRunner().invoke(cli, ["solve", str(CAMERA), "-o", str(tmp_path / "out"), "--time-limit", "20"])
    assert result.exit_code == 0, result.output
    plan = Plan.model_validate_json((tmp_path / "out" / "plan.json").read_text())
    assert plan.status == "OPTIMAL"
    assert set(plan.placement) == {"detector", "plate-reader", "reid", "fusion"}
    for word in ("placement", "detector", "paths", "baselines", "all-on-camera", "greedy"):
        assert word in result.output
    assert plan.latency_ms <= 400
    assert len(plan.paths) == plan.paths_total == 4  # two branches x two sinks


def test_solve_json_matches_written_plan(tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["solve", str(VOICE), "-o", str(out), "--json", "--objective", "latency"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == json.loads((out / "plan.json").read_text())
    assert printed["objective"] == "latency"


def test_solve_default_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["solve", str(VOICE)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "voice-assistant" / "plan.json").is_file()


def test_infeasible_exits_3_with_reason(tmp_path):
    text = VOICE.read_text().replace("constraints: {latency_ms: 1200}", "constraints: {latency_ms: 200}")
    path = tmp_path / "app.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["solve", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 3, result.output
    assert "infeasible" in result.output
    plan = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert plan["status"] == "INFEASIBLE" and plan["placement"] == {}


def test_bad_options_exit_2(tmp_path):
    r = CliRunner().invoke(cli, ["solve", str(VOICE), "-o", str(tmp_path), "--objective", "speed"])
    assert r.exit_code == 2 and "--objective" in r.output
    r = CliRunner().invoke(cli, ["solve", str(VOICE), "-o", str(tmp_path), "--time-limit", "0"])
    assert r.exit_code == 2 and "--time-limit" in r.output


def test_subprocess_entry_point(tmp_path):
    exe = Path(sys.executable).with_name("planner")
    proc = subprocess.run([str(exe), "solve", str(CAMERA), "-o", str(tmp_path / "o"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["app"] == "smart-camera" and plan["status"] == "OPTIMAL"
    bad = subprocess.run([str(exe), "validate", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "file not found" in bad.stderr


def test_set_overrides_change_the_plan(tmp_path):
    base = CliRunner().invoke(cli, ["solve", str(VOICE), "-o", str(tmp_path / "a"), "--json"])
    slow = CliRunner().invoke(cli, ["solve", str(VOICE), "-o", str(tmp_path / "b"), "--json",
                                    "--set", "links.phone-mec.bandwidth_mbps=1", "--set", "constraints.latency_ms=5000"])
    assert base.exit_code == 0 and slow.exit_code == 0, slow.output
    a, b = json.loads(base.output), json.loads(slow.output)
    assert b["constraints"]["latency_ms"] == 5000
    # at 1 Mbps, shipping 160 kB of audio off the phone costs >1.2 s: the hop must show in the paths
    transfer = [t for t in b["paths"][0]["terms"] if t["kind"] == "transfer" and t.get("route")]
    audio = [t for t in transfer if t["route"][:2] == ["phone", "mec"] and t["bytes"] >= 160000]
    assert all(t["ms"] >= 160000 * 8 / 1e6 * 1000 for t in audio)
    assert a["placement"] != b["placement"] or a["latency_ms"] != b["latency_ms"]


def test_set_errors_name_the_override(tmp_path):
    r = CliRunner().invoke(cli, ["validate", str(VOICE), "--set", "links.phone-mec.bandwidth_mbps=0"])
    assert r.exit_code == 2 and "(from --set links.phone-mec.bandwidth_mbps=0)" in r.output, r.output
    r = CliRunner().invoke(cli, ["validate", str(VOICE), "--set", "links.phone-moon.rtt_ms=1"])
    assert r.exit_code == 2 and "no item 'phone-moon' in links" in r.output
    r = CliRunner().invoke(cli, ["validate", str(VOICE), "--set", "nonsense"])
    assert r.exit_code == 2 and "KEY=VALUE" in r.output
