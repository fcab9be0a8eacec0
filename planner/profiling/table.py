"""The profiler's output: the numbers the solver uses, each with where it came from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.app.tensors import TensorSpec

# measured: timed on this host; rpc: timed on the device through TVM's RPC tracker;
# estimated: host measurement scaled by the roofline model; given: written in app.yaml.
Provenance = Literal["measured", "rpc", "estimated", "given"]
# what runs the node: a TVM-compiled library, ONNX Runtime (the ONNX file), the python step itself,
# or nothing known (numbers given in app.yaml)
Engine = Literal["tvm", "onnxruntime", "python", "given"]
# the arithmetic of the build; anything but fp32 is admitted only within `models.<m>.max_error`
Precision = Literal["fp32", "fp16", "int8"]


class NodeProfile(BaseModel):
    """One build of one node (ONNX model or python step) on one site. A node may have several
    builds per site (engines, precisions); the solver chooses the site and the build together."""

    model_config = ConfigDict(extra="forbid")

    node: str
    site: str
    engine: Engine = "given"
    precision: Precision = "fp32"
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
    # outputs compared with the fp32 ONNX Runtime reference on the profiling inputs: True passed,
    # None not run where it would run (an estimate for another target: `unverified`)
    verified: bool | None = None
    max_rel_error: float | None = Field(default=None, description="largest output difference vs the reference, "
                                        "relative to the output's magnitude")
    threads: int | None = Field(default=None, description="threads the measurement ran with (as deployed)")
    load_per_core: float | None = Field(default=None, description="the host's 1-minute load average per core when "
                                        "measured (what else ran)")
    steal_pct: float | None = Field(default=None, description="CPU steal during the host measurement, where the "
                                    "kernel reports it")
    slow_factor: float | None = Field(default=None, description="the compute probe after the host measurement "
                                      "against the fastest this machine ran (planner.profiling.speed)")
    expected_error_pct: float | None = Field(default=None, description="estimates: the calibration's stated error")

    @property
    def build(self) -> str:
        """`engine/precision`, e.g. `onnxruntime/int8`: one build's name in plans and reports."""
        return f"{self.engine}/{self.precision}"

    @property
    def build_label(self) -> str:
        """For tables: the build of an engine's build, else `python` or `given`."""
        return self.build if self.engine in ("tvm", "onnxruntime") else self.engine

    @property
    def verification(self) -> str:
        """For tables: `yes (<max error>)`, `FAILED (<max error>)`, `unverified` (a build not run
        here; `unverified (CPU <max error>)` where its arithmetic was checked on this CPU), or `-`
        (python steps and given numbers: nothing to compare with)."""
        if self.verified is None:
            if self.engine not in ("tvm", "onnxruntime"):
                return "-"
            # fp16 on a GPU: not run there, but its arithmetic's error was measured on this CPU
            return "unverified" if self.max_rel_error is None else f"unverified (CPU {self.max_rel_error:.1e})"
        error = "" if self.max_rel_error is None else f" ({self.max_rel_error:.1e})"
        return ("yes" if self.verified else "FAILED") + error


class NodeSignature(BaseModel):
    """The tensors a node takes and gives, in order."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)


class Exclusion(BaseModel):
    """A (node, site) pair, or one build of it, the profiler could not produce or that failed
    verification; the solver never uses it."""

    node: str
    site: str
    reason: str
    build: str | None = None  # `engine/precision`; None: every build of the pair
    profile: NodeProfile | None = None  # the build's numbers, where it had some (shown, never used)


class ProfileTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[NodeProfile] = Field(default_factory=list)
    signatures: dict[str, NodeSignature] = Field(default_factory=dict)
    excluded: list[Exclusion] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def get(self, node: str, site: str, build: str | None = None) -> NodeProfile | None:
        """The first entry of the pair (of that build, when named)."""
        for e in self.entries:
            if e.node == node and e.site == site and (build is None or e.build == build):
                return e
        return None

    def builds(self, node: str, site: str) -> list[NodeProfile]:
        return [e for e in self.entries if e.node == node and e.site == site]
