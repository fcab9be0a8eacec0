"""Every number in app.yaml has a stated range (planner.app.spec, the JSON schema): a value
outside it is exit 2 naming the key and the range, from the file, a --set or a sweep value;
sums past the solver's integers are exit 2 naming the largest part; values at the edges of
their ranges solve; CP-SAT's MODEL_INVALID is an internal error with its reason, never a
time limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.solver.cpsat import PlacementSolver, SolverModelError
from planner.solver.instance import FlowData, Instance, Option, SiteData

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "smart-camera" / "app.yaml"
BASE = EXAMPLE.read_text()


def write(tmp_path: Path, *replacements: str) -> Path:
    """BASE with (old, new, old, new, ...) replaced once each."""
    text = BASE
    for old, new in zip(replacements[::2], replacements[1::2]):
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "app.yaml"
    path.write_text(text)
    return path


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    out = result.output
    assert "Traceback" not in out, out
    return result.exit_code, out


def solve(tmp_path: Path, path: Path, *options: str) -> tuple[int, str]:
    return invoke("solve", path, "-o", tmp_path / "out", "--no-bundles", "--time-limit", "10", *options)


def assert_one_input_error(code: int, out: str, *fragments: str) -> None:
    assert code == 2, out
    assert len(out.strip().splitlines()) == 1 and out.startswith("error: "), out
    for fragment in fragments:
        assert fragment in out, out


# The reproductions of issue 12, item 6: each was an OverflowError or a TypeError (exit 1), or
# for max_replicas >= 1e10 "no plan found within --time-limit".
OUT_OF_RANGE = [
    ("rtt_ms: 10", "rtt_ms: 1.0e+308", "links[0].rtt_ms", "must be >= 0 and <= 1e+07"),
    ("latency_ms: 400", "latency_ms: 1.0e+308", "constraints.latency_ms", "must be > 0 and <= 1e+09"),
    ("cost_per_hour: 0.40", "cost_per_hour: 1.0e+308", "sites.mec.cost_per_hour", "must be >= 0 and <= 1e+06"),
    ("memory_mb: 32768", "memory_mb: 1.0e+308", "sites.mec.memory_mb", "must be > 0 and <= 1e+09"),
    ("rate_rps: 15", "rate_rps: 1.0e+308", "sources.video.rate_rps", "must be > 0 and <= 1e+06"),
    ("cost_per_gb: 0.02", "cost_per_gb: 1.0e+308", "links[1].cost_per_gb", "must be >= 0 and <= 10000"),
    ("latency_ms: 38", "latency_ms: 1.0e+308", "models.detector.profile.camera.latency_ms", "must be > 0 and <= 1e+07"),
    ("memory_mb: 900", "memory_mb: 1.0e+308", "models.detector.profile.camera.memory_mb", "must be >= 0 and <= 1e+09"),
    ("bandwidth_mbps: 40", "bandwidth_mbps: 1.0e-300", "links[0].bandwidth_mbps", "must be >= 0.001 and <= 1e+09"),
    ("bytes: 1228800", "bytes: 1.0e+30", "flows[0].bytes", "must be >= 1 and <= 1,099,511,627,776"),
    ("rtt_ms: 10", "rtt_ms: 1.0e+16", "links[0].rtt_ms", "must be >= 0 and <= 1e+07"),
    ("max_replicas: 4", "max_replicas: 1.0e+30", "sites.mec.max_replicas", "must be >= 1 and <= 1,000,000"),
    ("max_replicas: 4", "max_replicas: 10000000000", "sites.mec.max_replicas", "must be >= 1 and <= 1,000,000"),
    ("max_replicas: 4", "max_replicas: 1e30", "sites.mec.max_replicas", "(allowed: >= 1 and <= 1,000,000)"),
]


@pytest.mark.parametrize("old, new, key, allowed", OUT_OF_RANGE,
                         ids=[f"{c[2]}={c[1].split(': ')[1]}" for c in OUT_OF_RANGE])
def test_out_of_range_is_an_input_error_naming_key_and_range(tmp_path, old, new, key, allowed):
    path = write(tmp_path, old, new)
    assert_one_input_error(*solve(tmp_path, path), f"{path}:", f": {key}: ", allowed)


def test_set_override_gets_the_same_check(tmp_path):
    code, out = invoke("validate", EXAMPLE, "--set", "links.0.rtt_ms=1e16")
    # YAML 1.1 reads 1e16 (no dot) as a string; the schema reads the string as a number
    assert_one_input_error(code, out, "links[0].rtt_ms: must be >= 0 and <= 1e+07, got '1e16' "
                                      "(from --set links.0.rtt_ms=1e16)")


def test_sweep_checks_every_value_before_solving_any(tmp_path):
    out_dir = tmp_path / "sweep"
    code, out = invoke("sweep", EXAMPLE, "--set", "constraints.latency_ms=400,1e308", "-o", out_dir)
    assert_one_input_error(code, out, "constraints.latency_ms: must be > 0 and <= 1e+09",
                           "(from --set constraints.latency_ms=1e308)")
    assert not out_dir.exists()


STEP = "def f(x):\n    return {'y': x}\n"


@pytest.mark.parametrize("shape, message", [
    ("[100000, 100000]", "shape [100000, 100000] has 10,000,000,000 elements; a tensor may have at most 2**28"),
    ("[268435457]", "must be <= 268,435,456"),
    ("[" + ", ".join(["1"] * 33) + "]", "List should have at most 32 items"),
])
def test_declared_tensor_is_bounded(tmp_path, shape, message):
    # the planner allocates declared inputs to run a python step: 1e5 x 1e5 float32 was 37 GiB
    (tmp_path / "step.py").write_text(STEP)
    path = write(tmp_path, "  fusion:                    # joins plates and identities into tracked events\n",
                 f"  fusion:\n    python: step.py:f\n    inputs: {{x: {shape}}}\n")
    assert_one_input_error(*invoke("validate", path), "models.fusion.inputs.x", message)


# Sums that pass what the solver's integers hold, every number within its range: an input
# error naming the largest part (each was an exit 1 inside OR-Tools).
TOO_MUCH = [
    (("bandwidth_mbps: 40", "bandwidth_mbps: 0.001", "bytes: 1228800", "bytes: 1099511627776"),
     "flows[0]: a plan could take 279 years, more than the 8.93 years"),
    (("rate_rps: 15", "rate_rps: 1000000", "latency_ms: 38", "latency_ms: 10000000"),
     "models.detector: the models that may run on camera could need 1e+10 replicas"),
    (("cost_per_hour: 0.40", "cost_per_hour: 1000000", "max_replicas: 4", "max_replicas: 1000000",
      "cost_per_hour: 0.526", "cost_per_hour: 1000000", "max_replicas: 16", "max_replicas: 1000000"),
     "sites.mec.cost_per_hour: a plan could cost $2e+12/h"),
]


@pytest.mark.parametrize("replacements, message", TOO_MUCH, ids=["time", "load", "cost"])
def test_sums_past_the_solver_integers_are_input_errors(tmp_path, replacements, message):
    code, out = solve(tmp_path, write(tmp_path, *replacements))
    assert_one_input_error(code, out, message, "the solver's integers hold; the largest part: ")


# Each number at the edge of its range: a plan or an infeasibility, never an internal error.
EDGES = [
    ("rtt_ms: 10", "rtt_ms: 1.0e+7"), ("latency_ms: 400", "latency_ms: 1.0e+9"),
    ("latency_ms: 38", "latency_ms: 1.0e+7"), ("bytes: 1228800", "bytes: 1099511627776"),
    ("bandwidth_mbps: 40", "bandwidth_mbps: 0.001"), ("bandwidth_mbps: 1000", "bandwidth_mbps: 1.0e+9"),
    ("max_replicas: 16", "max_replicas: 1000000"), ("rate_rps: 15", "rate_rps: 1000000"),
    ("cost_per_hour: 0.526", "cost_per_hour: 1000000"), ("cost_per_gb: 0.02", "cost_per_gb: 10000"),
    ("memory_mb: 16384", "memory_mb: 1.0e+9"), ("memory_mb: 1100", "memory_mb: 1.0e+9"),
]


@pytest.mark.parametrize("old, new", EDGES, ids=[new for _, new in EDGES])
def test_values_at_the_edges_of_their_ranges_solve(tmp_path, old, new):
    code, out = solve(tmp_path, write(tmp_path, old, new))
    assert code in (0, 3), out


def _overflowing_instance() -> Instance:
    # 10**10 replicas of 10**9 load units each: past CP-SAT's 2**62 on linear sums
    return Instance(
        sites=[SiteData(name="s", cost_uph=1, memory_kb=10, max_replicas=10**10)], models=["m"],
        options={"m": {"s": Option(latency_us=5, memory_kb=1, load=5000)}}, fixed={"src": "s", "dst": "s"},
        sources=["src"], sinks=["dst"],
        flows=[FlowData(index=0, src="src", dst="m", nbytes=1, transfers=[]),
               FlowData(index=1, src="m", dst="dst", nbytes=1, transfers=[])],
    )


def test_model_invalid_raises_with_cp_sat_reason():
    with pytest.raises(SolverModelError, match="CP-SAT rejected the model: Possible integer overflow"):
        PlacementSolver(_overflowing_instance()).solve()


def test_model_invalid_is_an_internal_error_not_a_time_limit(tmp_path, monkeypatch):
    # past the checks (switched off here), a model CP-SAT refuses: two loads of 4e18 on one site
    monkeypatch.setattr("planner.plan.problem.check_solver_limits", lambda checked, inst: None, raising=False)
    path = write(tmp_path, "rate_rps: 15", "rate_rps: 400000", "latency_ms: 38", "latency_ms: 10000000",
                 "latency_ms: 55", "latency_ms: 10000000", "constraints: {latency_ms: 400}", "constraints: {}")
    code, out = solve(tmp_path, path)
    assert code == 1, out
    assert "internal error: SolverModelError: CP-SAT rejected the model: Possible integer overflow" in out, out
    assert "time-limit" not in out, out
