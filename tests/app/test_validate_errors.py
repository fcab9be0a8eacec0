"""Every bad input: one clear message naming file, key and line; exit code 2; no traceback."""

from __future__ import annotations

import re
import textwrap

import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli

BASE = textwrap.dedent("""\
    name: demo
    sites:
      phone: {tier: edge, target: rpi5, cost_per_hour: 0, memory_mb: 4096, max_replicas: 1}
      mec: {tier: base-station, target: xeon-d, cost_per_hour: 0.4, memory_mb: 32768, max_replicas: 4}
      cloud: {tier: cloud, target: c7i-2xlarge, cost_per_hour: 0.36, memory_mb: 65536, max_replicas: 8}
    links:
      - {between: [phone, mec], bandwidth_mbps: 50, rtt_ms: 8}
      - {between: [mec, cloud], bandwidth_mbps: 1000, rtt_ms: 30, cost_per_gb: 0.05}
    models:
      det:
        profile:
          phone: {latency_ms: 120, memory_mb: 60}
          mec: {latency_ms: 30, memory_mb: 60}
          cloud: {latency_ms: 20, memory_mb: 60}
      rec:
        profile:
          phone: {latency_ms: 80, memory_mb: 40}
          cloud: {latency_ms: 10, memory_mb: 40}
    sources:
      camera: {site: phone, rate_rps: 5}
    sinks:
      screen: {site: phone}
    flows:
      - {from: camera, to: det, bytes: 1000000}
      - {from: det, to: rec, bytes: 20000}
      - {from: rec, to: screen, bytes: 100}
    constraints: {latency_ms: 250}
    """)


def run(tmp_path, text: str, name: str = "app.yaml"):
    path = tmp_path / name
    path.write_text(text)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    return path, result


def edit(*pairs: str) -> str:
    """Apply (old, new, old, new, ...) replacements to BASE."""
    text = BASE
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_base_is_valid(tmp_path):
    _, result = run(tmp_path, BASE)
    assert result.exit_code == 0, result.output
    assert "valid: 2 models, 3 sites, 2 links, 3 flows, 1 source->sink paths" in result.output


CASES = [
    # (id, old, new, expected message, key path, line fragment (None: no line check));
    # `old` may be a tuple of (old, new, ...) replacements, with `new` None
    ("yaml-syntax", "  - {from: det, to: rec, bytes: 20000}", "  - {from: det, to: rec, bytes: 20000",
     "YAML syntax error", None, None),
    ("unknown-key", "bandwidth_mbps: 50", "bandwith_mbps: 50",
     "unknown key 'bandwith_mbps' (did you mean 'bandwidth_mbps'?)", "links[0].bandwith_mbps", "bandwith_mbps"),
    ("unknown-top-key", "constraints: {latency_ms: 250}", "constraint: {latency_ms: 250}",
     "unknown key 'constraint' (did you mean 'constraints'?)", "constraint", "constraint:"),
    ("missing-key", "phone: {tier: edge, target: rpi5,", "phone: {target: rpi5,",
     "missing required key 'tier'", "sites.phone.tier", "phone: {target"),
    ("wrong-type", "rate_rps: 5", "rate_rps: fast",
     "expected a valid number", "sources.camera.rate_rps", "rate_rps"),
    ("zero-bandwidth", "bandwidth_mbps: 50", "bandwidth_mbps: 0",
     "must be >= 0.001 and <= 1e+09, got 0", "links[0].bandwidth_mbps", "bandwidth_mbps: 0"),
    ("negative-rate", "rate_rps: 5", "rate_rps: -2", "must be > 0 and <= 1e+06, got -2", "sources.camera.rate_rps",
     "rate_rps"),
    ("zero-latency", "phone: {latency_ms: 120", "phone: {latency_ms: 0",
     "must be > 0 and <= 1e+07, got 0", "models.det.profile.phone.latency_ms", "latency_ms: 0"),
    ("negative-slo", "constraints: {latency_ms: 250}", "constraints: {latency_ms: -250}",
     "must be > 0 and <= 1e+09, got -250", "constraints.latency_ms", "constraints"),
    ("unknown-model-in-flow", "{from: det, to: rec, bytes: 20000}", "{from: det, to: recognizer, bytes: 20000}",
     "unknown model or sink: 'recognizer'", "flows[1].to", "recognizer"),
    ("unknown-source-in-flow", "{from: camera, to: det", "{from: webcam, to: det",
     "unknown source or model: 'webcam'", "flows[0].from", "webcam"),
    ("unknown-sink-in-flow", "{from: rec, to: screen", "{from: rec, to: display",
     "unknown model or sink: 'display'", "flows[2].to", "display"),
    ("cycle", "  - {from: rec, to: screen, bytes: 100}",
     "  - {from: rec, to: screen, bytes: 100}\n  - {from: rec, to: det, bytes: 100}",
     "the flows form a cycle: ", "flows", None),
    ("unreached-model", "  - {from: camera, to: det, bytes: 1000000}\n  - {from: det, to: rec, bytes: 20000}",
     "  - {from: camera, to: rec, bytes: 1000000}\n  - {from: det, to: rec, bytes: 20000}",
     "no source reaches model 'det'", "models.det", "  det:"),
    ("unfed-sink", "sinks:\n  screen: {site: phone}", "sinks:\n  screen: {site: phone}\n  log: {site: cloud}",
     "no model feeds sink 'log'", "sinks.log", "log: {site"),
    ("no-site-may-host", "      cloud: {latency_ms: 10, memory_mb: 40}",
     "      cloud: {latency_ms: 10, memory_mb: 40}\n    sites: [mec]",
     "'rec' may run on mec but has no profile there", "models.rec.sites[0]", "sites: [mec]"),
    ("no-route", ("      cloud: {latency_ms: 10, memory_mb: 40}\nsources",
                  "      cloud: {latency_ms: 10, memory_mb: 40}\n    sites: [cloud]\nsources",
                  "  - {between: [mec, cloud], bandwidth_mbps: 1000, rtt_ms: 30, cost_per_gb: 0.05}\n", ""),
     None,
     "flow rec -> screen needs a route from cloud to phone", "flows[2]", "from: rec, to: screen"),
    ("profile-unknown-site", "      mec: {latency_ms: 30, memory_mb: 60}", "      edge2: {latency_ms: 30, memory_mb: 60}",
     "profile for unknown site 'edge2'", "models.det.profile.edge2", "edge2:"),
    ("unknown-target", "target: xeon-d", "target: xeon-z",
     "unknown target 'xeon-z'; valid targets: c7i-2xlarge, g4dn-xlarge, g6-xlarge, host, jetson-orin-nano, rpi5, "
     "xeon-d", "sites.mec.target", "target: xeon-z"),
    ("inline-target-incomplete", "target: xeon-d", "target: {tvm_target: {kind: llvm}, memory_mb: 100}",
     "inline target: peak_gflops: Field required", "sites.mec.target", "target: {tvm_target"),
    ("inline-target-bad-kind", "target: xeon-d",
     "target: {tvm_target: {kind: vulkan}, memory_mb: 100, peak_gflops: 10, mem_bandwidth_gbs: 5}",
     "tvm_target.kind must be llvm, cuda or c", "sites.mec.target", "target: {tvm_target"),
    ("unknown-site-in-source", "camera: {site: phone", "camera: {site: fone",
     "unknown site 'fone'", "sources.camera.site", "fone"),
    ("duplicate-key", "  rec:\n", "  det:\n", "duplicate key 'det'", "models.det", None),
    ("bad-name", "  rec:\n", "  'rec model':\n", "invalid name 'rec model'", "models", "rec model"),
    ("bad-objective", "constraints: {latency_ms: 250}", "constraints: {latency_ms: 250}\nobjective: speed",
     "expected 'cost' or 'latency', got 'speed'", "objective", "objective"),
    ("self-link", "between: [phone, mec]", "between: [phone, phone]",
     "a link joins two different sites", "links[0].between", "between: [phone, phone]"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case):
    _, old, new, message, key, fragment = case
    text = edit(*old) if new is None else edit(old, new)
    path, result = run(tmp_path, text)
    assert result.exit_code == 2, result.output
    out = result.output
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1 and out.startswith("error: "), out
    assert message in out, out
    assert str(path) in out
    if key is not None:
        assert f": {key}" in out or f": {key}:" in out, out
    if fragment is not None:
        assert f"{path}:{line_of(text, fragment)}:" in out, out


def test_unknown_target_lists_valid_names(tmp_path):
    _, result = run(tmp_path, edit("target: xeon-d", "target: xeon-z"))
    assert result.exit_code == 2
    for name in ("rpi5", "xeon-d", "c7i-2xlarge", "host"):
        assert name in result.output


def test_yaml_syntax_error_names_line(tmp_path):
    text = edit("  - {from: det, to: rec, bytes: 20000}", "  - {from: det, to: rec, bytes: 20000")
    path, result = run(tmp_path, text)
    m = re.search(re.escape(str(path)) + r":(\d+):", result.output)
    assert m and 20 <= int(m.group(1)) <= len(text.splitlines()) + 1, result.output


def test_missing_file(tmp_path):
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: file not found" in result.output


def test_not_a_mapping(tmp_path):
    _, result = run(tmp_path, "- just\n- a list\n")
    assert result.exit_code == 2
    assert "expected a mapping" in result.output


def test_cycle_names_its_nodes(tmp_path):
    text = edit("  - {from: rec, to: screen, bytes: 100}",
                "  - {from: rec, to: screen, bytes: 100}\n  - {from: rec, to: det, bytes: 100}")
    _, result = run(tmp_path, text)
    assert re.search(r"cycle: (det -> rec -> det|rec -> det -> rec)", result.output), result.output


# Any mangling of a valid file gets exit 0 or 2 with one message: never an internal error.
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SCALARS = st.sampled_from(["0", "-1", "abc", "[]", "{}", "null", "1e309", "phone", "det", "[phone, phone]", "''", "3.5"])


@st.composite
def mangled(draw) -> str:
    lines = BASE.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "scalar", "truncate"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            values = list(re.finditer(r"(?<=: )[^,{}\[\]]+", lines[i]))
            if values:
                m = draw(st.sampled_from(values))
                lines[i] = lines[i][: m.start()] + draw(SCALARS) + lines[i][m.end():]
        if not lines:
            break
    return "\n".join(lines) + "\n"


MANGLED = 150
MIN_REFUSED = 100  # of the mangled files, at least this many must be refused (exit 2) for the test to mean much


def test_mangled_input_never_crashes(tmp_path):
    refused = []

    @settings(max_examples=MANGLED, deadline=None)
    @given(text=mangled())
    def example(text):
        assume(text != BASE)  # a mangling that changed nothing is no example
        _, result = run(tmp_path, text)
        assert result.exit_code in (0, 2), result.output
        if result.exit_code == 2:
            assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1, result.output
            refused.append(result.output)

    example()
    assert len(refused) >= MIN_REFUSED, f"only {len(refused)} of {MANGLED} mangled files were refused"
