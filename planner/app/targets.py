"""The hardware target catalog: `profiles/targets/*.yaml`, one file per target, shipped in the
package as `planner/app/catalog/` (a link to that folder in a checkout, its copy in a wheel).

A registry in the style of TVM's `get_pipeline(name)`: `get_target(name)` returns a target
or raises an error that lists the valid names. `host` is this machine, detected when asked
for. TVM is never imported here (validation must stay fast); the TVM target is kept as the
JSON dict TVM 0.27 accepts.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from planner.app.spec import MAX_MB, MAX_PRICE_PER_HOUR, Tier
from planner.errors import shown

CATALOG = resources.files("planner.app") / "catalog"


class Target(BaseModel):
    """One kind of hardware a site may have, with the figures the estimator scales by."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = "inline"
    description: str = ""
    tier: Tier = "edge"
    tvm_target: dict[str, Any] = Field(description="TVM target in JSON-dict form; GPUs carry a `host` part")
    # ranges as for a site's own numbers (planner.app.spec): an estimated latency divides by these
    peak_gflops: float = Field(ge=1e-3, le=1e9, description="published peak FP32 compute, 1e-3 to 1e9 GFLOP/s")
    # GPUs: the published fp16 peak (tensor cores, dense), what an fp16 build's estimate scales by
    # (planner.profiling.half); None: not published, no fp16 gain is claimed
    peak_gflops_fp16: float | None = Field(default=None, ge=1e-3, le=1e9,
                                           description="published peak FP16 compute (GPUs), 1e-3 to 1e9 GFLOP/s")
    mem_bandwidth_gbs: float = Field(ge=1e-3, le=1e6, description="published memory bandwidth, 1e-3 to 1e6 GB/s")
    memory_mb: float = Field(gt=0, le=MAX_MB, description="up to 1e9 MB")
    cost_per_hour: float = Field(default=0, ge=0, le=MAX_PRICE_PER_HOUR,
                                 description="typical price, 0 to 1e6 dollars; owned devices 0")
    sources: dict[str, str] = Field(default_factory=dict, description="where each figure comes from")

    @field_validator("tvm_target")
    @classmethod
    def _has_kind(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("kind") not in ("llvm", "cuda", "c"):
            raise ValueError(f"tvm_target.kind must be llvm, cuda or c, got {shown(v.get('kind'))}")
        return v

    @property
    def is_gpu(self) -> bool:
        return self.tvm_target["kind"] == "cuda"

    @property
    def is_host(self) -> bool:
        return self.name == "host"

    @property
    def cpu_arch(self) -> str:
        """Architecture of the code that runs on the CPU side: x86_64 or aarch64."""
        cpu = self.tvm_target.get("host", self.tvm_target)
        triple = cpu.get("mtriple", "")
        return triple.split("-")[0] if triple else platform.machine()


def _read_yaml(path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a target file holds a mapping")
    return data


@functools.lru_cache(maxsize=1)
def catalog() -> dict[str, Target]:
    """Every target in the catalog, by name (host detected)."""
    out: dict[str, Target] = {}
    for path in sorted((p for p in CATALOG.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name):
        data = _read_yaml(path)
        if data.pop("detect", False):
            data = {**detect_host(), **data}
        try:
            target = Target.model_validate(data)
        except ValidationError as exc:  # a broken catalog file is the project's bug, name it
            raise RuntimeError(f"{path}: {exc}") from None
        if target.name != path.name.removesuffix(".yaml"):
            raise RuntimeError(f"{path}: name {target.name!r} differs from the file name")
        out[target.name] = target
    return out


def get_target(name: str) -> Target:
    targets = catalog()
    if name not in targets:
        raise LookupError(f"unknown target {shown(name)}; valid targets: {', '.join(sorted(targets))}")
    return targets[name]


def target_from_inline(data: dict[str, Any]) -> Target:
    """A target given inline in app.yaml (same keys as a catalog file)."""
    return Target.model_validate(data)


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def cpu_model() -> str:
    """This machine's CPU model name, as /proc/cpuinfo gives it."""
    return _cpuinfo().get("model name", platform.processor() or platform.machine())


def _flops_per_cycle(flags: set[str]) -> int:
    # FP32 FLOP per cycle per core: vector lanes x 2 (FMA) x FMA units; two units assumed.
    if "avx512f" in flags:
        return 64
    if "avx2" in flags and "fma" in flags:
        return 32
    if "asimd" in flags or platform.machine() == "aarch64":
        return 16
    return 8


def _measured_copy_bandwidth_gbs(nbytes: int = 256 << 20) -> float:
    import numpy as np

    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * nbytes / best / 1e9  # read + write


@functools.lru_cache(maxsize=1)
def detect_host() -> dict[str, Any]:
    """This machine's figures: cores and SIMD from /proc/cpuinfo, memory, measured bandwidth."""
    info = _cpuinfo()
    cores = os.cpu_count() or 1
    flags = set(info.get("flags", info.get("Features", "")).split())
    mhz = float(info.get("cpu MHz", 0) or 0) or 2000.0
    fpc = _flops_per_cycle(flags)
    mem_kb = 0
    try:
        match = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_kb = int(match.group(1)) if match else 0
    except OSError:
        pass
    bandwidth = round(_measured_copy_bandwidth_gbs(), 1)
    model = cpu_model()
    return {
        "description": f"this machine: {model}, {cores} cores @ {mhz:.0f} MHz",
        "tvm_target": {"kind": "llvm", "num-cores": cores},
        "peak_gflops": round(cores * mhz / 1000 * fpc, 1),
        "mem_bandwidth_gbs": bandwidth,
        "memory_mb": round(mem_kb / 1024) or 1024,
        "sources": {
            "peak_gflops": f"/proc/cpuinfo: {cores} cores x {mhz:.0f} MHz x {fpc} FP32 FLOP/cycle (from its SIMD flags)",
            "mem_bandwidth_gbs": "measured: numpy copy of 256 MB, best of 3 (read + write bytes)",
            "memory_mb": "/proc/meminfo MemTotal",
            "cost_per_hour": "this machine",
        },
    }
