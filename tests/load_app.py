"""The app of the load checks (tests/local/test_load_prediction.py, benchmarks/load_accuracy.py):
one python step of a fixed service time on the site `mec`, its source and sink on `edge`, so a
request takes two loopback hops. One instance on one replica: a single FIFO server.

Two steps: `sleep`, and `cpu`, which hashes a 256 KB block until the service time has passed
(hashlib releases the GIL on large buffers, as ONNX Runtime and TVM do while they run; bounding
it by the clock keeps the service time fixed on a machine whose other jobs take the cores)."""

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
    else:
        raise ValueError(f"unknown step {kind!r} (sleep or cpu)")
    return ("import hashlib\nimport time\n\nimport numpy as np\n\n_BLOCK = bytes(256 * 1024)\n\n\n"
            f"def f(x):\n{body}    return {{\"y\": (x * 2).astype(np.float32)}}\n")


STEPS = ("cpu", "sleep")

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


def write_load_app(directory: Path, kind: str, service_ms: float = SERVICE_MS) -> Path:
    """app.yaml and steps.py in `directory`; the path of app.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "steps.py").write_text(step(kind, service_ms))
    path = directory / "app.yaml"
    path.write_text(APP)
    return path
