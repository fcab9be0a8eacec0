"""A small fan-out / fan-in ensemble across 3 sites, for the runtime's tests and benchmark.

    x --a(edge,tvm)--h--+--b(mec,tvm)--p--glue(mec,python)--r--+
                        |                 |        |            +--d(cloud,tvm)--out--> screen(edge)
                        +--c(cloud,tvm)--q---------|------------+
                                          p -------+--> screen     label (BYTES) --> screen

Models are ONNX graphs made with onnx.helper (fixed random weights), compiled by TVM for this
host (`compile_models`); `write_bundles` lays out OUT/sites/<site>/bundle.yaml like the planner
does, plus OUT/plan.json with a prediction for `planner bench`; `reference` runs the same graph
in one process with ONNX Runtime (the truth the runtime must match).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from planner_runtime.bundle_format import (Bundle, Endpoint, FlowEdge, NodeSpec, RuntimeSettings, SinkSpec, SiteEndpoint,
                                   SourceSpec, Tensor)

APP = "fanapp"
SITES = ("edge", "mec", "cloud")
F32 = "float32"

GLUE_PY = '''"""Glue step between b and d (python, numpy in and out)."""
import os
import time

import numpy as np


def glue(p):
    gate = os.environ.get("GLUE_GATE_FILE")
    while gate and os.path.exists(gate):  # a test holds the step until it removes the file
        time.sleep(0.02)
    r = (p * 2.0 + 0.5).astype(np.float32)
    label = np.array([b"class-%d" % int(np.argmax(p))], dtype=object)
    return {"r": r, "label": label}
'''

ECHO_PY = '''"""Identity step (benchmark)."""


def echo(x):
    return {"y": x}
'''


def _t(name: str, shape: list[int], dtype: str = F32) -> Tensor:
    return Tensor(name=name, dtype=dtype, shape=shape)


NODES = {  # name: (site, kind, inputs, outputs)
    "a": ("edge", "tvm", [_t("x", [1, 64])], [_t("h", [1, 32])]),
    "b": ("mec", "tvm", [_t("h", [1, 32])], [_t("p", [1, 16])]),
    "c": ("cloud", "tvm", [_t("h", [1, 32])], [_t("q", [1, 16])]),
    "glue": ("mec", "python", [_t("p", [1, 16])], [_t("r", [1, 16]), _t("label", [1], "bytes")]),
    "d": ("cloud", "tvm", [_t("r", [1, 16]), _t("q", [1, 16])], [_t("out", [1, 8])]),
}
FLOWS = [  # (src kind, src name, tensor) -> (dst kind, dst name, tensor)
    (("source", "cam", "x"), ("node", "a", "x")),
    (("node", "a", "h"), ("node", "b", "h")),
    (("node", "a", "h"), ("node", "c", "h")),
    (("node", "b", "p"), ("node", "glue", "p")),
    (("node", "b", "p"), ("sink", "screen", "p")),
    (("node", "glue", "r"), ("node", "d", "r")),
    (("node", "glue", "label"), ("sink", "screen", "label")),
    (("node", "c", "q"), ("node", "d", "q")),
    (("node", "d", "out"), ("sink", "screen", "out")),
]


def make_models(directory: Path) -> dict[str, Path]:
    """The ONNX models of the tvm nodes (deterministic weights)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def weight(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    def save(name, nodes, inputs, outputs, inits):
        graph = helper.make_graph(nodes, name,
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        path = directory / f"{name}.onnx"
        onnx.save(model, path)
        return path

    mk = helper.make_node
    return {
        "a": save("a", [mk("MatMul", ["x", "W"], ["m"]), mk("Add", ["m", "B"], ["s"]), mk("Relu", ["s"], ["h"])],
                  [("x", [1, 64])], [("h", [1, 32])], [weight("W", (64, 32)), weight("B", (32,))]),
        "b": save("b", [mk("MatMul", ["h", "W"], ["m"]), mk("Tanh", ["m"], ["p"])],
                  [("h", [1, 32])], [("p", [1, 16])], [weight("W", (32, 16))]),
        "c": save("c", [mk("MatMul", ["h", "W"], ["m"]), mk("Sigmoid", ["m"], ["q"])],
                  [("h", [1, 32])], [("q", [1, 16])], [weight("W", (32, 16))]),
        "d": save("d", [mk("Concat", ["r", "q"], ["k"], axis=1), mk("MatMul", ["k", "W"], ["out"])],
                  [("r", [1, 16]), ("q", [1, 16])], [("out", [1, 8])], [weight("W", (32, 8))]),
    }


def host_target():
    import tvm

    return tvm.target.Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": 2})


def compile_onnx(onnx_path: Path, out: Path) -> Path:
    """Compile an ONNX model with TVM for this host and export the library (.so)."""
    import onnx
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(onnx_path)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    mod = from_onnx(model, shape_dict=shapes, keep_params_in_input=False)
    ex = tvm.compile(mod, target=host_target())
    ex.export_library(str(out))
    return Path(out)


def compile_models(onnx_paths: dict[str, Path], directory: Path) -> dict[str, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return {n: compile_onnx(p, directory / f"{n}.so") for n, p in onnx_paths.items()}


def graph_bundle(ports: dict[str, int], site: str, deadline_ms: float = 5000,
                 max_message_bytes: int = 64 << 20) -> Bundle:
    """The bundle of `site` (artifact fields filled by write_bundles)."""
    specs = {n: NodeSpec(site=s, kind=k, inputs=i, outputs=o) for n, (s, k, i, o) in NODES.items()}
    tensors = {(n, t.name): t for n, (_, _, _, outs) in NODES.items() for t in outs}
    tensors[("cam", "x")] = _t("x", [1, 64])
    flows = [FlowEdge(src=Endpoint(kind=sk, name=sn, tensor=st), dst=Endpoint(kind=dk, name=dn, tensor=dt),
                      tensor=tensors[(sn, st)]) for (sk, sn, st), (dk, dn, dt) in FLOWS]
    return Bundle(
        app=APP, site=site,
        sites={s: SiteEndpoint(address=f"127.0.0.1:{ports[s]}", tier=t, target="host")
               for s, t in zip(SITES, ("edge", "base-station", "cloud"))},
        sources={"cam": SourceSpec(site="edge", tensors=[_t("x", [1, 64])])},
        sinks={"screen": SinkSpec(site="edge", tensors=[_t("out", [1, 8]), _t("p", [1, 16]), _t("label", [1], "bytes")])},
        nodes=specs, flows=flows,
        runtime=RuntimeSettings(max_message_bytes=max_message_bytes, default_deadline_ms=deadline_ms,
                                forward_timeout_ms=deadline_ms),
    )


def write_bundles(out: Path, ports: dict[str, int], libs: dict[str, Path], onnx_paths: dict[str, Path] | None = None,
                  kind: str = "tvm", deadline_ms: float = 5000) -> Path:
    """OUT/sites/<site>/ for the 3 sites (kind "tvm": the compiled libs; "onnx": the ONNX models), OUT/plan.json."""
    out = Path(out)
    for site in SITES:
        d = out / "sites" / site
        d.mkdir(parents=True, exist_ok=True)
        b = graph_bundle(ports, site, deadline_ms)
        for name, spec in b.nodes.items():
            if spec.site != site:
                continue
            if spec.kind == "python":
                (d / "glue.py").write_text(GLUE_PY)
                spec.artifact, spec.function = "glue.py", "glue"
            elif kind == "onnx":
                shutil.copy2(onnx_paths[name], d / f"{name}.onnx")
                spec.kind, spec.artifact = "onnx", f"{name}.onnx"
            else:
                shutil.copy2(libs[name], d / f"{name}.so")
                spec.artifact, spec.compiled_for, spec.host_fallback = f"{name}.so", "host", f"{name}.so"
        b.write(d)
    (out / "plan.json").write_text(json.dumps(sample_plan(), indent=2))
    return out


def sample_plan() -> dict:
    """A plan.json for the sample app, with the prediction `planner bench` reads (models, transfers)."""
    def m(name, site, ms):
        return {"kind": "model", "name": name, "ms": ms, "site": site}

    def tr(a, b, ms, route, nbytes):
        return {"kind": "transfer", "name": f"{a}->{b}", "ms": ms, "route": route, "bytes": nbytes}

    paths = [
        {"source": "cam", "sink": "screen", "nodes": ["cam", "a", "b", "glue", "d", "screen"], "latency_ms": 2.6,
         "terms": [tr("cam", "a", 0, None, 256), m("a", "edge", 0.1), tr("a", "b", 0.5, ["edge", "mec"], 128),
                   m("b", "mec", 0.1), tr("b", "glue", 0, None, 64), m("glue", "mec", 0.1),
                   tr("glue", "d", 0.8, ["mec", "cloud"], 64), m("d", "cloud", 0.1),
                   tr("d", "screen", 0.9, ["cloud", "edge"], 32)]},
        {"source": "cam", "sink": "screen", "nodes": ["cam", "a", "c", "d", "screen"], "latency_ms": 2.1,
         "terms": [tr("cam", "a", 0, None, 256), m("a", "edge", 0.1), tr("a", "c", 0.9, ["edge", "cloud"], 128),
                   m("c", "cloud", 0.1), tr("c", "d", 0, None, 64), m("d", "cloud", 0.1),
                   tr("d", "screen", 0.9, ["cloud", "edge"], 32)]},
    ]
    for path in paths:
        path.update(slo_ms=None, slack_ms=None)
    plan = {"app": APP, "status": "OPTIMAL", "objective": "latency",
            "placement": {n: s for n, (s, *_rest) in NODES.items()}, "latency_ms": 2.6, "cost_per_hour": 0.0,
            "constraints": {"latency_ms": None, "cost_per_hour": None}, "paths_total": len(paths), "paths": paths,
            "solver": {"status": "OPTIMAL", "objective": "latency", "time_limit_s": 10, "workers": 1,
                       "wall_time_s": 0.01, "primary": None, "secondary": None}}
    from planner.plan.schema import Plan

    return Plan.model_validate(plan).model_dump(mode="json")  # what `planner solve` would write


def reference(onnx_paths: dict[str, Path], work: Path):
    """The same ensemble in one process: ONNX Runtime for the models, the same python step."""
    from planner_runtime.executor import Executor
    from planner_runtime.nodes import OrtNode, PythonNode

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "glue.py").write_text(GLUE_PY)
    b = graph_bundle({s: 1 for s in SITES}, "edge")
    runners = {n: OrtNode(n, onnx_paths[n], s.inputs, s.outputs) for n, s in b.nodes.items() if s.kind == "tvm"}
    runners["glue"] = PythonNode("glue", work / "glue.py", "glue", b.nodes["glue"].inputs, b.nodes["glue"].outputs)
    return Executor(b, runners)


def echo_bundles(out: Path, ports: dict[str, int], nbytes: int, deadline_ms: float = 30000) -> Path:
    """Two sites, `entry` (source and sink) and `far` (an identity python step): x -> echo@far -> y.

    With `far` == `entry` in ports (same port) the step runs at the entry: no hop.
    """
    out = Path(out)
    n = max(1, nbytes // 4)
    x = _t("x", [n])
    sites = sorted(ports)
    far = "far" if "far" in ports else sites[0]
    for site in sites:
        d = out / "sites" / site
        d.mkdir(parents=True, exist_ok=True)
        node = NodeSpec(site=far, kind="python", inputs=[x], outputs=[_t("y", [n])])
        if site == far:
            (d / "echo.py").write_text(ECHO_PY)
            node.artifact, node.function = "echo.py", "echo"
        Bundle(app="echo", site=site,
               sites={s: SiteEndpoint(address=f"127.0.0.1:{p}", tier="edge", target="host") for s, p in ports.items()},
               sources={"src": SourceSpec(site="entry", tensors=[x])},
               sinks={"dst": SinkSpec(site="entry", tensors=[_t("y", [n])])},
               nodes={"echo": node},
               flows=[FlowEdge(src=Endpoint(kind="source", name="src", tensor="x"),
                               dst=Endpoint(kind="node", name="echo", tensor="x"), tensor=x),
                      FlowEdge(src=Endpoint(kind="node", name="echo", tensor="y"),
                               dst=Endpoint(kind="sink", name="dst", tensor="y"), tensor=_t("y", [n]))],
               runtime=RuntimeSettings(max_message_bytes=max(64 << 20, 3 * nbytes), default_deadline_ms=deadline_ms,
                                       forward_timeout_ms=deadline_ms)).write(d)
    return out


# -- running site servers as subprocesses (tests, benchmark) ------------------------------------
@dataclass
class Sites:
    """Site servers started together, and where they listen (ports the OS picked)."""

    procs: dict[str, subprocess.Popen]
    addr: dict[str, str]  # site -> 127.0.0.1:port (gRPC)
    metrics: dict[str, int | None]  # site -> metrics HTTP port
    run_dir: Path  # their logs and handshake files

    def stop(self) -> None:
        stop(list(self.procs.values()))


def start_sites(dirs: dict[str, Path], run_dir: Path, env: dict | None = None,
                extra: dict[str, list[str]] | None = None, timeout: float = 120.0) -> Sites:
    """`serve` for every site folder in `dirs`, each on ports the OS picks (planner_runtime.handshake:
    no port is chosen here and bound there later); returns once every site serves."""
    from planner_runtime import handshake

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}

    def check() -> None:
        for site, p in procs.items():
            if p.poll() is not None:
                log = (run_dir / f"{site}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"site {site} exited with code {p.returncode}:\n{log}")

    try:
        for site, d in dirs.items():
            options = handshake.site_options(run_dir, site) + (extra or {}).get(site, [])
            procs[site] = start_site(d, env=env, log=run_dir / f"{site}.log", extra=options)
        ports = handshake.await_ports(run_dir, list(dirs), check, timeout)
        addr = {site: f"127.0.0.1:{p.port}" for site, p in ports.items()}
        handshake.announce_peers(run_dir, addr)
        wait_ready(list(addr.values()), timeout, procs=list(procs.values()))
    except BaseException:
        stop(list(procs.values()))
        raise
    return Sites(procs, addr, {site: p.metrics_port for site, p in ports.items()}, run_dir)


def cached_models(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """make_models + compile_models once under `root`, shared by concurrent processes (file lock)."""
    import fcntl

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / ".done"
        onnx_paths = {n: root / "onnx" / f"{n}.onnx" for n in ("a", "b", "c", "d")}
        libs = {n: root / "libs" / f"{n}.so" for n in onnx_paths}
        if not done.exists():
            make_models(root / "onnx")
            compile_models(onnx_paths, root / "libs")
            done.touch()
    return onnx_paths, libs


def start_site(bundle_dir: Path, env: dict | None = None, log: Path | None = None, extra: list[str] | None = None):
    """`python -m planner_runtime serve BUNDLE_DIR --host 127.0.0.1` as a subprocess (its output to `log`)."""
    cmd = [sys.executable, "-m", "planner_runtime", "serve", str(bundle_dir), "--host", "127.0.0.1", *(extra or [])]
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                            cwd=str(Path(__file__).resolve().parents[1]))


def wait_ready(addresses: list[str], timeout: float = 60.0, procs: list | None = None) -> None:
    """Wait until every address answers a grpc.health.v1 check with SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    for address in addresses:
        with grpc.insecure_channel(address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                for p in procs or []:
                    if p.poll() is not None:
                        raise RuntimeError(f"a site server exited with code {p.returncode} (waiting for {address})")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status == 1:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"site at {address} not ready after {timeout:.0f} s")
                time.sleep(0.1)


def stop(procs) -> None:
    """SIGTERM, then SIGKILL what is left, each process by its own pid."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except Exception:
            p.kill()
            p.wait()
