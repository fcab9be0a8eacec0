"""The profiler's output: the numbers the solver uses, each with where it came from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.app.tensors import TensorSpec

# measured: timed on this host; rpc: timed on the device through TVM's RPC tracker;
# estimated: host measurement scaled by the roofline model; given: written in app.yaml.
Provenance = Literal["measured", "rpc", "estimated", "given"]


class NodeProfile(BaseModel):
    """One node (ONNX model or python step) on one site."""

    model_config = ConfigDict(extra="forbid")

    node: str
    site: str
    target: str | None = None
    latency_ms: float = Field(gt=0)
    memory_mb: float = Field(ge=0)
    provenance: Provenance
    # "untuned", "tuned:<K>/<N>" (K of its N kernels had a tuning record), or None where TVM is not involved (given, python steps)
    tuning: str | None = None
    # host reference numbers shown beside the site number (ONNX models only)
    tvm_ms: float | None = None
    ort_ms: float | None = None
    note: str | None = None


class NodeSignature(BaseModel):
    """The tensors a node takes and gives, in order."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)


class Exclusion(BaseModel):
    """A (node, site) pair the profiler could not produce; the solver never uses it."""

    node: str
    site: str
    reason: str


class ProfileTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[NodeProfile] = Field(default_factory=list)
    signatures: dict[str, NodeSignature] = Field(default_factory=dict)
    excluded: list[Exclusion] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def get(self, node: str, site: str) -> NodeProfile | None:
        for e in self.entries:
            if e.node == node and e.site == site:
                return e
        return None
