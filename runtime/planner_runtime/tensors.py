"""Tensors on the wire: OIP datatypes <-> numpy, raw bytes, KServe BYTES encoding.

BYTES tensors travel as KServe does it: each element is a 4-byte little-endian length
followed by the element's bytes, elements in row-major order. On the numpy side they are
object arrays of `bytes`.
"""

from __future__ import annotations

import struct

import numpy as np

# bundle dtype (numpy name or "bytes") -> OIP datatype
_TO_OIP = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "bytes": "BYTES",
}
_FROM_OIP = {v: k for k, v in _TO_OIP.items()}
MAX_ELEMENTS = 2**31  # gRPC messages stop at 2 GiB: no tensor on the wire has more elements


class TensorError(ValueError):
    """A tensor that does not match what the model expects (-> INVALID_ARGUMENT)."""


def oip_datatype(dtype: str) -> str:
    try:
        return _TO_OIP[dtype]
    except KeyError:
        raise TensorError(f"unsupported dtype {dtype!r} (known: {', '.join(_TO_OIP)})") from None


def bundle_dtype(datatype: str) -> str:
    try:
        return _FROM_OIP[datatype]
    except KeyError:
        raise TensorError(f"unsupported datatype {datatype!r} (known: {', '.join(_FROM_OIP)})") from None


def array_dtype(arr: np.ndarray) -> str:
    """The bundle dtype name of an array (object/str/bytes arrays are BYTES)."""
    if arr.dtype.kind in ("O", "S", "U"):
        return "bytes"
    return arr.dtype.name


def encode_bytes(arr: np.ndarray) -> bytes:
    parts = []
    for item in arr.reshape(-1):
        b = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def element_count(name: str, shape: list[int]) -> int:
    """The number of elements of a shape, in Python integers (numpy's product wraps around silently).

    Negative dimensions raise TensorError; so does a count beyond any message (2**31 elements), so
    that no caller allocates or compares against a number the wire cannot carry.
    """
    count = 1
    for d in shape:
        if d < 0:
            raise TensorError(f"tensor {name!r}: negative dimension in shape {list(shape)}")
        count *= d
    if count > MAX_ELEMENTS:
        raise TensorError(f"tensor {name!r}: shape {list(shape)} has {count} elements, more than any message holds")
    return count


def decode_bytes(raw: bytes, shape: list[int], name: str) -> np.ndarray:
    count = element_count(name, shape)
    if 4 * count > len(raw):  # every element has its 4-byte length: refuse before allocating
        raise TensorError(f"tensor {name!r}: {len(raw)} bytes of content cannot hold {count} BYTES elements")
    out = np.empty(count, dtype=object)
    pos, mv = 0, memoryview(raw)
    for i in range(count):
        if pos + 4 > len(raw):
            raise TensorError(f"tensor {name!r}: BYTES content ends after {i} of {count} elements")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise TensorError(f"tensor {name!r}: BYTES element {i} claims {n} bytes, {len(raw) - pos} left")
        out[i] = bytes(mv[pos:pos + n])
        pos += n
    if pos != len(raw):
        raise TensorError(f"tensor {name!r}: {len(raw) - pos} bytes left over after {count} BYTES elements")
    return out.reshape(shape)


def to_raw(arr: np.ndarray, dtype: str | None = None, view: bool = False) -> tuple[str, list[int], bytes]:
    """(OIP datatype, shape, raw bytes) of an array; with `view`, a memoryview of its memory (no copy)."""
    dtype = dtype or array_dtype(arr)
    if dtype == "bytes":
        return "BYTES", list(np.shape(arr)), encode_bytes(np.asarray(arr, dtype=object))
    arr = np.asarray(arr)
    if arr.dtype.name != dtype:
        arr = arr.astype(dtype)
    arr = np.ascontiguousarray(arr)
    raw = memoryview(arr.reshape(-1).view(np.uint8)) if view else arr.tobytes()
    return oip_datatype(dtype), list(arr.shape), raw


def from_raw(name: str, datatype: str, shape, raw: bytes) -> np.ndarray:
    """The array a raw OIP tensor holds; a byte count that does not fit the shape raises TensorError."""
    shape = [int(d) for d in shape]
    dtype = bundle_dtype(datatype)
    if dtype == "bytes":
        return decode_bytes(raw, shape, name)
    np_dtype = np.dtype(dtype)
    expected = element_count(name, shape) * np_dtype.itemsize
    if len(raw) != expected:
        raise TensorError(f"tensor {name!r}: {len(raw)} bytes of content, shape {shape} {datatype} needs {expected}")
    return np.frombuffer(raw, dtype=np_dtype).reshape(shape)


def from_values(name: str, datatype: str, shape, values) -> np.ndarray:
    """The array of a tensor sent as typed `contents` (a list of values of the datatype's field)."""
    shape = [int(d) for d in shape]
    dtype = bundle_dtype(datatype)
    count = element_count(name, shape)
    if len(values) != count:
        raise TensorError(f"tensor {name!r}: {len(values)} values for shape {shape}")
    if dtype == "bytes":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    try:
        return np.array(values, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError) as exc:  # e.g. 1000 in int_contents of an INT8 tensor
        raise TensorError(f"tensor {name!r}: contents do not fit {datatype}: {exc}") from None


def check(name: str, arr_dtype: str, shape: list[int], want_dtype: str, want_shape: list[int]) -> None:
    """Raise TensorError naming the tensor when dtype or shape differ from the spec (-1 matches any size)."""
    if arr_dtype != want_dtype:
        raise TensorError(f"tensor {name!r}: datatype {oip_datatype(arr_dtype) if arr_dtype in _TO_OIP else arr_dtype}"
                          f", expected {oip_datatype(want_dtype)}")
    if len(shape) != len(want_shape) or any(w >= 0 and s != w for s, w in zip(shape, want_shape)):
        raise TensorError(f"tensor {name!r}: shape {list(shape)}, expected {list(want_shape)}")
