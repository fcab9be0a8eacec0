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
    """An ONNX model on this host: its tensors, TVM's and ONNX Runtime's times on the same
    input, and the kernels and memory that the estimates for other targets scale from."""

    signature: NodeSignature
    tuning: str
    tvm_ms: float | None = None  # None: it does not compile for this host (`error` says why)
    ort_ms: float | None = None  # None: ONNX Runtime cannot run it
    max_rel_diff_vs_ort: float | None = None
    compile_s: float | None = None
    kernels: list[Kernel] = []
    params_bytes: int | None = None
    activation_bytes: int | None = None
    warning: str | None = None
    error: str | None = None


class SiteModelEntry(Record):
    """An ONNX model on one site: its numbers there, or why it cannot run there."""

    excluded: str | None = None
    latency_ms: float | None = None
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


class HostStepEntry(Record):
    """A python step timed on this host, and the tensors it gave."""

    ms: float
    repeats_ms: list[float]
    signature: NodeSignature
    memory_mb: float
