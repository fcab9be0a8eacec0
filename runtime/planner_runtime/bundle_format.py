"""`bundle.yaml`: what one site's bundle holds, the contract between `planner` (which writes
it, planner/bundle/) and the site runtime (which serves it). Plain pydantic, no planner or
TVM imports: the runtime ships without the planner.

Every bundle carries the whole ensemble graph (which node runs on which site, every flow
with its resolved tensor), so a site knows where each tensor it produces must go; only the
nodes placed on the bundle's own site have an `artifact` (compiled library, ONNX file or python file).

Reading a bundle (`Bundle.read`) trusts nothing on disk: bundle.yaml must be this format, every
path it names must stay inside the bundle's folder, and every file it ships must still have the
sha256 written at solve time (a library truncated by a failed copy would otherwise crash the site
when loaded). Any of these is one BundleError naming the file.

Format policy: FORMAT_VERSION changes when a reader of the previous format would misread or
refuse a new bundle (a new required field); a runtime reads only its own format and tells the user
to re-run `planner solve`. Format 2 added `checksums` (format 1 bundles have none to verify);
format 3 added `nodes.<n>.instances` and `sites.<s>.replicas`; format 4 added `nodes.<n>.provider` and
`nodes.<n>.threads` (the ONNX Runtime build a plan chose).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner_runtime.digest import sha256_file

FORMAT_VERSION = 4
_LACKS = {1: "without artifact checksums", 2: "without node instances and site replicas",
          3: "without ONNX Runtime providers and threads"}  # what each format lacks
BUNDLE_FILE = "bundle.yaml"
DELIVER_MODEL = "__planner_deliver__"  # internal OIP model a site receives forwarded tensors on


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class BundleError(ValueError):
    """bundle.yaml unreadable or invalid, or a file it names outside the bundle, missing or changed."""


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
    replicas: int = Field(default=1, ge=1, description="processes the plan runs for this site (`planner up` starts "
                          "that many on loopback; `address` is the first one's)")


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
    instances: int = Field(default=1, ge=1, description="requests the node serves at once in one replica of its "
                           "site; more wait for an instance, first come first served")
    provider: str | None = Field(default=None, description="`onnx` nodes: the ONNX Runtime execution provider the "
                                 "plan's build is for (CPUExecutionProvider, CUDAExecutionProvider)")
    threads: int | None = Field(default=None, ge=1, description="threads of the build as it was profiled: `onnx` "
                                "nodes' intra-op threads (None: ONNX Runtime's default, one per core); `tvm` "
                                "nodes' share of TVM's thread pool (None: TVM's default, half the hardware threads)")


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
    checksums: dict[str, Sha256] = Field(
        default_factory=dict, description="sha256 of every file in the bundle's folder, by path relative to it")

    def local_nodes(self) -> list[str]:
        return [n for n, spec in self.nodes.items() if spec.site == self.site]

    def write(self, directory: Path) -> Path:
        """bundle.yaml in `directory`, with the checksums of every file already there (the artifacts)."""
        directory = Path(directory)
        files = sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        checksums = {p.relative_to(directory).as_posix(): sha256_file(p) for p in files
                     if p != directory / BUNDLE_FILE}
        path = directory / BUNDLE_FILE
        data = self.model_copy(update={"checksums": checksums}).model_dump(mode="json")
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    @classmethod
    def read(cls, directory: Path) -> Bundle:
        """The bundle in `directory`, its files checked (see the module's docstring); BundleError if not."""
        directory = Path(directory)
        path = directory / BUNDLE_FILE
        bundle = cls._parse(path)
        bundle._check_files(directory, path)
        return bundle

    @classmethod
    def _parse(cls, path: Path) -> Bundle:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise BundleError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
        except yaml.YAMLError as exc:
            raise BundleError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(data, dict):
            raise BundleError(f"{path}: expected a mapping of bundle fields, found {type(data).__name__}")
        found = data.get("format")
        if found != FORMAT_VERSION:
            older = isinstance(found, int) and not isinstance(found, bool) and found < FORMAT_VERSION
            why = (f"written by an older planner, {_LACKS.get(found, 'in an older format')}" if older
                   else "not a format this runtime reads")
            raise BundleError(f"{path}: bundle format {found!r} ({why}); this runtime reads format {FORMAT_VERSION} "
                              "only: re-run `planner solve` with the planner of this runtime's version")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = [f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()]
            more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
            raise BundleError(f"{path}: not a valid bundle: {'; '.join(problems[:8])}{more}") from None

    def _check_files(self, directory: Path, path: Path) -> None:
        root = directory.resolve()

        def inside(rel: str, key: str) -> Path:
            pure = PurePosixPath(rel)
            file = (directory / rel).resolve()
            if pure.is_absolute() or ".." in pure.parts or not file.is_relative_to(root):
                raise BundleError(f"{path}: {key}: {rel!r} is outside the bundle (paths are relative to "
                                  f"{directory}, without '..')")
            return file

        for name in self.local_nodes():
            spec = self.nodes[name]
            for key in ("artifact", "host_fallback"):
                rel = getattr(spec, key)
                if rel is not None:
                    inside(rel, f"nodes.{name}.{key}")
                    if rel not in self.checksums:
                        raise BundleError(f"{path}: nodes.{name}.{key}: {rel} has no entry in `checksums`; "
                                          "re-run `planner solve` to rewrite the bundle")
        for rel, digest in self.checksums.items():
            file = inside(rel, f"checksums.{rel}")
            if not file.is_file():
                raise BundleError(f"{directory / rel}: missing (bundle.yaml lists it); copy the whole bundle folder")
            if sha256_file(file) != digest:
                raise BundleError(f"{directory / rel}: its sha256 is not the one in {path}: the file changed after "
                                  "`planner solve` wrote it (a truncated or corrupted copy?); copy the bundle "
                                  "again or re-run `planner solve`")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what is wrong and where (PyYAML's own text spans several lines and quotes the input)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem[:200]}{where}"
