"""Tensor descriptions shared by the spec, the profiler, the bundles and the runtime."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# ONNX / KServe-v2 names of the dtypes the planner moves between sites.
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("float32"),
    "float16": np.dtype("float16"),
    "float64": np.dtype("float64"),
    "int8": np.dtype("int8"),
    "int16": np.dtype("int16"),
    "int32": np.dtype("int32"),
    "int64": np.dtype("int64"),
    "uint8": np.dtype("uint8"),
    "bool": np.dtype("bool"),
}

# The largest tensor app.yaml may declare: the planner allocates declared inputs to run python
# steps (2**28 float64 elements are 2 GiB).
MAX_TENSOR_ELEMENTS = 2**28
MAX_TENSOR_DIMS = 32  # numpy's limit before numpy 2

# KServe-v2 BYTES: a tensor of variable-length byte strings (numpy object arrays of bytes/str).
# Its size is not known from its shape, so a flow carrying one needs an explicit `bytes:`.
# Kept out of DTYPES, which lists the dtypes an app.yaml may declare for an input.
BYTES = "bytes"
ALL_DTYPES: dict[str, np.dtype] = {**DTYPES, BYTES: np.dtype(object)}


def dtype_name(dtype: np.dtype) -> str:
    """The planner's name of a numpy dtype (object, bytes and str arrays are `bytes`)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return BYTES
    for name, d in DTYPES.items():
        if d == dtype:
            return name
    raise ValueError(f"dtype {dtype} cannot travel between sites (use one of {', '.join(ALL_DTYPES)})")


class TensorSpec(BaseModel):
    """A named tensor with a static shape: what crosses an edge of the ensemble graph."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dtype: str = "float32"
    shape: tuple[int, ...] = Field(default_factory=tuple)

    @property
    def is_variable(self) -> bool:
        """A BYTES tensor: its size in bytes depends on its content."""
        return self.dtype == BYTES

    @property
    def nbytes(self) -> int:
        if self.is_variable:
            raise ValueError(f"tensor {self.name} is {BYTES} (variable size): its flow needs an explicit `bytes:`")
        return math.prod(self.shape) * DTYPES[self.dtype].itemsize

    def describe(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(map(str, self.shape))}]"
