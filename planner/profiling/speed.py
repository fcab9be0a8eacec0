"""Whether the machine itself ran slow while a measurement ran, when nothing in the guest shows it.

On the project's 2-vCPU VM the same work slowed 2x for minutes with the load average at 0, no
other process busy and no CPU steal reported (benchmarks/results/machine_drift.md: OCR det 50 ->
108 ms for ~90 s; a cache-resident matrix product on OpenBLAS's threads 1.5x with it, r = 0.886
over a 10-minute run; the memory bandwidth did not move). planner.profiling.load cannot see
such a spell, and a profile measured in one is cached and reused. So every host measurement is
followed by a probe of fixed, cache-resident compute (PROBE, the benchmark's `matmul`: ~4 ms),
and its time is compared with the fastest probe this machine has run, kept in the profile
cache's directory (`machine_speed.json`, per CPU model and core count): a measurement whose
probe ran more than SLOW_FACTOR times slower than that counts as busy (planner.profiling.load:
warned about, measured again after a bounded wait). The first probe on a machine sets the
reference, so a spell during it goes unseen until a faster probe comes.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

# What tracked det's spells here (benchmarks/results/machine_drift.md as committed in 2b8c901,
# 14:15: r = 0.886 over 10 minutes; 0.81 from the samples of the run before, as committed in
# a21cb90; 23:55: 0.70, this probe itself 0.65) is numpy's product of two 256 x 256 float32
# matrices on OpenBLAS's threads: a spell takes the second core's parallelism away (on one
# thread the product did not move through the spells, r = 0.11), so the probe needs two. Probes
# that did not: the same product as one ONNX Runtime op on every core (r = -0.22), a 64 MB copy
# (0.06), one-thread numpy arithmetic (it did not move through one spell; observed, no results
# file).
# OpenBLAS's threads spin for a while after a product, so the probe is taken after the
# measurement, never just before it (a spell lasts 30 s to minutes: the probe after a
# measurement of seconds falls in the same one). A new probe must not compare with an old one's
# figures.
PROBE = "numpy float32 matmul 256x256 (OpenBLAS threads), median of 20, after the measurement"
PROBE_RUNS = 20
SLOW_FACTOR = 1.5  # the spells seen here were 1.5-1.9x for the probe; between them it stayed within ~1.15x
FILE = "machine_speed.json"

_A = np.random.default_rng(0).random((256, 256), dtype=np.float32)


def probe_ms() -> float:
    """The probe's time now (median of PROBE_RUNS after one untimed run)."""
    _A @ _A
    times = []
    for _ in range(PROBE_RUNS):
        t0 = time.perf_counter()
        _A @ _A
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _machine() -> str:
    from planner.app.targets import cpu_model

    return f"{cpu_model()} x{os.cpu_count() or 1}"


class SpeedReference:
    """The fastest probe this machine has run, kept in `directory` (None: this process only)."""

    def __init__(self, directory: Path | None = None):
        self.path = Path(directory) / FILE if directory is not None else None
        self.machine = _machine()
        self.fastest_ms: float | None = None
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("probe") == PROBE and data.get("machine") == self.machine:
                    self.fastest_ms = float(data["fastest_ms"])
            except (OSError, ValueError, KeyError, TypeError):
                pass  # unreadable: start again from this process's probes

    def slow_factor(self, ms: float) -> float:
        """`ms` against the fastest probe so far (which `ms` joins first: the first probe is 1.0)."""
        if self.fastest_ms is None or ms < self.fastest_ms:
            self.fastest_ms = ms
            self._save()
        return ms / self.fastest_ms

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"probe": PROBE, "machine": self.machine, "fastest_ms": self.fastest_ms}))
            tmp.replace(self.path)
        except OSError:
            pass  # a read-only cache: the reference lives in this process
