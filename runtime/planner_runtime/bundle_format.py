"""`bundle.yaml`: what one site's bundle holds, the contract between `planner` (which writes
it, planner/bundle/) and the site runtime (which serves it). Plain pydantic, no planner or
TVM imports: the runtime ships without the planner.

Every bundle carries the whole ensemble graph (which node runs on which site, every flow
with its resolved tensor), so a site knows where each tensor it produces must go; only the
nodes placed on the bundle's own site have an `artifact` (compiled library or python file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.yaml"
DELIVER_MODEL = "__planner_deliver__"  # internal OIP model a site receives forwarded tensors on


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tensor(_Strict):
    name: str
    dtype: str  # numpy/ONNX name (float32, uint8, ...) or "bytes" (KServe BYTES)
    shape: list[int]


class SiteEndpoint(_Strict):
    address: str = Field(description="host:port the site's runtime listens on")
    tier: str
    target: str = Field(description="catalog name of the hardware the site's models were compiled for")


class Endpoint(_Strict):
    """One end of a flow: a source, a node (model or python step) or a sink, with the tensor name there."""

    kind: Literal["source", "node", "sink"]
    name: str
    tensor: str


class FlowEdge(_Strict):
    src: Endpoint
    dst: Endpoint
    tensor: Tensor  # dtype and shape of what travels; tensor.name == src.tensor


class NodeSpec(_Strict):
    site: str
    kind: Literal["tvm", "python", "onnx"]
    inputs: list[Tensor]
    outputs: list[Tensor]
    # only for nodes on this bundle's site: path relative to the bundle dir
    artifact: str | None = None
    function: str | None = Field(default=None, description="python steps: the function in `artifact`")
    compiled_for: str | None = Field(default=None, description="target the artifact was built for")
    host_fallback: str | None = Field(
        default=None, description="an artifact compiled for the machine that wrote the bundle (planner up --host-targets)"
    )


class SourceSpec(_Strict):
    site: str
    tensors: list[Tensor]  # the ensemble model's inputs


class SinkSpec(_Strict):
    site: str
    tensors: list[Tensor]  # the ensemble model's outputs


class RuntimeSettings(_Strict):
    max_message_bytes: int = Field(gt=0, description="gRPC send/receive limit: fits the largest tensor set")
    default_deadline_ms: float = Field(gt=0, description="deadline of a request that sets none")
    forward_timeout_ms: float = Field(default=10000, gt=0)
    max_inflight: int = Field(default=32, ge=1, description="requests entering the ensemble at a site that run at once")
    max_queue: int = Field(default=64, ge=0, description="requests waiting (FIFO) for one of those slots; beyond: refused")


class Bundle(_Strict):
    format: int = FORMAT_VERSION
    app: str = Field(description="the ensemble model's name (app.yaml `name`)")
    site: str = Field(description="the site this bundle is for")
    sites: dict[str, SiteEndpoint]
    sources: dict[str, SourceSpec]
    sinks: dict[str, SinkSpec]
    nodes: dict[str, NodeSpec]
    flows: list[FlowEdge]
    runtime: RuntimeSettings

    def local_nodes(self) -> list[str]:
        return [n for n, spec in self.nodes.items() if spec.site == self.site]

    def write(self, directory: Path) -> Path:
        path = Path(directory) / BUNDLE_FILE
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
        return path

    @classmethod
    def read(cls, directory: Path) -> Bundle:
        return cls.model_validate(yaml.safe_load((Path(directory) / BUNDLE_FILE).read_text()))
