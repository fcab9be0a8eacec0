"""profile_app on small apps built in code: measured on this host, estimated elsewhere, the
cache (a warm run compiles and measures nothing), exclusions, flow checks, bad inputs, RPC."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.errors import InputError
from tests.conftest import refused_ports
from tests.profiling.onnx_models import checker_failure, dynamic_reshape, mlp, with_det
from tests.profiling.tiny_app import BROKEN_TARGET, run, write_app

def test_measured_estimated_and_warm_cache(tmp_path):
    path = write_app(tmp_path)
    table, stats = run(path, tmp_path / "cache")
    here, pi = table.get("mlp", "here"), table.get("mlp", "pi")
    assert here.provenance == "measured" and here.tuning == "untuned"
    assert here.latency_ms == here.tvm_ms > 0 and here.ort_ms > 0
    assert pi.provenance == "estimated" and pi.target == "rpi5" and "roofline" in pi.note
    # the estimate by the roofline formula: the host time scaled by sum_k c_k max(F_k/P, B_k/W), target over host
    from planner.app.targets import get_target
    from planner.profiling.compile import compile_analyzed
    from planner.profiling.onnx_import import import_onnx

    kernels = compile_analyzed(import_onnx(tmp_path / "mlp.onnx", {"x": [1, 16]}), get_target("host")).kernels

    def roofline_s(t) -> float:
        return sum(k.calls * max(k.flops / (t.peak_gflops * 1e9), k.nbytes / (t.mem_bandwidth_gbs * 1e9))
                   for k in kernels)

    scale = roofline_s(get_target("rpi5")) / roofline_s(get_target("host"))
    assert abs(scale - 1) > 0.05  # the two targets' figures differ: the check below is not ms == ms
    assert pi.latency_ms == pytest.approx(here.tvm_ms * scale, rel=1e-6)
    assert here.memory_mb > (16 * 32 + 32 + 32 * 8) * 4 / 1e6  # params and activations
    post = table.get("post", "here")
    assert post.provenance == "measured" and post.tuning is None
    assert [(t.name, t.dtype, t.shape) for t in table.signatures["mlp"].outputs] == [("y", "float32", (1, 8))]
    assert {t.name: t.dtype for t in table.signatures["post"].outputs} == {"z": "float32", "label": "bytes"}
    assert stats["counters"].compiles == 2 and stats["counters"].measures >= 3

    table2, stats2 = run(path, tmp_path / "cache")
    c = stats2["counters"]
    assert (c.compiles, c.measures) == (0, 0) and stats2["misses"] == 0 and stats2["hits"] > 0
    assert table2.model_dump() == table.model_dump()

    _, stats3 = run(path, tmp_path / "cache", refresh=True)
    assert stats3["counters"].compiles == 2


def test_compile_failure_excludes_the_pair_and_the_solve_goes_on(tmp_path):
    sites = {"here": {"tier": "edge", "target": "host"}, "odd": {"tier": "cloud", "target": BROKEN_TARGET}}
    path = write_app(tmp_path, sites=sites)
    table, _ = run(path, tmp_path / "cache")
    assert table.get("mlp", "odd", "tvm/fp32") is None
    [ex] = table.excluded
    assert (ex.node, ex.site, ex.build) == ("mlp", "odd", "tvm/fp32") and "compile failed" in ex.reason
    assert any("excluded" in w and "odd" in w for w in table.warnings)
    assert table.get("mlp", "here").provenance == "measured"
    # ONNX Runtime does not need TVM's compiler: its build stays on that site
    assert [e.build for e in table.builds("mlp", "odd")] == ["onnxruntime/fp32"]

    from planner.pipeline import prepare

    prepared = prepare(path, cache_dir=tmp_path / "cache", tuning_root=tmp_path / "cache" / "tuning", engine="tvm")
    assert "odd" not in prepared.instance.options["mlp"] and "here" in prepared.instance.options["mlp"]


def test_flow_tensor_mismatch_names_both_nodes(tmp_path):
    path = write_app(tmp_path, post_input=[1, 9])
    with pytest.raises(InputError) as info:
        run(path, tmp_path / "cache")
    text = str(info.value)
    assert "'mlp' gives y: float32[1, 8]" in text and "'post' takes y: float32[1, 9]" in text
    assert "flows[1]" in text


def test_bytes_flow_needs_explicit_bytes(tmp_path):
    path = write_app(tmp_path, label_bytes=False)
    with pytest.raises(InputError, match="bytes.*variable size"):
        run(path, tmp_path / "cache")


@pytest.mark.parametrize("make,expect", [
    (None, "ONNX file not found"),
    (checker_failure, "ONNX checker"),
    (with_det, "Det not supported"),
])
def test_bad_onnx_is_exit_2_naming_model_and_file(tmp_path, make, expect):
    if make is with_det:
        make(tmp_path / "bad.onnx")
        # Det takes [2, 3, 3]
        path = write_app(tmp_path, onnx="bad.onnx")
        data = yaml.safe_load(path.read_text())
        data["models"]["mlp"]["inputs"] = {"x": [2, 3, 3]}
        data["flows"] = [f for f in data["flows"] if f["from"] != "mlp"] + []
        data["models"].pop("post")
        data["flows"] = [{"from": "cam", "to": "mlp"}, {"from": "mlp", "to": "out", "bytes": 8}]
        path.write_text(yaml.safe_dump(data))
    else:
        if make:
            make(tmp_path / "bad.onnx")
        path = write_app(tmp_path, onnx="bad.onnx")
    result = CliRunner().invoke(cli, ["profile", str(path), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2, result.output
    assert expect in result.output and "mlp" in result.output and "bad.onnx" in result.output


def test_profile_command_table_and_json(tmp_path):
    path = write_app(tmp_path)
    cache = str(tmp_path / "c")
    result = CliRunner().invoke(cli, ["profile", str(path), "--cache-dir", cache])
    assert result.exit_code == 0, result.output
    for word in ("mlp", "post", "measured", "estimated", "untuned", "rpi5"):
        assert word in result.output
    result = CliRunner().invoke(cli, ["profile", str(path), "--cache-dir", cache, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {(e["node"], e["site"], e["provenance"]) for e in data["entries"]} >= {
        ("mlp", "here", "measured"), ("mlp", "pi", "estimated"), ("post", "here", "measured")}
    # another process hits the same entries: the host's key does not move with its clock speed
    # or measured bandwidth (a miss would write a new entry)
    before = sorted(p.name for p in Path(cache).rglob("*.json"))
    proc = subprocess.run([sys.executable, "-m", "planner", "profile", str(path), "--cache-dir", cache, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again == data, [(a, b) for a, b in zip(again["entries"], data["entries"]) if a != b] or \
        (again["warnings"], data["warnings"])
    assert sorted(p.name for p in Path(cache).rglob("*.json")) == before


def test_solve_reads_the_cache_unless_refresh(tmp_path):
    path = write_app(tmp_path)
    cache = tmp_path / "c"

    def solve(*extra):
        result = CliRunner().invoke(cli, ["solve", str(path), "-o", str(tmp_path / "out"), "--no-bundles",
                                          "--cache-dir", str(cache), *extra])
        assert result.exit_code == 0, result.output

    def entries():
        return {p: p.read_bytes() for p in cache.rglob("*.json")}

    solve()
    first = entries()
    assert first
    solve()
    assert entries() == first  # hits: nothing rewritten
    solve("--refresh")
    again = entries()
    assert again.keys() == first.keys() and again != first  # measured again (new timings)
    result = CliRunner().invoke(cli, ["solve", str(path), "--tune-trials", "-1"])
    assert result.exit_code == 2 and "--tune-trials" in result.output


def test_tvm_matches_onnx_runtime_on_small_models(tmp_path):
    from planner.profiling.compile import compile_module
    from planner.profiling.measure import ort_session, run_ort, run_tvm
    from planner.profiling.onnx_import import import_onnx
    from planner.app.targets import get_target

    for path, shape in ((mlp(tmp_path / "a.onnx"), [3, 16]), (dynamic_reshape(tmp_path / "b.onnx"), [2, 2, 3, 4])):
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        ex = compile_module(import_onnx(path, {"x": shape}), get_target("host"))
        [got] = run_tvm(ex, [x])
        [want] = run_ort(ort_session(path.read_bytes()), {"x": x})
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.fixture
def rpc_tracker():
    """A TVM RPC tracker and one RPC server (key `tiny-host`) on loopback, each in a process of its
    own that binds a port itself (the first free one from TVM's defaults on) and reports it."""
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    tracker = Tracker("127.0.0.1", port=9190, port_end=9990, silent=True)
    server = None
    try:
        server = rpc.Server("127.0.0.1", port=10091, port_end=10891, tracker_addr=("127.0.0.1", tracker.port),
                            key="tiny-host", silent=True)

        def registered() -> bool:  # a free server under the key (server_info names it "server:tiny-host")
            try:
                queue = rpc.connect_tracker("127.0.0.1", tracker.port).summary()["queue_info"]
            except (OSError, RuntimeError):
                return False
            return queue.get("tiny-host", {}).get("free", 0) >= 1

        end = time.monotonic() + 60
        while not registered():  # the server registers its key with the tracker once it runs
            assert time.monotonic() < end, "the RPC server did not register with the tracker"
            time.sleep(0.3)
        yield f"127.0.0.1:{tracker.port}"
    finally:
        if server is not None:
            server.terminate()
        tracker.terminate()


def test_rpc_measurement_on_loopback(tmp_path, rpc_tracker):
    sites = {"here": {"tier": "edge", "target": "host"},
             "dev": {"tier": "cloud", "target": "host", "rpc": {"tracker": rpc_tracker, "key": "tiny-host"}}}
    path = write_app(tmp_path, sites=sites)
    table, _ = run(path, tmp_path / "cache")
    dev = table.get("mlp", "dev")
    assert dev.provenance == "rpc", table.warnings
    assert dev.latency_ms > 0 and dev.note == f"RPC {rpc_tracker} key tiny-host"  # timed there, not here
    assert table.get("mlp", "here").provenance == "measured"


def test_rpc_unreachable_falls_back_to_estimate_with_warning(tmp_path):
    sites = {"here": {"tier": "edge", "target": "host"},
             "dev": {"tier": "cloud", "target": "rpi5", "rpc": {"tracker": None, "key": "k"}}}
    with refused_ports(1) as [port]:  # no tracker there
        sites["dev"]["rpc"]["tracker"] = f"127.0.0.1:{port}"
        path = write_app(tmp_path, sites=sites)
        table, _ = run(path, tmp_path / "cache")
    dev = table.get("mlp", "dev")
    assert dev.provenance == "estimated"
    assert any("RPC measurement failed" in w for w in table.warnings)


def _python_only_app(tmp: Path, body: str) -> Path:
    (tmp / "steps.py").write_text(body)
    app = {"name": "py", "sites": {"here": {"tier": "edge", "target": "host"},
                                   "pi": {"tier": "edge", "target": "rpi5"}},
           "links": [{"between": ["here", "pi"], "bandwidth_mbps": 10, "rtt_ms": 1}],
           "models": {"step": {"python": "steps.py:post", "inputs": {"y": [4]}}},
           "sources": {"cam": {"site": "here", "rate_rps": 1}}, "sinks": {"out": {"site": "here"}},
           "flows": [{"from": "cam", "to": "step"}, {"from": "step", "to": "out"}]}
    path = tmp / "app.yaml"
    path.write_text(yaml.safe_dump(app))
    return path


def test_python_step_profiles_with_progress_bars(tmp_path):
    path = _python_only_app(tmp_path, "import numpy as np\ndef post(y):\n    return {'z': y * 2}\n")
    table, stats = run(path, tmp_path / "cache", progress=True)
    assert table.get("step", "here").provenance == "measured"
    pi = table.get("step", "pi")
    assert pi.provenance == "estimated" and "CPU peak ratio" in pi.note
    assert [(t.name, t.shape) for t in table.signatures["step"].outputs] == [("z", (4,))]
    assert stats["counters"].compiles == 0 and stats["counters"].measures == 1


def test_failing_python_step_is_an_input_error_naming_it(tmp_path):
    path = _python_only_app(tmp_path, "def post(y):\n    raise RuntimeError('boom')\n")
    result = CliRunner().invoke(cli, ["profile", str(path), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2, result.output
    assert "'step'" in result.output and "boom" in result.output and "steps.py" in result.output
