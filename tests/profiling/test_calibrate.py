"""`planner calibrate` and the estimates that use calibrations.

The end-to-end check: a "device" with half this host's cores is an RPC server pinned to core 0
(`taskset -c 0`, one TVM thread) behind a real TVM RPC tracker on loopback. `planner calibrate`
measures the model set there and writes its calibration; a later profile of a model the set
does not contain, for a site with that target, uses it (the note names the file, the number
follows the file's efficiency); and a measurement of that model pinned the same way, in a
process of its own, falls inside the error the calibration states."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.profiling import calibration_fit as fit
from planner.profiling.calibration import Calibration, Found, find, read_file
from tests import ROOT
from tests.conftest import refused_ports, require_system
from tests.profiling.tiny_app import run
from tests.profiling.tiny_app import write_app as write_tiny_app

KEY = "half-host"


def small_cnn(path: Path) -> Path:
    """A model the calibration set does not hold: conv 3x3 8 -> 24, swish, max-pool, conv 3x3
    24 -> 24, residual add, on 1x8x64x64."""
    rng = np.random.default_rng(7)
    w = {"w1": rng.standard_normal((24, 8, 3, 3)) * 0.2, "w2": rng.standard_normal((24, 24, 3, 3)) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c1"], ["s1"]), helper.make_node("Mul", ["c1", "s1"], ["a1"]),
             helper.make_node("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "p1"], ["y"])]
    graph = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 24, 32, 32])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def half_target() -> dict:
    """This host with half its cores: the catalog's detected figures, peak halved."""
    from tvm.target import codegen

    from planner.app.targets import get_target

    host = get_target("host")
    cores = host.tvm_target["num-cores"] // 2
    return {"name": "half", "description": f"this host on {cores} of its cores", "tier": "edge",
            "tvm_target": {"kind": "llvm", "num-cores": cores, "mcpu": str(codegen.llvm_get_system_cpu())},
            "peak_gflops": host.peak_gflops / 2, "mem_bandwidth_gbs": host.mem_bandwidth_gbs, "memory_mb": 1024}


def pinned_env() -> dict:
    return {**os.environ, "TVM_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtime")])}


@pytest.fixture(scope="module")
def half_device():
    """A TVM RPC tracker (a process of its own, first free port from 9190) and an RPC server
    pinned to core 0 with one thread, registered under KEY; yields the tracker's HOST:PORT."""
    require_system("taskset", shutil.which("taskset") is not None, "util-linux")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two cores to have half of them")
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    tracker = Tracker("127.0.0.1", port=9190, port_end=9990, silent=True)
    address = f"127.0.0.1:{tracker.port}"
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", "11091",
         "--port-end", "11891", "--tracker", address, "--key", KEY, "--silent"],
        env=pinned_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        end = time.monotonic() + 60
        while True:  # the server registers its key with the tracker once it runs
            try:
                if rpc.connect_tracker("127.0.0.1", tracker.port).summary()["queue_info"].get(KEY, {}).get("free"):
                    break
            except (OSError, RuntimeError):
                pass
            assert server.poll() is None, "the RPC server exited"
            assert time.monotonic() < end, "the RPC server did not register with the tracker"
            time.sleep(0.3)
        yield address
    finally:
        os.killpg(server.pid, 15)  # the server and the session workers it forked, by its group
        server.wait(timeout=30)
        tracker.terminate()


def write_app(tmp: Path, half: dict) -> Path:
    small_cnn(tmp / "cnn.onnx")
    app = {"name": "calib", "sites": {"here": {"tier": "edge", "target": "host"},
                                      "half": {"tier": "edge", "target": half}},
           "links": [{"between": ["here", "half"], "bandwidth_mbps": 100, "rtt_ms": 1}],
           "models": {"cnn": {"onnx": "cnn.onnx", "inputs": {"x": [1, 8, 64, 64]}}},
           "sources": {"cam": {"site": "here", "rate_rps": 1}}, "sinks": {"out": {"site": "here"}},
           "flows": [{"from": "cam", "to": "cnn"}, {"from": "cnn", "to": "out"}]}
    path = tmp / "app.yaml"
    path.write_text(yaml.safe_dump(app, sort_keys=False))
    return path


def measure_pinned(half: dict, onnx_path: Path, tmp: Path) -> float:
    """The model built for the half target, timed on core 0 with one thread in a process of its own."""
    from planner.app.targets import Target
    from planner.profiling.compile import compile_analyzed
    from planner.profiling.onnx_import import import_onnx

    lib = tmp / "cnn_half.so"
    compile_analyzed(import_onnx(onnx_path, {"x": [1, 8, 64, 64]}), Target(**half)).executable.export_library(str(lib))
    script = ("import sys, numpy as np, tvm\nfrom tvm import relax\nfrom planner.profiling.measure import time_vm\n"
              "dev = tvm.cpu(); vm = relax.VirtualMachine(tvm.runtime.load_module(sys.argv[1]), dev)\n"
              "x = np.random.default_rng(0).random((1, 8, 64, 64)).astype('float32')\n"
              "print(time_vm(vm, dev, [tvm.runtime.tensor(x, dev)]).median_ms)\n")
    r = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", script, str(lib)], env=pinned_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return float(r.stdout.strip().splitlines()[-1])


def test_calibrate_over_rpc_then_estimates_use_it(tmp_path, half_device):
    half = half_target()
    (tmp_path / "half.yaml").write_text(yaml.safe_dump(half))
    app, cache, user = write_app(tmp_path, half), tmp_path / "cache", tmp_path / "env-calibration"

    before = run(app, cache)[0].get("cnn", "half")
    assert before.provenance == "estimated" and "no calibration for half" in before.note

    result = CliRunner().invoke(cli, ["calibrate", "--target", str(tmp_path / "half.yaml"), "--rpc", half_device,
                                      "--key", KEY])
    assert result.exit_code == 0, result.output
    written = user / "half.yaml"  # the user's calibration folder by default ($PLANNER_CALIBRATION_DIR)
    cal = read_file(written)
    [tvm_fit] = cal.fits  # ONNX Runtime does not run over TVM RPC
    assert (tvm_fit.engine, tvm_fit.tuning, tvm_fit.threads) == ("tvm", "untuned", 1)  # the device's one thread
    assert len(tvm_fit.models) == 5 and KEY in cal.machine["where"]
    assert tvm_fit.efficiency == pytest.approx(float(np.median([m.efficiency for m in tvm_fit.models])), rel=1e-3)

    table, stats = run(app, cache)  # warm: nothing compiled or measured, yet the new calibration is used
    after = table.get("cnn", "half")
    assert stats["counters"].compiles == stats["counters"].measures == 0
    assert str(written) in after.note and after.expected_error_pct == tvm_fit.expected_error_pct
    assert after.latency_ms != pytest.approx(before.latency_ms, rel=1e-3)

    # the number follows the file: twice the efficiency, half the estimate
    data = yaml.safe_load(written.read_text())
    data["fits"][0]["efficiency"] *= 2
    written.write_text(yaml.safe_dump(data))
    assert run(app, cache)[0].get("cnn", "half").latency_ms == pytest.approx(after.latency_ms / 2, rel=1e-9)

    # the estimate against the same model measured pinned to half the cores
    measured = measure_pinned(half, tmp_path / "cnn.onnx", tmp_path)
    error = fit.error_pct(after.latency_ms, measured)
    print(f"half target: host-fraction {before.latency_ms:.3f} ms, calibrated {after.latency_ms:.3f} ms, measured {measured:.3f} ms, error {error:.0f} % "
          f"(stated {tvm_fit.expected_error_pct:.0f} %)")
    assert error <= tvm_fit.expected_error_pct


def test_fit_arithmetic():
    effs = [0.1, 0.2, 0.4]
    assert fit.fitted(effs) == 0.2
    assert fit.residuals_pct(effs) == pytest.approx([100, 0, 100])  # a factor 2 either way
    # leave one out: 0.1 from median(0.2, 0.4) = 0.3 (factor 3), 0.2 from 0.25, 0.4 from 0.15
    assert fit.leave_one_out_pct(effs) == pytest.approx([200, 25, 166.6667], rel=1e-6)
    assert fit.expected_error_pct(effs) == pytest.approx(200)
    assert fit.expected_error_pct([0.1]) is None and fit.spread_pct([0.05, 0.2]) == pytest.approx(300)
    assert fit.error_pct(9, 1) == fit.error_pct(1, 9) == pytest.approx(800)


def _cal(name: str, identity: dict, eff: float, scope: str = "target", kind: str | None = None) -> Calibration:
    return Calibration.model_validate({
        "name": name, "scope": scope, "kind": kind, "identity": identity, "measured_at": "2026-11-29",
        "fits": [{"engine": "tvm", "tuning": "untuned", "efficiency": eff, "expected_error_pct": 50,
                  "models": [{"name": "m", "measured_ms": 1, "roofline_ms": eff, "efficiency": eff}]}]})


def test_a_calibration_applies_only_to_the_figures_it_was_measured_on():
    from planner.app.targets import get_target
    from planner.profiling.calibration import identity

    pi, gpu = get_target("rpi5"), get_target("g6-xlarge")
    own = Found(_cal("rpi5", identity(pi), 0.3), "mine/rpi5.yaml")
    edited = Found(_cal("rpi5", {**identity(pi), "peak_gflops": 1.0}, 0.1), "old/rpi5.yaml")
    cuda = Found(_cal("h", {}, 0.01, scope="kind", kind="cuda"), "h.yaml")
    got = find(pi, "tvm", "untuned", [edited, own, cuda])
    assert got.found is own and got.skipped == ("old/rpi5.yaml",)
    assert find(pi, "tvm", "tuned:3/9", [own]).fit is None  # no tuned calibration: not the untuned one
    assert find(pi, "onnxruntime", "untuned", [own]).fit is None
    assert find(gpu, "tvm", "untuned", [own, cuda]).found is cuda  # a GPU without its own: the kind's
    assert find(pi, "tvm", "untuned", [edited, cuda]).found is None


def test_the_shipped_calibrations_read_and_cover_this_host_and_cuda():
    from planner.app.targets import get_target
    from planner.profiling.calibration import all_calibrations

    shipped = {f.path: f.calibration for f in all_calibrations(ROOT / "no-such-folder")}
    h200 = shipped["profiles/calibration/nvidia-h200.yaml"]
    [tvm_fit] = h200.fits
    # the notes' figures: 8.5, 0.56 and 57 ms, each efficiency its roofline over its time
    assert [m.measured_ms for m in tvm_fit.models] == [8.5, 0.56, 57]
    assert all(m.efficiency == pytest.approx(m.roofline_ms / m.measured_ms, rel=1e-3) for m in tvm_fit.models)
    assert find(get_target("jetson-orin-nano"), "tvm", "untuned", list(
        Found(c, p) for p, c in shipped.items())).found.path.endswith("nvidia-h200.yaml")
    assert "profiles/calibration/host.yaml" in shipped


@pytest.mark.parametrize("args, expect", [
    (["--target", "no-such-target"], "valid targets"),
    (["--rpc", "127.0.0.1:9190"], "--rpc HOST:PORT and --key KEY go together"),
    (["--rpc", "localhost", "--key", "k"], "--rpc must be HOST:PORT"),
    (["--target", "missing.yaml"], "missing.yaml: target file cannot be read"),
    (["--target", "rpi5"], "'rpi5' is not this host: measure it on the device, with --rpc"),
])
def test_calibrate_bad_input_is_one_line_and_exit_2(tmp_path, args, expect):
    result = CliRunner().invoke(cli, ["calibrate", *args, "-o", str(tmp_path)])
    assert result.exit_code == 2 and expect in result.output, result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())


def test_calibrate_bad_target_file_and_unreachable_tracker(tmp_path):
    (tmp_path / "t.yaml").write_text("name: t\ntvm_target: {kind: llvm}\n")
    result = CliRunner().invoke(cli, ["calibrate", "--target", str(tmp_path / "t.yaml"), "-o", str(tmp_path)])
    assert result.exit_code == 2 and "t.yaml: not a target: peak_gflops: Field required" in result.output
    with refused_ports(1) as [port]:  # nobody serves there
        result = CliRunner().invoke(cli, ["calibrate", "--target", "rpi5", "--rpc", f"127.0.0.1:{port}", "--key", "k",
                                          "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and f"cannot calibrate rpi5: RPC tracker 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_calibrate_never_replaces_a_calibration_without_force(tmp_path):
    (tmp_path / "host.yaml").write_text("mine\n")
    result = CliRunner().invoke(cli, ["calibrate", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "--force replaces it" in result.output
    assert (tmp_path / "host.yaml").read_text() == "mine\n"


def test_a_broken_calibration_file_is_an_error_naming_it_exit_2(tmp_path, monkeypatch):
    bad = tmp_path / "cal"
    bad.mkdir()
    (bad / "rpi5.yaml").write_text("name: rpi5\nfits: 3\n")
    monkeypatch.setenv("PLANNER_CALIBRATION_DIR", str(bad))
    app = write_tiny_app(tmp_path)  # mlp on host and rpi5: the rpi5 estimate reads the calibrations
    result = CliRunner().invoke(cli, ["profile", str(app), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2, result.output
    assert f"{bad / 'rpi5.yaml'}: not a calibration file: " in result.output and "models." not in result.output


def test_estimates_by_calibration_and_the_fallback_error():
    from planner.app.targets import get_target
    from planner.profiling.calibrated import estimate_for
    from planner.profiling.compile import Kernel

    kernels = [Kernel("conv", flops=3e9, nbytes=2e6, calls=2)]
    host, gpu, pi = get_target("host"), get_target("g6-xlarge"), get_target("rpi5")
    cuda = Found(_cal("h", {}, 0.02, scope="kind", kind="cuda"), "h.yaml")
    cpu = Found(_cal("other-cpu", {}, 0.08), "o.yaml")
    est = estimate_for(kernels, 50.0, host, gpu, "tvm", "untuned", [cpu, cuda])
    # the L4: 30.3 TFLOP/s, 300 GB/s; compute-bound: 2 x 3e9 / 30.3e12 s, over 2 % of it reached
    assert est.latency_ms == pytest.approx(2 * 3e9 / 30.3e12 * 1e3 / 0.02)
    assert est.calibration == "h.yaml" and "h.yaml" in est.note and est.expected_error_pct == 50
    # rpi5 has none: the host time scaled by the roofline ratio, and the spread 0.02 .. 0.08 (4x)
    fb = estimate_for(kernels, 50.0, host, pi, "tvm", "untuned", [cpu, cuda])
    assert fb.calibration is None and fb.expected_error_pct == pytest.approx(300)

    def roofline(t) -> float:
        return 2 * max(3e9 / (t.peak_gflops * 1e9), 2e6 / (t.mem_bandwidth_gbs * 1e9))

    assert fb.latency_ms == pytest.approx(50.0 * roofline(pi) / roofline(host))
    assert "no calibration for rpi5 (tvm untuned)" in fb.note
    assert estimate_for(kernels, 50.0, host, pi, "tvm", "untuned", [cuda]).expected_error_pct is None
