"""`app.yaml` as pydantic v2 models: the one place its keys, types and defaults are defined.

The JSON Schema (`planner schema`, schema/app.schema.json) is generated from these models.
Cross-references (a flow naming a model, a profile naming a site, ...) are checked in
`planner.app.checks`, which knows the file's lines.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from planner.app.tensors import DTYPES, TensorSpec

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
        default=None, ge=0, description="price of one replica per hour; default: the target's typical price"
    )
    memory_mb: float | None = Field(
        default=None, gt=0, description="memory of one replica; default: the target's memory"
    )
    max_replicas: int = Field(default=1, ge=1, description="most replicas the site may run")
    rpc: RpcEndpoint | None = Field(default=None, description="measure profiles on the device through TVM RPC")


class Link(Strict):
    """An undirected network link; flows between sites route over the link graph."""

    between: tuple[Name, Name]
    bandwidth_mbps: float = Field(gt=0)
    rtt_ms: float = Field(ge=0)
    cost_per_gb: float = Field(default=0, ge=0, description="egress price per GB crossing this link")

    @field_validator("between")
    @classmethod
    def _distinct(cls, v: tuple[str, str]) -> tuple[str, str]:
        if v[0] == v[1]:
            raise ValueError(f"a link joins two different sites, got [{v[0]}, {v[1]}]")
        return v


class ProfileEntry(Strict):
    """Numbers for one node on one site, given by the user (provenance `given`)."""

    latency_ms: float = Field(gt=0)
    memory_mb: float = Field(default=0, ge=0)


def _shape_shorthand(value: Any) -> Any:
    # `x: [1, 3, 640, 640]` is shorthand for `x: {shape: [1, 3, 640, 640], dtype: float32}`
    return {"shape": value} if isinstance(value, list) else value


class TensorDecl(Strict):
    shape: list[Annotated[int, Field(ge=1)]] = Field(description="static shape")
    dtype: Literal[tuple(DTYPES)] = "float32"  # type: ignore[valid-type]


TensorInput = Annotated[TensorDecl, BeforeValidator(_shape_shorthand)]


class PythonStep(NamedTuple):
    """`python: file.py:function`: the file (relative to app.yaml) and the function in it."""

    file: str
    function: str


class Node(Strict):
    """A node of the ensemble graph: an ONNX model, a python step, or a model known only by
    its given profiles."""

    onnx: str | None = Field(default=None, description="ONNX file, relative to app.yaml")
    python: str | None = Field(
        default=None,
        pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$",
        description="`file.py:function` beside app.yaml; numpy arrays in (keyword args), a dict of arrays out",
    )
    inputs: dict[Name, TensorInput] = Field(
        default_factory=dict, description="static input shapes (and dtypes, default float32)"
    )
    files: list[str] = Field(
        default_factory=list,
        description="python steps: data files the step reads, relative to app.yaml; shipped beside it in the bundle",
    )
    profile: dict[Name, ProfileEntry] = Field(default_factory=dict, description="given numbers by site")
    sites: list[Name] | None = Field(default=None, min_length=1, description="where it may run")

    @model_validator(mode="after")
    def _one_kind(self) -> Node:
        if self.onnx and self.python:
            raise ValueError("a node is either `onnx:` or `python:`, not both")
        if self.files and not self.python:
            raise ValueError("`files:` belongs to a `python:` step")
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
    rate_rps: float = Field(gt=0)


class Sink(Strict):
    """Where results must arrive."""

    site: Name


class Flow(Strict):
    """A tensor moving from a source or node to a node or sink."""

    from_: Name = Field(alias="from")
    to: Name
    output: str | None = Field(default=None, description="producer's output tensor, when it has several")
    input: str | None = Field(default=None, description="consumer's input tensor, when it has several")
    bytes: int | None = Field(default=None, gt=0, description="bytes per request; derived from ONNX when omitted")


class Constraints(Strict):
    latency_ms: float | None = Field(default=None, gt=0, description="end-to-end SLO on every source->sink path")
    cost_per_hour: float | None = Field(default=None, ge=0, description="cost cap")


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
