"""`app.yaml` as pydantic v2 models: the one place its keys, types and defaults are defined.

The JSON Schema (`planner schema`, schema/app.schema.json) is generated from these models.
Cross-references (a flow naming a model, a profile naming a site, ...) are checked in
`planner.app.checks`, which knows the file's lines.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from planner.app.tensors import DTYPES, MAX_TENSOR_DIMS, MAX_TENSOR_ELEMENTS, TensorSpec

# The range of every number, physically generous (a link of 1 kbit/s to 1 Pbit/s, a model of up
# to 2.8 hours per request, a million requests per second), so that none overflows the floats
# of the latency and cost model or the solver's integers on its own; the sums over a whole app
# are checked where the solver's integers are made (planner.plan.limits).
MAX_MS = 1e7  # 2.8 hours: a model's latency, a link's round trip
MAX_SLO_MS = 1e9  # 11.6 days
MAX_MB = 1e9  # a petabyte
MAX_PRICE_PER_HOUR = 1e6  # dollars per hour, of one replica
MAX_COST_CAP = 1e9  # dollars per hour, of the whole plan
MAX_PRICE_PER_GB = 1e4
MAX_REPLICAS = 10**6
MIN_MBPS, MAX_MBPS = 1e-3, 1e9  # 1 kbit/s .. 1 Pbit/s
MAX_RATE_RPS = 1e6
MAX_FLOW_BYTES = 2**40  # 1 TiB per request
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_INSTANCES = 1024  # instances of one model in one replica (Triton's instance count)

# a file path: no NUL (no OS call accepts one), no longer than PATH_MAX
FilePath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS, pattern=r"^[^\x00]+$")]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
Tier = Literal["edge", "base-station", "cloud"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class RpcEndpoint(Strict):
    """A device reachable through TVM's RPC tracker: profiles on it are measured there."""

    tracker: str = Field(pattern=r"^[^:\s]+:\d+$", description="HOST:PORT of the RPC tracker")
    key: str = Field(min_length=1, description="device key registered with the tracker")


class Site(Strict):
    """Where models can run: one tier, one hardware target, a price, a capacity."""

    tier: Tier
    target: str | dict[str, Any] = Field(
        description="a catalog target name (`planner targets`) or an inline target definition"
    )
    cost_per_hour: float | None = Field(
        default=None, ge=0, le=MAX_PRICE_PER_HOUR,
        description="price of one replica per hour, 0 to 1e6 dollars; default: the target's typical price",
    )
    memory_mb: float | None = Field(
        default=None, gt=0, le=MAX_MB, description="memory of one replica, up to 1e9 MB; default: the target's memory"
    )
    max_replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS, description="most replicas the site may run, 1 to 1e6")
    rpc: RpcEndpoint | None = Field(default=None, description="measure profiles on the device through TVM RPC")


class Link(Strict):
    """An undirected network link; flows between sites route over the link graph."""

    between: tuple[Name, Name]
    bandwidth_mbps: float = Field(ge=MIN_MBPS, le=MAX_MBPS, description="Mbit/s, 1e-3 (1 kbit/s) to 1e9 (1 Pbit/s)")
    rtt_ms: float = Field(ge=0, le=MAX_MS, description="round-trip time, 0 to 1e7 ms")
    cost_per_gb: float = Field(default=0, ge=0, le=MAX_PRICE_PER_GB,
                               description="egress price per GB crossing this link, 0 to 1e4 dollars")

    @field_validator("between")
    @classmethod
    def _distinct(cls, v: tuple[str, str]) -> tuple[str, str]:
        if v[0] == v[1]:
            raise ValueError(f"a link joins two different sites, got [{v[0]}, {v[1]}]")
        return v


class ProfileEntry(Strict):
    """Numbers for one node on one site, given by the user (provenance `given`)."""

    latency_ms: float = Field(gt=0, le=MAX_MS, description="per request, up to 1e7 ms")
    memory_mb: float = Field(default=0, ge=0, le=MAX_MB, description="0 to 1e9 MB")


def _shape_shorthand(value: Any) -> Any:
    # `x: [1, 3, 640, 640]` is shorthand for `x: {shape: [1, 3, 640, 640], dtype: float32}`
    return {"shape": value} if isinstance(value, list) else value


class TensorDecl(Strict):
    shape: list[Annotated[int, Field(ge=1, le=MAX_TENSOR_ELEMENTS)]] = Field(
        max_length=MAX_TENSOR_DIMS,
        description=f"static shape: at most {MAX_TENSOR_DIMS} dimensions, at most 2**28 elements in all",
    )
    dtype: Literal[tuple(DTYPES)] = "float32"  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _bounded(self) -> TensorDecl:
        # the planner allocates declared inputs to run python steps: bound them before anything does
        elements = math.prod(self.shape)
        if elements > MAX_TENSOR_ELEMENTS:
            raise ValueError(f"shape {self.shape} has {elements:,} elements; a tensor may have at most "
                             f"2**28 ({MAX_TENSOR_ELEMENTS:,})")
        return self


TensorInput = Annotated[TensorDecl, BeforeValidator(_shape_shorthand)]


class PythonStep(NamedTuple):
    """`python: file.py:function`: the file (relative to app.yaml) and the function in it."""

    file: str
    function: str


class Node(Strict):
    """A node of the ensemble graph: an ONNX model, a python step, or a model known only by
    its given profiles."""

    onnx: FilePath | None = Field(default=None, description="ONNX file, relative to app.yaml")
    python: str | None = Field(
        default=None,
        max_length=MAX_PATH_CHARS,
        pattern=r"^[^:\x00]+\.py:[A-Za-z_][A-Za-z0-9_]*$",
        description="`file.py:function` beside app.yaml; numpy arrays in (keyword args), a dict of arrays out",
    )
    inputs: dict[Name, TensorInput] = Field(
        default_factory=dict, description="static input shapes (and dtypes, default float32)"
    )
    files: list[FilePath] = Field(
        default_factory=list,
        description="python steps: data files the step reads, relative to app.yaml; shipped beside it in the bundle",
    )
    profile: dict[Name, ProfileEntry] = Field(default_factory=dict, description="given numbers by site")
    sites: list[Name] | None = Field(default=None, min_length=1, description="where it may run")
    instances: int = Field(
        default=1, ge=1, le=MAX_INSTANCES,
        description="instances of the model in each replica of its site, 1 to 1024: each serves one request at "
                    "a time, the others wait in FIFO order",
    )
    max_error: float | None = Field(
        default=None, gt=0, le=1,
        description="accuracy budget of reduced-precision builds (int8, fp16): largest output difference relative "
                    "to the fp32 ONNX Runtime reference's magnitude, above 0 up to 1; default: fp32 builds only",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Node:
        if self.onnx and self.python:
            raise ValueError("a node is either `onnx:` or `python:`, not both")
        if self.files and not self.python:
            raise ValueError("`files:` belongs to a `python:` step")
        if self.max_error is not None and not self.onnx:
            raise ValueError("`max_error:` belongs to an `onnx:` model (the budget of its reduced-precision builds)")
        return self

    @property
    def kind(self) -> str:
        return "onnx" if self.onnx else "python" if self.python else "given"

    @property
    def python_step(self) -> PythonStep | None:
        if self.python is None:
            return None
        file, _, function = self.python.rpartition(":")
        return PythonStep(file, function)

    @property
    def input_shapes(self) -> dict[str, list[int]]:
        return {name: list(t.shape) for name, t in self.inputs.items()}

    @property
    def input_specs(self) -> list[TensorSpec]:
        """The declared inputs, in order."""
        return [TensorSpec(name=name, dtype=t.dtype, shape=tuple(t.shape)) for name, t in self.inputs.items()]


class Source(Strict):
    """Where requests enter: a site and a request rate."""

    site: Name
    rate_rps: float = Field(gt=0, le=MAX_RATE_RPS, description="requests per second, up to 1e6")


class Sink(Strict):
    """Where results must arrive."""

    site: Name


class Flow(Strict):
    """A tensor moving from a source or node to a node or sink."""

    from_: Name = Field(alias="from")
    to: Name
    output: str | None = Field(default=None, description="producer's output tensor, when it has several")
    input: str | None = Field(default=None, description="consumer's input tensor, when it has several")
    bytes: int | None = Field(default=None, ge=1, le=MAX_FLOW_BYTES,
                              description="bytes per request, 1 to 2**40; derived from the tensors when omitted")


class Constraints(Strict):
    latency_ms: float | None = Field(default=None, gt=0, le=MAX_SLO_MS,
                                     description="end-to-end SLO on every source->sink path, up to 1e9 ms")
    cost_per_hour: float | None = Field(default=None, ge=0, le=MAX_COST_CAP, description="cost cap, 0 to 1e9 dollars")
    percentile: float = Field(default=99, ge=50, le=99.99,
                              description="latency_ms bounds this percentile of each path under the planned load, "
                                          "50 to 99.99")
    max_utilization: float | None = Field(
        default=None, gt=0, lt=1,
        description="most a model's instances on a site may be busy, above 0 and below 1; default: any load a "
                    "queue can keep up with",
    )


class App(Strict):
    """An ensemble application: the graph, where it may run, and what it must meet."""

    name: Name
    sites: dict[Name, Site] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)
    models: dict[Name, Node] = Field(min_length=1)
    sources: dict[Name, Source] = Field(min_length=1)
    sinks: dict[Name, Sink] = Field(min_length=1)
    flows: list[Flow] = Field(min_length=1)
    constraints: Constraints = Field(default_factory=Constraints)
    objective: Literal["cost", "latency"] = "cost"

    def candidate_sites(self, model: str) -> list[str]:
        """Where a node may run, before profiling: `sites:` if given, else every site; a node
        with nothing to profile (no onnx, no python) only on the sites it has numbers for."""
        node = self.models[model]
        sites = list(node.sites) if node.sites else list(self.sites)
        if node.kind == "given":
            sites = [s for s in sites if s in node.profile]
        return sites


def app_json_schema() -> dict[str, Any]:
    """The JSON Schema of app.yaml (`planner schema`, committed as schema/app.schema.json)."""
    schema = App.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
