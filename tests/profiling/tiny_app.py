"""A tiny app built in code for the profiling tests: an MLP (ONNX) then a python step, on this
host and a catalog target, and `run`, which profiles it with a cache of its own; `chain_app`,
one ONNX model between a source and a sink, for the tests of builds."""

from __future__ import annotations

from pathlib import Path

import yaml

from planner.model.open_app import open_app
from planner.profiling.app_profiles import profile_app
from tests.profiling.onnx_models import mlp

STEPS = '''
import numpy as np

def post(y):
    return {"z": np.tanh(y).astype(np.float32), "label": np.array([b"ok"], dtype=object)}
'''
BROKEN_TARGET = {"name": "broken", "tvm_target": {"kind": "llvm", "mtriple": "no-such-arch-none"},
                 "peak_gflops": 10, "mem_bandwidth_gbs": 5, "memory_mb": 1000}


def write_app(tmp: Path, *, sites: dict | None = None, model_sites: list | None = None, onnx: str = "mlp.onnx",
              post_input: list | None = None, label_bytes: bool = True) -> Path:
    if not (tmp / "mlp.onnx").exists():
        mlp(tmp / "mlp.onnx")
    (tmp / "steps.py").write_text(STEPS)
    sites = sites or {"here": {"tier": "edge", "target": "host"},
                      "pi": {"tier": "base-station", "target": "rpi5"}}
    names = list(sites)
    app = {
        "name": "tiny",
        "sites": sites,
        "links": [{"between": [a, b], "bandwidth_mbps": 100, "rtt_ms": 2} for a, b in zip(names, names[1:])],
        "models": {
            "mlp": {"onnx": onnx, "inputs": {"x": [1, 16]}, **({"sites": model_sites} if model_sites else {})},
            "post": {"python": "steps.py:post", "inputs": {"y": post_input or [1, 8]}, "sites": [names[0]]},
        },
        "sources": {"cam": {"site": names[0], "rate_rps": 1}},
        "sinks": {"out": {"site": names[0]}},
        "flows": [
            {"from": "cam", "to": "mlp"},
            {"from": "mlp", "to": "post"},
            {"from": "post", "output": "z", "to": "out"},
            {"from": "post", "output": "label", "to": "out", "input": "label",
             **({"bytes": 16} if label_bytes else {})},
        ],
    }
    path = tmp / "app.yaml"
    path.write_text(yaml.safe_dump(app, sort_keys=False))
    return path


def run(path: Path, cache: Path, **kw):
    """profile_app on the app at `path` with its own cache and tuning root: (table, stats)."""
    stats = {}
    table = profile_app(open_app(path), cache_dir=cache, tuning_root=cache / "tuning",
                        stats=lambda c, k: stats.update(hits=c.hits, misses=c.misses, counters=k), **kw).table
    return table, stats


def chain_app(tmp: Path, model: dict, sites: dict, links: list[tuple[str, str, float, float]], *, name: str,
              node: str = "m", source: str = "cam", sink: str = "out") -> Path:
    """source -> `node` (the app.yaml entry `model`) -> sink, the source and the sink on the first of
    `sites`, joined by `links` (site, site, Mbps, rtt ms); written to tmp/app.yaml."""
    first = next(iter(sites))
    app = {"name": name, "sites": sites,
           "links": [{"between": [a, b], "bandwidth_mbps": mbps, "rtt_ms": rtt} for a, b, mbps, rtt in links],
           "models": {node: model},
           "sources": {source: {"site": first, "rate_rps": 1}}, "sinks": {sink: {"site": first}},
           "flows": [{"from": source, "to": node}, {"from": node, "to": sink}]}
    path = tmp / "app.yaml"
    path.write_text(yaml.safe_dump(app, sort_keys=False))
    return path
