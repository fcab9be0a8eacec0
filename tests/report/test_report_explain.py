"""`planner solve` on crafted infeasible apps: exit 3, the right conflict set in words a
person can act on, and each suggested fix (a --set) really makes the app feasible."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli

HEAD = """
name: crafted
sites:
  phone: {tier: edge, target: rpi5, cost_per_hour: 0, memory_mb: MEM, max_replicas: 1}
  mec:   {tier: base-station, target: xeon-d, cost_per_hour: 0.4, memory_mb: 32768, max_replicas: 4}
links:
  - {between: [phone, mec], bandwidth_mbps: 100, rtt_ms: 10, cost_per_gb: 0}
sources: {camera: {site: phone, rate_rps: RATE}}
sinks:   {screen: {site: phone}}
"""

CASES = {
    # the example: det is pinned to the phone, where it takes 120 ms; the SLO is 100 ms
    # (at the median: one request in eight waits for det at 1 request/s, the median never)
    "slo-vs-pin": (dict(MEM=4096, RATE=1), """
models:
  det:
    profile: {phone: {latency_ms: 120, memory_mb: 60}, mec: {latency_ms: 20, memory_mb: 60}}
    sites: [phone]
flows:
  - {from: camera, to: det, bytes: 1000}
  - {from: det, to: screen, bytes: 100}
constraints: {latency_ms: 100, percentile: 50}
""", {"slo": "raise the SLO to at least 120 ms (--set constraints.latency_ms=120)",
      "pin:det": "allow det on mec (--set 'models.det.sites=[ phone, mec ]')"},
        ["det needs at least 120 ms on every site it may use; the SLO is 100 ms",
         "every source->sink path must finish within the SLO of 100 ms (constraints.latency_ms)",
         "det may only run on phone (models.det.sites)"]),
    # two models pinned to a phone whose memory holds only one of them
    "memory": (dict(MEM=100, RATE=1), """
models:
  a:
    profile: {phone: {latency_ms: 5, memory_mb: 80}, mec: {latency_ms: 5, memory_mb: 80}}
    sites: [phone]
  b:
    profile: {phone: {latency_ms: 5, memory_mb: 80}, mec: {latency_ms: 5, memory_mb: 80}}
    sites: [phone]
flows:
  - {from: camera, to: a, bytes: 1000}
  - {from: a, to: b, bytes: 1000}
  - {from: b, to: screen, bytes: 100}
""", {"memory:phone": "give phone at least 160 MB per replica (--set sites.phone.memory_mb=160)",
      "pin:a": "allow a on mec", "pin:b": "allow b on mec"},
        ["the models on phone must fit in 100 MB per replica (sites.phone.memory_mb)"]),
    # 10 requests/s x 250 ms of work needs 3 replicas; the phone runs one
    "replicas": (dict(MEM=4096, RATE=10), """
models:
  asr:
    profile: {phone: {latency_ms: 250, memory_mb: 100}, mec: {latency_ms: 50, memory_mb: 100}}
    sites: [phone]
flows:
  - {from: camera, to: asr, bytes: 1000}
  - {from: asr, to: screen, bytes: 100}
""", {"replicas:phone": "allow phone at least 3 replicas (--set sites.phone.max_replicas=3)",
      "pin:asr": "allow asr on mec"},
        ["phone runs at most 1 replica (sites.phone.max_replicas)"]),
    # only mec is fast enough for the SLO, and mec costs more than the cap
    "slo-vs-cost-cap": (dict(MEM=4096, RATE=1), """
models:
  det:
    profile: {phone: {latency_ms: 200, memory_mb: 60}, mec: {latency_ms: 20, memory_mb: 60}}
flows:
  - {from: camera, to: det, bytes: 1000}
  - {from: det, to: screen, bytes: 100}
constraints: {latency_ms: 100, cost_per_hour: 0.1, percentile: 50}
""", {"slo": "raise the SLO to at least 200 ms (--set constraints.latency_ms=200)",
      "cost_cap": "raise the cost cap to at least $0.4/h (--set constraints.cost_per_hour=0.4)"},
        ["the plan may cost at most $0.1/h (constraints.cost_per_hour)"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_infeasible_app_names_conflicts_and_working_fixes(tmp_path, case):
    subs, body, fixes, phrases = CASES[case]
    text = HEAD
    for k, v in subs.items():
        text = text.replace(k, str(v))
    app = tmp_path / "app.yaml"
    app.write_text(text + body)
    r = CliRunner().invoke(cli, ["solve", str(app), "-o", str(tmp_path / "o"), "--time-limit", "10"])
    assert r.exit_code == 3, r.output
    plan = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert {c["constraint"] for c in plan["conflicts"]} == set(fixes)
    output = " ".join(r.output.split())  # the console may wrap long lines
    assert "cannot all hold together" in output or "cannot hold" in output
    for phrase in [*fixes.values(), *phrases]:
        assert phrase in output, phrase
    assert "pin:" not in output and "relax " not in output  # no internal keys in the words
    # every suggested --set really makes the app feasible on its own
    for line in plan["explanation"]:
        m = re.search(r"\(--set (.+?)\)$", line)
        if not m:
            continue
        (setting,) = shlex.split(m.group(1))
        ok = CliRunner().invoke(cli, ["solve", str(app), "-o", str(tmp_path / "fixed"), "--set", setting])
        assert ok.exit_code == 0, (setting, ok.output)
