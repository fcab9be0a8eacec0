"""An app of one python step on this host: `planner solve` writes its site bundles and deploy
manifests without compiling anything, and profiles it in well under a second."""

from __future__ import annotations

from pathlib import Path

# at least 5 ms per call, so that an SLO of 1 ms is surely infeasible
SLOW_STEP = '''
import time

import numpy as np


def f(x):
    time.sleep(0.005)
    return {"y": (x * 2).astype(np.float32)}
'''

APP = """name: steps
sites:
  here: {tier: edge, target: host}
models:
  s: {python: steps.py:f, inputs: {x: [1, 4]}}
sources: {cam: {site: here, rate_rps: 1}}
sinks: {out: {site: here}}
flows:
  - {from: cam, to: s}
  - {from: s, to: out}
constraints: {latency_ms: 1000}
"""


def write_step_app(directory: Path, step: str = SLOW_STEP) -> Path:
    """app.yaml and steps.py (its function `f`, taking x float32[1, 4], giving y) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "steps.py").write_text(step)
    path = directory / "app.yaml"
    path.write_text(APP)
    return path
