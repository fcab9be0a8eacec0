"""Profiling errors the user acts on (exit 2 through InputError) or the profiler works around."""

from __future__ import annotations

from planner.errors import InputError


class ProfilingInputError(InputError):
    """An ONNX file that cannot be used: missing, unreadable, failing the ONNX checker, or
    with shapes that do not match the declared inputs."""

    def __init__(self, message: str, *, file: str | None = None):
        super().__init__(message, file=file)


class UnsupportedOperator(ProfilingInputError):
    """An operator TVM's Relax ONNX frontend cannot import; `ops` names them."""

    def __init__(self, ops: list[str], *, file: str | None = None):
        self.ops = sorted(set(ops))
        super().__init__(f"operator{'s' if len(self.ops) > 1 else ''} {', '.join(self.ops)} not supported "
                         "by TVM's ONNX importer", file=file)


class CompileError(Exception):
    """A model that imports but does not compile for one target: that (model, site) is excluded."""
