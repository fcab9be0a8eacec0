"""Calibration files: what `planner calibrate` measured on a target, and which one applies to
an estimate.

A calibration is `<name>.yaml` in one of two folders, read in this order:
  1. the user's: $PLANNER_CALIBRATION_DIR, else $XDG_DATA_HOME/planner/calibration
     (~/.local/share/planner/calibration), where `planner calibrate` writes by default;
  2. the shipped ones: profiles/calibration/ (package data, planner/profiling/calibrations).
A calibration of `scope: target` applies to the target of its name whose figures are the
ones it was measured with (`identity`: for `host` the CPU model and core count; for other
targets the TVM target, peak and bandwidth), so that a host calibration from another machine,
or one of an edited catalog entry, is never used. One of `scope: kind` applies to every
target of that TVM kind that has no calibration of its own (the H200 measurements for CUDA
GPUs). The arithmetic is in planner.profiling.calibration_fit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.app.targets import Target, cpu_model
from planner.profiling.data_files import read_yaml_model, yaml_files
from planner.profiling.locations import default_calibration_dir

SHIPPED = resources.files("planner.profiling") / "calibrations"
FORMAT = 1

CalEngine = Literal["tvm", "onnxruntime"]
CalTuning = Literal["untuned", "tuned"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelFigures(_Strict):
    """One model of the calibration set, measured on the target."""

    name: str
    what: str = ""
    measured_ms: float = Field(gt=0)
    roofline_ms: float = Field(gt=0, description="estimate.roofline_s over its kernels, at the target's figures")
    efficiency: float = Field(gt=0, description="roofline_ms / measured_ms")
    residual_pct: float | None = Field(default=None, description="its error predicted from the fitted efficiency")
    loo_residual_pct: float | None = Field(default=None, description="the same, fitted without it")
    gflop: float | None = None
    mbytes: float | None = Field(default=None, description="the bytes its kernels read and write, MB")
    achieved_gflops: float | None = None
    load_per_core: float | None = None
    # figures measured elsewhere (a data file): where they come from, and the model file and
    # input shapes the roofline time is computed for
    source: str | None = None
    onnx: str | None = None
    shapes: dict[str, list[int]] | None = None


class EngineFit(_Strict):
    """The efficiency of one engine in one tuning state on the target, and its error."""

    engine: CalEngine
    tuning: CalTuning
    threads: int | None = None
    efficiency: float = Field(gt=0, description="median of the models' efficiencies")
    expected_error_pct: float | None = Field(default=None, description="largest leave-one-out residual")
    models: list[ModelFigures]


class Calibration(_Strict):
    format: Literal[1] = FORMAT
    name: str
    scope: Literal["target", "kind"] = "target"
    kind: str | None = Field(default=None, description="scope kind: the TVM target kind it applies to")
    identity: dict[str, Any] = Field(description="the figures of the target it was measured on")
    figures: dict[str, Any] = Field(default_factory=dict, description="the target's figures, for the reader")
    machine: dict[str, Any] = Field(default_factory=dict)
    measured_at: str
    versions: dict[str, str] = Field(default_factory=dict)
    load_per_core: dict[str, float] = Field(default_factory=dict)
    model_set: int | None = None
    method: dict[str, str] = Field(default_factory=dict)
    source: str | None = None
    fits: list[EngineFit]

    def fit(self, engine: str, tuning: str) -> EngineFit | None:
        return next((f for f in self.fits if f.engine == engine and f.tuning == tuning), None)


@dataclass(frozen=True)
class Found:
    calibration: Calibration
    path: str  # where it was read, as notes name it (a shipped one: profiles/calibration/<name>.yaml)


def identity(target: Target) -> dict[str, Any]:
    """What a calibration must have been measured on to apply to `target`. For `host`, whose
    clock and measured bandwidth move between runs, the CPU model and core count."""
    if target.is_host:
        return {"cpu": re.sub(r" @ [\d.]+ MHz", "", cpu_model()), "num-cores": target.tvm_target.get("num-cores")}
    return {"tvm_target": target.tvm_target, "peak_gflops": target.peak_gflops,
            "mem_bandwidth_gbs": target.mem_bandwidth_gbs}


def tuning_class(tuning: str | None) -> CalTuning:
    """`tuned:<K>/<N>` with K > 0 is tuned; anything else (untuned, None) untuned."""
    return "tuned" if tuning and tuning.startswith("tuned") else "untuned"


def read_file(path: Path) -> Calibration:
    """One calibration file; an unreadable or malformed one is an error naming it."""
    return read_yaml_model(path, Calibration, "calibration file")


def all_calibrations(user_dir: Path | None = None) -> list[Found]:
    """Every calibration, the user's first (they win over a shipped one for the same target)."""
    user = [Found(read_file(Path(p)), str(p)) for p in yaml_files(Path(user_dir or default_calibration_dir()))]
    # a shipped file is named as it is in the source tree, not by where the package is installed
    shipped = [Found(read_file(Path(str(p))), f"profiles/calibration/{p.name}") for p in yaml_files(SHIPPED)]
    return user + shipped


@dataclass(frozen=True)
class Lookup:
    found: Found | None
    fit: EngineFit | None
    # same-name calibrations measured on other figures: named in the note, never used
    skipped: tuple[str, ...] = ()


def find(target: Target, engine: str, tuning: str | None, calibrations: list[Found]) -> Lookup:
    """The calibration an estimate for (target, engine, tuning state) uses: the target's own,
    else one for its kind, else none."""
    want, cls = identity(target), tuning_class(tuning)
    skipped = []
    for f in calibrations:
        c = f.calibration
        if c.scope == "target" and c.name == target.name:
            if c.identity != want:
                skipped.append(f.path)
            elif c.fit(engine, cls):
                return Lookup(f, c.fit(engine, cls), tuple(skipped))
    for f in calibrations:
        c = f.calibration
        if c.scope == "kind" and c.kind == target.tvm_target.get("kind") and c.fit(engine, cls):
            return Lookup(f, c.fit(engine, cls), tuple(skipped))
    return Lookup(None, None, tuple(skipped))
