"""The app of the load checks (tests/local/test_load_prediction.py, benchmarks/load_accuracy.py):
one python step of a fixed service time on the site `mec`, its source and sink on `edge`, so a
request takes two loopback hops. One replica, one instance by default: a single FIFO server.

Three steps: `sleep`; `cpu`, which hashes a 256 KB block until the service time has passed
(hashlib releases the GIL on large buffers, as ONNX Runtime and TVM do while they run; bounding
it by the clock keeps the service time fixed on a machine whose other jobs take the cores); and
`gil`, which spins in Python bytecode until its thread has had the service time of CPU (the GIL
held, as a step of plain Python holds it; bounded by the thread's CPU time, not the clock, so
that two such steps taking turns on one GIL each take twice as long, as they would)."""

from __future__ import annotations

from pathlib import Path

SERVICE_MS = 30


def step(kind: str, service_ms: float = SERVICE_MS) -> str:
    seconds = service_ms / 1000
    if kind == "sleep":
        body = f"    time.sleep({seconds!r})\n"
    elif kind == "cpu":
        body = (f"    end = time.perf_counter() + {seconds!r}\n"
                "    while time.perf_counter() < end:\n"
                "        hashlib.sha256(_BLOCK).digest()  # ~0.15 ms, the GIL released meanwhile\n")
    elif kind == "gil":
        body = (f"    end = time.thread_time() + {seconds!r}\n"
                "    while time.thread_time() < end:\n"
                "        pass\n")
    else:
        raise ValueError(f"unknown step {kind!r} (sleep, cpu or gil)")
    return ("import hashlib\nimport time\n\nimport numpy as np\n\n_BLOCK = bytes(256 * 1024)\n\n\n"
            f"def f(x):\n{body}    return {{\"y\": (x * 2).astype(np.float32)}}\n")


STEPS = ("cpu", "sleep")  # the one-instance load checks' steps

APP = """name: loaded
sites:
  edge: {tier: edge, target: host}
  mec: {tier: edge, target: host, max_replicas: 1}
links:
  - {between: [edge, mec], bandwidth_mbps: 1000, rtt_ms: 1}
models:
  s: {python: steps.py:f, inputs: {x: [1, 4]}, sites: [mec]}
sources: {cam: {site: edge, rate_rps: 1}}
sinks: {out: {site: edge}}
flows:
  - {from: cam, to: s}
  - {from: s, to: out}
constraints: {latency_ms: 2000}
"""


def write_load_app(directory: Path, kind: str, service_ms: float = SERVICE_MS, instances: int = 1) -> Path:
    """app.yaml and steps.py in `directory` (the step with `instances`); the path of app.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "steps.py").write_text(step(kind, service_ms))
    path = directory / "app.yaml"
    path.write_text(APP.replace("sites: [mec]}", f"sites: [mec], instances: {instances}}}"))
    return path
