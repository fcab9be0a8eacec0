"""Issue 10's first check, with real parts end to end: on a model where ONNX Runtime is faster than
TVM on this host (by the profiler's own numbers), the plan chooses `onnxruntime/fp32`, the bundle
ships the ONNX file (node kind `onnx`), `planner up` serves it, and tritonclient gets ONNX Runtime's
own answer on the same input. Both builds are the profiler's own (measured on this host, verified)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest

from planner.errors import InputError
from planner.local.run import model_builds
from planner.model.open_app import open_app
from planner.pipeline import prepare, solve_prepared, write_solution
from planner.plan.problem import us
from planner.solver.cpsat import SolverConfig
from planner_runtime.bundle_format import Bundle
from tests import ROOT
from tests.up_process import planner_up
from tests.profiling.onnx_models import mlp

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# a 64x256 @ 256x1024 @ 1024x256 MLP: ONNX Runtime about 3x faster than untuned TVM on the 2-core
# development machine at the same thread count (1.47 against 4.53 ms, both on 2 threads)
APP = textwrap.dedent("""\
    name: mm
    sites:
      edge: {tier: edge, target: host, max_replicas: 1}
    models:
      m: {onnx: m.onnx, inputs: {x: [64, 256]}, sites: [edge]}
    sources: {cam: {site: edge, rate_rps: 1}}
    sinks: {screen: {site: edge}}
    flows:
      - {from: cam, to: m}
      - {from: m, to: screen}
    """)


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    work = tmp_path_factory.mktemp("orte2e")
    mlp(work / "m.onnx", n_in=256, n_hidden=1024, n_out=256, seed=4)
    (work / "app.yaml").write_text(APP)
    env = {**os.environ, "PLANNER_CACHE_DIR": str(work / "cache"), "PLANNER_TUNING_DIR": str(work / "tuning"),
           "PLANNER_CALIBRATION_DIR": str(work / "calibration"), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    with pytest.MonkeyPatch.context() as mp:
        for key in ("PLANNER_CACHE_DIR", "PLANNER_TUNING_DIR", "PLANNER_CALIBRATION_DIR"):
            mp.setenv(key, env[key])
        prepared = prepare(work / "app.yaml")
        table = prepared.profiles.table
        tvm, onnxrt = table.get("m", "edge", "tvm/fp32"), table.get("m", "edge", "onnxruntime/fp32")
        assert tvm is not None and onnxrt is not None, table.excluded
        plan = solve_prepared(prepared, SolverConfig(objective="latency", time_limit_s=10, workers=1))
        write_solution(prepared, plan, work / "out")
    return work, env, plan, tvm, onnxrt


def test_onnxruntime_wins_and_the_plan_chooses_it(solved):
    _, _, plan, tvm, onnxrt = solved
    assert tvm.provenance == onnxrt.provenance == "measured" and tvm.verified and onnxrt.verified
    assert tvm.latency_ms >= 2 * onnxrt.latency_ms, (tvm.latency_ms, onnxrt.latency_ms)
    report = plan.models["m"]
    assert (report.engine, report.precision, report.site) == ("onnxruntime", "fp32", "edge")
    # the solver counts whole microseconds (planner.plan.problem.us): a 0.4445 ms run is 0.445 in the
    # plan, 1.0e-3 off relatively, which rel=1e-3 refused on a fresh clone here
    assert report.latency_ms == us(onnxrt.latency_ms) / 1000


def test_the_bundle_ships_the_onnx_file_and_planner_run_follows_the_plan(solved):
    work, _, _, _, _ = solved
    site = work / "out" / "sites" / "edge"
    node = Bundle.read(site).nodes["m"]
    assert (node.kind, node.provider, node.artifact) == ("onnx", "CPUExecutionProvider", "models/m.onnx")
    assert (site / node.artifact).read_bytes() == (work / "m.onnx").read_bytes()
    assert not list(site.rglob("*.so")) and not list(site.rglob("*.tar"))  # no TVM library shipped
    checked = open_app(work / "app.yaml")
    assert model_builds(checked, None, work / "out") == {"m": "onnxruntime/fp32"}  # --plan OUT
    assert model_builds(checked, "tvm", work / "out") == {"m": "tvm/fp32"}  # --engine wins
    assert model_builds(checked, None, None) == {"m": "tvm/fp32"}  # no plan: as before
    other = work / "other.json"
    other.write_text((work / "out" / "plan.json").read_text().replace('"app": "mm"', '"app": "other"'))
    with pytest.raises(InputError, match="not a plan of .*app.yaml.*plan of app 'other'"):
        model_builds(checked, None, other)


def test_planner_up_serves_onnxruntime_s_answer_to_tritonclient(solved):
    import tritonclient.grpc as grpcclient

    work, env, _, _, _ = solved
    out = work / "out"
    x = np.random.default_rng(11).standard_normal((64, 256)).astype(np.float32)
    truth = ort.InferenceSession(str(work / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with planner_up(out, "--base-port", "0", "--for", "200", env=env) as up:
        address = json.loads((out / "logs" / "endpoints.json").read_text())["edge"]
        client = grpcclient.InferenceServerClient(address)
        assert client.get_model_metadata("m", as_json=True)["platform"] == "onnxruntime/CPUExecutionProvider"
        inp = grpcclient.InferInput("cam", [64, 256], "FP32")
        inp.set_data_from_numpy(x)
        served = client.infer("mm", [inp], client_timeout=60).as_numpy("y")
    assert up.proc.returncode == 0
    assert served.shape == truth.shape == (64, 256)
    np.testing.assert_allclose(served, truth, rtol=1e-5, atol=0)


def test_planner_run_with_the_plan_runs_its_builds(solved, tmp_path):
    from planner.local.run import run_app
    from planner.quantize import quantized_int8

    work, env, _, _, _ = solved
    x = np.random.default_rng(12).standard_normal((64, 256)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-m", "planner", "run", str(work / "app.yaml"), "--input",
                        f"cam={tmp_path / 'x.npy'}", "--plan", str(work / "out"), "--save", str(tmp_path / "y.npz")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    truth = ort.InferenceSession(str(work / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["y"], truth, rtol=1e-5, atol=0)
    # the same plan had it chosen onnxruntime/int8: the quantized file runs
    plan = json.loads((work / "out" / "plan.json").read_text())
    plan["models"]["m"]["precision"] = "int8"
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    given = {"cam": (f"cam={tmp_path / 'x.npy'}", tmp_path / "x.npy")}
    y8 = run_app(work / "app.yaml", given, plan=tmp_path / "plan.json")["y"]
    int8 = ort.InferenceSession(quantized_int8(work / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(y8, int8.run(None, {"x": x})[0])
    assert not np.allclose(y8, truth, rtol=1e-5, atol=0)
