"""The profiler's cached records, one type per kind of cache key (planner.profiling.cache).

Field names are those of the JSON files: entries written before these types existed read
back as they are."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.profiling.compile import Kernel
from planner.profiling.table import NodeSignature

SiteProvenance = Literal["measured", "rpc", "estimated"]


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HostModelEntry(Record):
    """An ONNX model on this host: its tensors, and the kernels and memory TVM's analysis of the
    host build found (what the estimates for other targets scale from)."""

    signature: NodeSignature
    tuning: str
    compile_s: float | None = None
    kernels: list[Kernel] = []
    params_bytes: int | None = None
    activation_bytes: int | None = None
    warning: str | None = None
    error: str | None = None  # it does not compile for this host


class HostMeasurement(Record):
    """The setting and the machine's state of a measurement on this host (planner.profiling.load)."""

    threads: int | None = None
    load_per_core: float | None = None
    steal_pct: float | None = None
    others_pct: float | None = None
    slow_factor: float | None = None  # the probe after it against the machine's fastest (planner.profiling.speed)
    busy: str | None = None  # why the machine counted as busy while it was measured


class HostBuildEntry(HostMeasurement):
    """One build (planner.profiling.builds) run on this host: checked against the fp32
    reference, then timed."""

    ms: float | None = None  # None: not timed (`error`, or outputs that cannot be right)
    repeats_ms: list[float] = []
    memory_mb: float | None = None
    max_rel_error: float | None = None  # None: no reference to check against
    nonfinite: bool = False
    error: str | None = None  # it cannot be built or run here


class SiteModelEntry(Record):
    """The TVM build of an ONNX model for one site: how to get its time there, or why it cannot
    run there. `scale`: an estimate, the host time times it; else `latency_ms` (rpc) or the host's."""

    excluded: str | None = None
    latency_ms: float | None = None
    scale: float | None = None
    memory_mb: float | None = None
    provenance: SiteProvenance | None = None
    tuning: str | None = None
    compile_s: float | None = None
    note: str | None = None
    warning: str | None = None
    expected_error_pct: float | None = None  # estimates: the calibration's stated error
    # an RPC measurement that failed and fell back to an estimate: the device is tried again
    # next run, so the entry is not stored
    retry_next_run: bool = Field(default=False, exclude=True)


class ScaleEntry(Record):
    """How a host time scales to a target, kept: the host's detected figures move from run to
    run, and the same cached measurement must give the same estimate."""

    scale: float
    how: str


class HostStepEntry(HostMeasurement):
    """A python step timed on this host, and the tensors it gave."""

    ms: float
    repeats_ms: list[float]
    signature: NodeSignature
    memory_mb: float
