"""The dataflow executor, in process (no gRPC). The tensor codec: test_tensor_codec.py."""

from __future__ import annotations

import numpy as np
import pytest

from tests.runtime import fanapp
from planner_runtime.bundle_format import Endpoint, FlowEdge
from planner_runtime.executor import Executor, Graph, GraphError, NodeError

X = np.random.default_rng(3).standard_normal((1, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return fanapp.cached_models(tmp_path_factory.getbasetemp().parent / "runtime-models")


def numpy_runners(onnx_paths):
    """The sample graph written out in numpy from the ONNX weights: an independent reference."""
    import onnx
    from onnx import numpy_helper

    w = {n: {i.name: numpy_helper.to_array(i) for i in onnx.load(p).graph.initializer} for n, p in onnx_paths.items()}
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    return {
        "a": lambda f: {"h": np.maximum(f["x"] @ w["a"]["W"] + w["a"]["B"], 0)},
        "b": lambda f: {"p": np.tanh(f["h"] @ w["b"]["W"])},
        "c": lambda f: {"q": sig(f["h"] @ w["c"]["W"])},
        "glue": lambda f: {"r": f["p"] * 2 + 0.5, "label": np.array([b"class-%d" % int(np.argmax(f["p"]))], dtype=object)},
        "d": lambda f: {"out": np.concatenate([f["r"], f["q"]], axis=1) @ w["d"]["W"]},
    }


def test_ort_reference_matches_numpy_and_tvm(models, tmp_path):
    from planner_runtime.nodes import TvmNode

    onnx_paths, libs = models
    ref = fanapp.reference(onnx_paths, tmp_path).run({"x": X})
    bundle = fanapp.graph_bundle({s: 1 for s in fanapp.SITES}, "edge")
    expect = Executor(bundle, numpy_runners(onnx_paths)).run({"x": X})
    tvm_runners = {n: TvmNode(n, libs[n], s.inputs, s.outputs) for n, s in bundle.nodes.items() if s.kind == "tvm"}
    tvm_runners["glue"] = numpy_runners(onnx_paths)["glue"]
    got = Executor(bundle, tvm_runners).run({"x": X})
    assert set(ref) == {"out", "p", "label"}
    for k in ("out", "p"):
        np.testing.assert_allclose(ref[k], expect[k], atol=1e-4)
        np.testing.assert_allclose(got[k], ref[k], atol=1e-4)
    assert ref["label"][0] == expect["label"][0] == got["label"][0]


def test_site_executor_hands_back_remote_flows(models):
    onnx_paths, _ = models
    bundle = fanapp.graph_bundle({s: 1 for s in fanapp.SITES}, "edge")
    ex = Executor(bundle, {"a": numpy_runners(onnx_paths)["a"]}, site="edge")
    from planner_runtime.executor import RequestState

    state = RequestState()
    timings = []
    out = ex.advance(state, ex.source_deliveries({"x": X}), timings)
    assert sorted(d.flow.dst.name for d in out) == ["b", "c"]  # fan-out to two other sites
    assert [(t.kind, t.name) for t in timings] == [("queue", "a"), ("model", "a")] and ex.done(state)
    assert timings[0].ms == 0  # a free instance: no wait


def test_fan_in_waits_for_every_input(models):
    onnx_paths, _ = models
    bundle = fanapp.graph_bundle({s: 1 for s in fanapp.SITES}, "cloud")
    runs = numpy_runners(onnx_paths)
    ex = Executor(bundle, {"c": runs["c"], "d": runs["d"]}, site="cloud")
    from planner_runtime.executor import Delivery, RequestState

    g = ex.graph
    state = RequestState()
    to_c = next(f for f in g.flows if f.dst.name == "c")
    to_d_r = next(f for f in g.flows if f.dst.name == "d" and f.dst.tensor == "r")
    assert ex.advance(state, [Delivery(to_c, np.ones((1, 32), np.float32))]) == []  # d still waits for r
    assert not ex.done(state)
    out = ex.advance(state, [Delivery(to_d_r, np.ones((1, 16), np.float32))])
    assert [(d.flow.dst.kind, d.flow.dst.name) for d in out] == [("sink", "screen")] and ex.done(state)


def test_graph_errors_name_the_problem():
    bundle = fanapp.graph_bundle({s: 1 for s in fanapp.SITES}, "edge")
    dup = bundle.model_copy(deep=True)
    dup.flows.append(FlowEdge(src=Endpoint(kind="node", name="c", tensor="q"), dst=Endpoint(kind="node", name="d", tensor="r"),
                              tensor=dup.flows[-1].tensor))
    with pytest.raises(GraphError, match="'r' of node 'd' is fed twice"):
        Graph(dup)
    with pytest.raises(GraphError, match="no runner for node"):
        Executor(bundle, {})
    ex = Executor(bundle, {n: (lambda f: {}) for n in bundle.nodes})
    with pytest.raises(NodeError, match="node 'a': did not return output"):
        ex.run({"x": X})
    with pytest.raises(GraphError, match="ensemble input 'x' missing"):
        ex.run({})


def test_loading_a_library_keeps_stderr_but_not_tvm_scope_warnings(models, capfd, tmp_path):
    import os

    import tvm
    from tvm import relax

    from planner.profiling.compile import compile_onnx_for
    from planner.profiling.export import export_artifact
    from planner.app.targets import get_target
    from planner_runtime.nodes import TvmNode
    from planner_runtime.tvm_noise import without_scope_warnings

    onnx_paths, _ = models
    host = get_target("host")
    ex = compile_onnx_for(onnx_paths["a"], {"x": [1, 64]}, host)
    relax.VirtualMachine(ex, tvm.cpu())  # run before export, as the profiler does: scopes get recorded
    capfd.readouterr()
    lib, _ = export_artifact(ex, host, tmp_path, "a")
    assert "Scope Saving:" not in capfd.readouterr().err
    tvm.runtime.load_module(str(lib))  # TVM 0.27 as is: one warning per constant
    assert "Scope Loaded:" in capfd.readouterr().err
    bundle = fanapp.graph_bundle({s: 1 for s in fanapp.SITES}, "edge")
    with without_scope_warnings():
        node = TvmNode("a", lib, bundle.nodes["a"].inputs, bundle.nodes["a"].outputs)
        os.write(2, b"another thread's line\n")  # anything else on fd 2 meanwhile comes through
    err = capfd.readouterr().err
    assert "Scope Loaded:" not in err and "another thread's line" in err
    assert node({"x": X})["h"].shape == (1, 32)


@pytest.mark.parametrize("where", ["import", "call"])
def test_a_step_that_calls_sys_exit_fails_its_request_not_the_site(tmp_path, where):
    from planner_runtime.nodes import ArtifactError, PythonNode
    from planner_runtime.bundle_format import Tensor

    step = tmp_path / "step.py"
    body = "def f(x):\n    sys.exit(3)\n" if where == "call" else "sys.exit(4)\ndef f(x):\n    return {'y': x}\n"
    step.write_text("import sys\n" + body)
    spec = [Tensor(name="x", dtype="float32", shape=[1, 64])], [Tensor(name="y", dtype="float32", shape=[1, 64])]
    if where == "import":
        with pytest.raises(ArtifactError, match=r"node .n.: importing .*step.py failed: it exited \(SystemExit\(4\)\)"):
            PythonNode("n", step, "f", *spec)
        return
    ex_node = PythonNode("n", step, "f", *spec)
    with pytest.raises(RuntimeError, match=r"step.py: f: it exited \(SystemExit\(3\)\)"):
        ex_node({"x": X})
