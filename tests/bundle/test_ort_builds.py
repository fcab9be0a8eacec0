"""Bundles ship the build the plan chose (issue 10, item 2): an `onnxruntime/fp32` model ships its
ONNX file, `onnxruntime/int8` the dynamically quantized file, `onnxruntime/fp16` (GPU sites) the fp16 file
(planner.quantize), each checksummed,
with the provider of its site's hardware and the threads its build was profiled with; the runtime
runs that file, and refuses a bundle whose ONNX file changed.

The builds come from a profile table built here (numbers for the ONNX Runtime builds beside the
given ones), solved by the real solver; the numbers only decide which build the plan takes."""

from __future__ import annotations

import json
import logging
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from planner.pipeline import Prepared, prepare, solve_prepared, write_solution
from planner.plan.problem import build_instance
from planner.profiling.table import NodeProfile
from planner.quantize import float16, quantized_int8
from planner.solver.cpsat import SolverConfig
from planner_runtime.bundle_format import Bundle, BundleError
from planner_runtime.nodes import load_runners
from tests.profiling.onnx_models import mlp

APP = textwrap.dedent("""\
    name: builds
    sites:
      edge: {tier: edge, target: host, max_replicas: 1}
      gpu:  {tier: cloud, target: g4dn-xlarge, max_replicas: 1}
    links:
      - {between: [edge, gpu], bandwidth_mbps: 1000, rtt_ms: 2}
    models:
      m: {onnx: m.onnx, inputs: {x: [8, 64]}, sites: [edge], profile: {edge: {latency_ms: 4, memory_mb: 5}}}
      g: {onnx: g.onnx, inputs: {x: [8, 16]}, sites: [gpu], profile: {gpu: {latency_ms: 4, memory_mb: 5}}}
    sources: {cam: {site: edge, rate_rps: 1}}
    sinks: {screen: {site: edge}}
    flows:
      - {from: cam, to: m}
      - {from: m, to: g}
      - {from: g, to: screen}
    """)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    work = tmp_path_factory.mktemp("ortbuilds")
    mlp(work / "m.onnx", n_in=64, n_hidden=128, n_out=16, seed=1)
    mlp(work / "g.onnx", n_in=16, n_hidden=32, n_out=4, seed=2)
    (work / "app.yaml").write_text(APP)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLANNER_CACHE_DIR", str(work / "cache"))
        mp.setenv("PLANNER_TUNING_DIR", str(work / "tuning"))
        mp.setenv("PLANNER_CALIBRATION_DIR", str(work / "calibration"))
        yield work


def solve_with(app, out_name: str, builds: dict[tuple[str, str], tuple[str, int | None]]):
    """The app solved with an ONNX Runtime build beside each given number, faster than it (so the
    plan takes it), then OUT written as `planner solve` writes it. builds: (model, site) -> (build, threads)."""
    prepared = prepare(app / "app.yaml")
    table = prepared.profiles.table
    for (node, site), (build, threads) in builds.items():
        engine, precision = build.split("/")
        table.entries.append(NodeProfile(node=node, site=site, engine=engine, precision=precision, latency_ms=1.0,
                                         memory_mb=1.0, provenance="measured", threads=threads, verified=True))
    prepared = Prepared(prepared.checked, prepared.profiles, build_instance(prepared.checked, table))
    plan = solve_prepared(prepared, SolverConfig(time_limit_s=10, workers=1))
    assert {m: f"{r.engine}/{r.precision}" for m, r in plan.models.items()} == {
        m: b for (m, _), (b, _) in builds.items()}
    out = app / out_name
    write_solution(prepared, plan, out)
    return out


@pytest.fixture(scope="module")
def fp32_out(app):
    return solve_with(app, "out-fp32", {("m", "edge"): ("onnxruntime/fp32", 1), ("g", "gpu"): ("onnxruntime/fp32", 4)})


def _inputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((8, n)).astype(np.float32)}


def _ort(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_an_onnxruntime_build_ships_its_onnx_file_with_provider_and_threads(app, fp32_out):
    edge = fp32_out / "sites" / "edge"
    bundle = Bundle.read(edge)  # checksums verified
    node = bundle.nodes["m"]
    assert (node.kind, node.artifact, node.provider, node.threads) == ("onnx", "models/m.onnx",
                                                                       "CPUExecutionProvider", 1)
    assert node.compiled_for is None and node.host_fallback is None  # no TVM library anywhere
    assert (edge / "models" / "m.onnx").read_bytes() == (app / "m.onnx").read_bytes()
    assert bundle.checksums == {"models/m.onnx": bundle.checksums["models/m.onnx"]}
    assert sorted(p.name for p in (edge / "models").iterdir()) == ["m.onnx"]
    runner = load_runners(bundle, edge)["m"]
    assert runner.platform == "onnxruntime/CPUExecutionProvider" and runner.fallback is None
    assert runner._sess.get_session_options().intra_op_num_threads == 1
    feeds = _inputs(64)
    np.testing.assert_array_equal(runner(feeds)["y"], _ort(app / "m.onnx", feeds))


def test_a_bundle_whose_onnx_file_changed_is_refused(app, fp32_out, tmp_path):
    import shutil

    edge = shutil.copytree(fp32_out / "sites" / "edge", tmp_path / "edge")
    model = onnx.load(edge / "models" / "m.onnx")
    w = np.frombuffer(model.graph.initializer[0].raw_data, np.float32).copy()
    w[0] += 1.0  # still a valid model: one weight changed
    model.graph.initializer[0].raw_data = w.tobytes()
    onnx.save(model, edge / "models" / "m.onnx")
    with pytest.raises(BundleError, match=r"models/m\.onnx: its sha256 is not the one in .*bundle\.yaml"):
        Bundle.read(edge)


def test_a_gpu_site_names_cuda_and_the_runtime_falls_back_to_the_cpu_loudly(app, fp32_out, caplog):
    # this machine has no GPU (and onnxruntime, not onnxruntime-gpu): the CUDA provider is missing here
    assert "CUDAExecutionProvider" not in ort.get_available_providers()
    site = fp32_out / "sites" / "gpu"
    bundle = Bundle.read(site)
    node = bundle.nodes["g"]
    assert (node.kind, node.provider, node.threads) == ("onnx", "CUDAExecutionProvider", 4)
    with caplog.at_level(logging.WARNING, logger="planner_runtime"):
        runner = load_runners(bundle, site)["g"]
    warning = "CUDAExecutionProvider is not available on this machine"
    assert any(warning in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records), caplog.text
    assert runner.platform.startswith("onnxruntime/CPUExecutionProvider (WARNING: ") and warning in runner.platform
    feeds = _inputs(16, seed=5)
    np.testing.assert_array_equal(runner(feeds)["y"], _ort(app / "g.onnx", feeds))


def test_an_int8_bundle_runs_the_quantized_file(app):
    out = solve_with(app, "out-int8", {("m", "edge"): ("onnxruntime/int8", None),
                                       ("g", "gpu"): ("onnxruntime/fp32", None)})
    edge = out / "sites" / "edge"
    bundle = Bundle.read(edge)
    node = bundle.nodes["m"]
    assert (node.kind, node.artifact, node.threads) == ("onnx", "models/m.int8.onnx", None)
    shipped = (edge / "models" / "m.int8.onnx").read_bytes()
    assert shipped == quantized_int8(app / "m.onnx")  # the file the profiler measures
    ops = {n.op_type for n in onnx.load_model_from_string(shipped).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, ops
    feeds = _inputs(64, seed=7)
    served = load_runners(bundle, edge)["m"](feeds)["y"]
    np.testing.assert_array_equal(served, _ort(shipped, feeds))
    fp32 = _ort(app / "m.onnx", feeds)
    assert not np.array_equal(served, fp32)  # not the fp32 model...
    np.testing.assert_allclose(served, fp32, rtol=0, atol=0.05 * np.abs(fp32).max())  # ...but close to it
    plan = yaml.safe_load((out / "plan.json").read_text())
    assert plan["models"]["m"]["precision"] == "int8"


def test_an_fp16_bundle_on_a_gpu_site_ships_the_fp16_file_on_cuda(app):
    out = solve_with(app, "out-fp16", {("m", "edge"): ("onnxruntime/fp32", None),
                                       ("g", "gpu"): ("onnxruntime/fp16", None)})
    site = out / "sites" / "gpu"
    bundle = Bundle.read(site)
    node = bundle.nodes["g"]
    assert (node.kind, node.artifact, node.provider) == ("onnx", "models/g.fp16.onnx", "CUDAExecutionProvider")
    shipped = (site / "models" / "g.fp16.onnx").read_bytes()
    assert shipped == float16(app / "g.onnx")  # the file the profiler checked
    model = onnx.load_model_from_string(shipped)
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.FLOAT]  # fed as fp32
    feeds = _inputs(16, seed=3)
    served = load_runners(bundle, site)["g"](feeds)["y"]  # no GPU here: ONNX Runtime's CPU, with a warning
    np.testing.assert_array_equal(served, _ort(shipped, feeds))
    fp32 = _ort(app / "g.onnx", feeds)
    assert served.dtype == np.float32 and not np.array_equal(served, fp32)
    np.testing.assert_allclose(served, fp32, rtol=0, atol=0.01 * np.abs(fp32).max())
    assert json.loads((out / "plan.json").read_text())["models"]["g"]["precision"] == "fp16"


def test_a_build_no_bundle_can_ship_is_one_clear_error(app, fp32_out):
    from planner.bundle.builds import chosen_build
    from planner.errors import PlannerError
    from planner.plan.load import load_plan

    plan = load_plan(fp32_out)
    assert chosen_build(plan, "m") == "onnxruntime/fp32"
    plan.models["m"].engine = "tvm"
    plan.models["m"].precision = "int8"  # no such build: TVM's builds are fp32
    with pytest.raises(PlannerError, match=r"models\.m: build tvm/int8 cannot be shipped"):
        chosen_build(plan, "m")
    plan.models["m"].engine = "given"  # given numbers: the TVM build, as bundles always shipped
    assert chosen_build(plan, "m") == "tvm/fp32"


def test_the_manifests_of_onnxruntime_sites_need_nothing_of_tvm(fp32_out):
    import math

    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    plan = yaml.safe_load((fp32_out / "plan.json").read_text())
    for site in ("edge", "gpu"):
        docs = list(yaml.safe_load_all((fp32_out / "deploy" / "k8s" / f"{site}.yaml").read_text()))
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
        stateful_set = next(d for d in docs if d["kind"] == "StatefulSet")
        container = stateful_set["spec"]["template"]["spec"]["containers"][0]
        # the plan's memory of the ONNX Runtime build plus the runtime's own 256 MiB
        memory = math.ceil(plan["sites"][site]["memory_mb_used"] + 256)
        assert container["resources"]["requests"]["memory"] == f"{memory}Mi"
        assert container["args"][:2] == ["serve", f"/bundle/{site}"]
