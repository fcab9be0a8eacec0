"""Site servers on ports the system picks, for the hardening and fuzz tests; a small app to serve.

    python -m tests.runtime.sitehost OUT [--max-inflight N] [--max-queue M]

serves every bundle under OUT/sites/ in one process: each server binds port 0, learns where the
others listen (what `--peer` tells a site), then serves, metrics on a port of its own. One JSON
line on stdout says where: {site: {"address": "127.0.0.1:P", "metrics": M, "pid": PID}}. It serves
until its stdin closes; logs go to stderr. No port is chosen by one process and bound by another.

The app (`write_app`), "guard":

    cam.x  FP32 [1, 64] --> hold (python, at `far`) --> y --> screen.y
    cam.tags BYTES [-1] -+
    cam.w  INT8 [-1, 2] -+-> count (python, at `entry`) --> n INT64 [1] --> screen.n

`hold` echoes x, after waiting while the test holds an exclusive lock on the file named by
HOLD_GATE (a deterministic stall: it goes on the moment the test unlocks) and then sleeping
HOLD_SLEEP_S seconds (a fixed service time), and appends x[0, 0] to HOLD_ORDER (the order in which
requests ran) and "x[0, 0] start end" (time.monotonic(), the same clock in every process) to
HOLD_TIMES. With far == entry every node is at one site. `hold` has `hold_instances` instances
(default 32: the admission tests want every admitted request, at most 32, inside the step at
once; each instance beyond one is a worker process, so a test that needs fewer asks for fewer).

The client side (`infer_request`, `call`) builds OIP messages with tritonclient's stubs: this
process must not import planner_runtime.proto, whose stubs clash with tritonclient's.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from planner_runtime.bundle_format import (Bundle, Endpoint, FlowEdge, NodeSpec, RuntimeSettings, SinkSpec, SiteEndpoint,
                                           SourceSpec, Tensor)

APP = "guard"
ROOT = Path(__file__).resolve().parents[2]
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"

HOLD_PY = '''"""Echo x, after the test's gate opens and a fixed sleep; log the order requests ran in."""
import fcntl
import os
import time


def hold(x):
    start = time.monotonic()
    gate = os.environ.get("HOLD_GATE")
    if gate:
        with open(gate) as f:
            fcntl.flock(f, fcntl.LOCK_SH)  # blocks while the test holds LOCK_EX
    time.sleep(float(os.environ.get("HOLD_SLEEP_S", "0")))
    times = os.environ.get("HOLD_TIMES")
    if times:
        with open(times, "a") as f:
            f.write(f"{int(x.reshape(-1)[0])} {start!r} {time.monotonic()!r}\\n")
    order = os.environ.get("HOLD_ORDER")
    if order:
        with open(order, "a") as f:
            f.write(f"{int(x.reshape(-1)[0])}\\n")
    return {"y": x}
'''

COUNT_PY = '''"""How many tags, plus the sum of w."""
import numpy as np


def count(tags, w):
    return {"n": np.array([len(tags) + int(w.astype(np.int64).sum())], dtype=np.int64)}
'''


def _t(name: str, shape: list[int], dtype: str = "float32") -> Tensor:
    return Tensor(name=name, dtype=dtype, shape=shape)


X, TAGS, W, Y, N = _t("x", [1, 64]), _t("tags", [-1], "bytes"), _t("w", [-1, 2], "int8"), _t("y", [1, 64]), \
    _t("n", [1], "int64")


def _edge(src: tuple[str, str, str], dst: tuple[str, str, str], tensor: Tensor) -> FlowEdge:
    return FlowEdge(src=Endpoint(kind=src[0], name=src[1], tensor=src[2]),
                    dst=Endpoint(kind=dst[0], name=dst[1], tensor=dst[2]), tensor=tensor)


def write_app(out: Path, far: str = "far", deadline_ms: float = 600_000, hold_instances: int = 32) -> Path:
    """OUT/sites/<site>/ of the guard app: sites `entry` and `far` (or `entry` alone when far == "entry")."""
    out = Path(out)
    sites = sorted({"entry", far})
    flows = [_edge(("source", "cam", "x"), ("node", "hold", "x"), X),
             _edge(("node", "hold", "y"), ("sink", "screen", "y"), Y),
             _edge(("source", "cam", "tags"), ("node", "count", "tags"), TAGS),
             _edge(("source", "cam", "w"), ("node", "count", "w"), W),
             _edge(("node", "count", "n"), ("sink", "screen", "n"), N)]
    for site in sites:
        d = out / "sites" / site
        d.mkdir(parents=True, exist_ok=True)
        nodes = {"hold": NodeSpec(site=far, kind="python", inputs=[X], outputs=[Y], instances=hold_instances),
                 "count": NodeSpec(site="entry", kind="python", inputs=[TAGS, W], outputs=[N])}
        for name, code in (("hold", HOLD_PY), ("count", COUNT_PY)):
            if nodes[name].site == site:
                (d / f"{name}.py").write_text(code)
                nodes[name].artifact, nodes[name].function = f"{name}.py", name
        Bundle(app=APP, site=site,
               sites={s: SiteEndpoint(address="127.0.0.1:0", tier="edge", target="host") for s in sites},
               sources={"cam": SourceSpec(site="entry", tensors=[X, TAGS, W])},
               sinks={"screen": SinkSpec(site="entry", tensors=[Y, N])},
               nodes=nodes, flows=flows,
               runtime=RuntimeSettings(max_message_bytes=4 << 20, default_deadline_ms=deadline_ms,
                                       forward_timeout_ms=deadline_ms)).write(d)
    return out


class Gate:
    """Closed: the `hold` steps wait (HOLD_GATE names `path`). Opened: they go on at once."""

    def __init__(self, path: Path):
        path.touch()
        self.path = str(path)
        self._fd = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def open(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


# -- the server process ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging

    from planner_runtime.server import SiteServer

    parser = argparse.ArgumentParser(prog="python -m tests.runtime.sitehost")
    parser.add_argument("out")
    parser.add_argument("--max-inflight", type=int, default=None)
    parser.add_argument("--max-queue", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    servers = [SiteServer(d, port=0, host="127.0.0.1", metrics_port=0, max_inflight=args.max_inflight,
                          max_queue=args.max_queue) for d in sorted((Path(args.out) / "sites").iterdir())]
    peers = {s.site: f"127.0.0.1:{s.bind()}" for s in servers}
    for s in servers:
        s.set_peers(peers)
        s.start()
    print(json.dumps({s.site: {"address": s.address, "metrics": s.metrics_port, "pid": os.getpid()}
                      for s in servers}), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    for s in servers:
        s.stop(grace=0.5)
    return 0


class Hosted:
    """The sites of OUT served by one `python -m tests.runtime.sitehost` process."""

    def __init__(self, out: Path, log: Path, env: dict | None = None, extra: list[str] | None = None):
        self.log = Path(log)
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.runtime.sitehost", str(out), *(extra or [])],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT,
                                         env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"sitehost exited with code {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        self.sites = json.loads(line)

    def address(self, site: str) -> str:
        return self.sites[site]["address"]

    def metrics(self, at: str) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.sites[at]['metrics']}/metrics", timeout=10).read().decode()

    def metric(self, at: str, name: str, **labels) -> float:
        """A sample's value at site `at` (0 when the series does not exist yet)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics(at).splitlines():
            if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_for(self, what: str, predicate, timeout: float = 60.0) -> None:
        """Poll until `predicate()` holds: a condition, with a generous ceiling that only a hang reaches."""
        end = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise RuntimeError(f"sitehost exited with code {self.proc.returncode}")
            if time.monotonic() > end:
                raise TimeoutError(f"not within {timeout:.0f} s: {what}")
            time.sleep(0.02)

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


# -- the client side ------------------------------------------------------------------------------
def infer_request(model: str, inputs: dict[str, np.ndarray], **params):
    """A ModelInferRequest (tritonclient's stubs) with raw contents; `params` as string parameters."""
    from tritonclient.grpc import service_pb2 as pb

    datatypes = {"float32": "FP32", "int8": "INT8", "int64": "INT64"}
    req = pb.ModelInferRequest(model_name=model)
    for name, arr in inputs.items():
        if arr.dtype == object:
            raw = b"".join(len(b).to_bytes(4, "little") + b for b in arr.reshape(-1))
            datatype = "BYTES"
        else:
            raw, datatype = np.ascontiguousarray(arr).tobytes(), datatypes[arr.dtype.name]
        req.inputs.add(name=name, datatype=datatype, shape=list(arr.shape))
        req.raw_input_contents.append(raw)
    for key, value in params.items():
        req.parameters[key].string_param = value
    return req


def guard_inputs(k: float = 0.0) -> dict[str, np.ndarray]:
    """Inputs of the guard app; x[0, 0] == k names the request (HOLD_ORDER)."""
    x = np.arange(64, dtype=np.float32).reshape(1, 64)
    x[0, 0] = k
    return {"x": x, "tags": np.array([b"a", b"bc"], dtype=object), "w": np.array([[1, 2]], dtype=np.int8)}


def infer_stub(channel):
    from tritonclient.grpc import service_pb2 as pb

    return channel.unary_unary(MODEL_INFER, request_serializer=pb.ModelInferRequest.SerializeToString,
                               response_deserializer=pb.ModelInferResponse.FromString)


def output(resp, name: str) -> np.ndarray:
    """An FP32 or INT64 output of a response, by name."""
    for o, raw in zip(resp.outputs, resp.raw_output_contents):
        if o.name == name:
            dtype = {"FP32": np.float32, "INT64": np.int64}[o.datatype]
            return np.frombuffer(raw, dtype=dtype).reshape(list(o.shape))
    raise KeyError(name)


if __name__ == "__main__":
    raise SystemExit(main())
