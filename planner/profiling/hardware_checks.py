"""Builds checked on real hardware that failed: data, like a calibration, that excludes the build
where no run of this host can check it (a GPU, when no GPU is reachable from here).

A record file is `<name>.yaml` in one of two folders, read in this order:
  1. the user's: $PLANNER_VERIFICATION_DIR, else $XDG_DATA_HOME/planner/verification;
  2. the shipped ones: profiles/verification/ (package data, planner/profiling/verifications).
A record names the ONNX file by its sha256, the build (`engine/precision`) and the TVM target
kind it failed on; it applies to that build of that file on every target of that kind, whatever
the input shapes (how it was measured is in the record, and in the exclusion's reason). It stays
until a run on such hardware shows the build passes (benchmarks/cuda_bisect.py for CUDA): then
the record is deleted."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from planner.app.targets import Target
from planner.profiling.data_files import read_yaml_model, yaml_files
from planner.profiling.locations import default_verification_dir

SHIPPED = resources.files("planner.profiling") / "verifications"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FailedBuild(_Strict):
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model: str = Field(description="the file's name, for the reader")
    build: str = Field(pattern=r"^[a-z]+/[a-z0-9]+$", description="engine/precision, e.g. tvm/fp32")
    target_kind: str = Field(description="the TVM target kind it applies to, e.g. cuda")
    result: str = Field(description="what the check found, e.g. every output NaN")
    measured_on: str
    measured_at: str
    shapes: dict[str, list[int]] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    cause: str | None = None
    status: str | None = Field(default=None, description="what has been done since, and what clears the record")
    source: str


class RecordFile(_Strict):
    format: int = Field(1, ge=1, le=1)
    failures: list[FailedBuild]


@dataclass(frozen=True)
class Recorded:
    failure: FailedBuild
    path: str  # where it was read (a shipped one: profiles/verification/<name>.yaml)

    @property
    def reason(self) -> str:
        f = self.failure
        versions = ", ".join(f"{k} {v}" for k, v in f.versions.items())
        text = f"verification failed on real hardware ({f.measured_on}, {f.measured_at}" + \
            (f", {versions}" if versions else "") + f"): {f.result}"
        for part in (f.cause and f"cause: {f.cause}", f.status, f"recorded in {self.path}"):
            if part:
                text += f"; {part}"
        return text


def all_records(user_dir: Path | None = None) -> list[Recorded]:
    user = [(Path(p), str(p)) for p in yaml_files(Path(user_dir or default_verification_dir()))]
    # a shipped file is named as it is in the source tree, not by where the package is installed
    shipped = [(Path(str(p)), f"profiles/verification/{p.name}") for p in yaml_files(SHIPPED)]
    return [Recorded(f, shown) for path, shown in user + shipped
            for f in read_yaml_model(path, RecordFile, "verification record file").failures]


def recorded_failure(onnx_sha256: str, build: str, target: Target, records: list[Recorded]) -> Recorded | None:
    """The record that excludes this build of this file on `target`, if any."""
    kind = target.tvm_target.get("kind")
    return next((r for r in records if r.failure.onnx_sha256 == onnx_sha256 and r.failure.build == build
                 and r.failure.target_kind == kind), None)
