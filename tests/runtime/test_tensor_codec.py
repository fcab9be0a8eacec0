"""Tensors on the wire (planner_runtime.tensors), without a server: every OIP datatype both ways,
KServe's BYTES encoding byte for byte, raw contents checked against their shape, and the shape
and datatype check a request's tensors pass before a model runs (its messages are what the
client reads in INVALID_ARGUMENT)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from planner_runtime.tensors import (TensorError, array_dtype, bundle_dtype, check, decode_bytes, element_count,
                                     encode_bytes, from_raw, from_values, oip_datatype, to_raw)

# KServe / Open Inference Protocol datatypes, from its spec
OIP = {"bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
       "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
       "float16": "FP16", "float32": "FP32", "float64": "FP64", "bytes": "BYTES"}


@pytest.mark.parametrize("dtype, datatype", OIP.items())
def test_every_datatype_maps_both_ways(dtype, datatype):
    assert oip_datatype(dtype) == datatype
    assert bundle_dtype(datatype) == dtype


def test_unknown_datatypes_name_the_known_ones():
    with pytest.raises(TensorError, match="^unsupported dtype 'complex64' \\(known: bool, uint8, .*, bytes\\)$"):
        oip_datatype("complex64")
    with pytest.raises(TensorError, match="^unsupported datatype 'FP8' \\(known: BOOL, UINT8, .*, BYTES\\)$"):
        bundle_dtype("FP8")


@pytest.mark.parametrize("arr, dtype", [
    (np.zeros(2, dtype=np.float32), "float32"), (np.zeros(2, dtype=np.uint8), "uint8"),
    (np.array([b"a"], dtype=object), "bytes"), (np.array([b"a"]), "bytes"), (np.array(["a"]), "bytes"),
])
def test_array_dtype(arr, dtype):
    assert array_dtype(arr) == dtype


def test_bytes_encoding_is_kserves():
    """Each element: its length as 4 bytes little-endian, then its bytes; row-major; str as UTF-8."""
    words = np.array([[b"a", b""], [b"\x00\xff", "t\u00e9xt"]], dtype=object)
    raw = encode_bytes(words)
    assert raw == (b"\x01\x00\x00\x00a" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\x00\xff"
                   + struct.pack("<I", 5) + "t\u00e9xt".encode())
    back = decode_bytes(raw, [2, 2], "w")
    assert back.shape == (2, 2) and back.dtype == object
    assert back.tolist() == [[b"a", b""], [b"\x00\xff", "t\u00e9xt".encode()]]
    assert all(type(x) is bytes for x in back.reshape(-1))


def test_bytes_of_a_scalar_and_of_an_empty_tensor():
    assert decode_bytes(b"\x02\x00\x00\x00hi", [], "s").tolist() == b"hi"
    assert decode_bytes(b"", [0], "e").shape == (0,)
    assert decode_bytes(b"\x00\x00\x00\x00", [1], "z").tolist() == [b""]  # the content ends with an empty element


@pytest.mark.parametrize("raw, shape, message", [
    # each element needs its 4-byte length at least: refused before decoding any
    (b"\x01\x00\x00\x00a", [2], "^tensor 'w': 5 bytes of content cannot hold 2 BYTES elements$"),
    (b"\x01\x00\x00\x00a\x01\x00", [2], "^tensor 'w': 7 bytes of content cannot hold 2 BYTES elements$"),
    (b"\x04\x00\x00\x00abcd\x00\x00\x00\x00", [3], "^tensor 'w': BYTES content ends after 2 of 3 elements$"),
    (b"\x03\x00\x00\x00ab", [1], "^tensor 'w': BYTES element 0 claims 3 bytes, 2 left$"),
    (b"\x01\x00\x00\x00a\x05\x00\x00\x00abcd", [2], "^tensor 'w': BYTES element 1 claims 5 bytes, 4 left$"),
    (b"\x01\x00\x00\x00ab", [1], "^tensor 'w': 1 bytes left over after 1 BYTES elements$"),
    (b"\xff\xff\xff\xff", [1], "^tensor 'w': BYTES element 0 claims 4294967295 bytes, 0 left$"),  # lengths are unsigned
    (b"\x00\x00\x00\x00\x00", [], "^tensor 'w': 1 bytes left over after 1 BYTES elements$"),
])
def test_malformed_bytes_content(raw, shape, message):
    with pytest.raises(TensorError, match=message):
        decode_bytes(raw, shape, "w")


def test_to_raw_and_back():
    f = np.arange(6, dtype=np.float32).reshape(2, 3)
    datatype, shape, raw = to_raw(f)
    assert (datatype, shape, raw) == ("FP32", [2, 3], f.tobytes()) and type(raw) is bytes
    assert (from_raw("f", datatype, shape, raw) == f).all()
    # the bundle's dtype wins over the array's
    datatype, shape, raw = to_raw(np.array([[1, 2]], dtype=np.int64), "float32")
    assert (datatype, shape) == ("FP32", [1, 2]) and raw == np.array([1.0, 2.0], dtype=np.float32).tobytes()
    words = np.array([b"ab", b"c"], dtype=object)
    assert to_raw(words) == ("BYTES", [2], encode_bytes(words))
    # a list of bytes as it is: numpy's own bytes dtype would drop the trailing NUL
    assert to_raw([b"a\x00", b"c"], "bytes") == ("BYTES", [2], b"\x02\x00\x00\x00a\x00\x01\x00\x00\x00c")


def test_to_raw_views_a_contiguous_copy():
    """`view`: a memoryview of the array's memory, in row-major order even for a transposed array."""
    t = np.arange(6, dtype=np.int16).reshape(2, 3).T
    datatype, shape, raw = to_raw(t, view=True)
    assert isinstance(raw, memoryview) and (datatype, shape) == ("INT16", [3, 2])
    assert raw.ndim == 1 and raw.format == "B" and len(raw) == 12  # flat bytes, as the wire frames them
    assert bytes(raw) == np.ascontiguousarray(t).tobytes() == to_raw(t)[2]
    c = np.arange(4, dtype=np.uint8)
    assert np.shares_memory(np.frombuffer(to_raw(c, view=True)[2], dtype=np.uint8), c)


def test_from_raw_checks_the_byte_count_against_the_shape():
    f = np.arange(6, dtype=np.float32).reshape(2, 3)
    with pytest.raises(TensorError, match="^tensor 'f': 20 bytes of content, shape \\[2, 3\\] FP32 needs 24$"):
        from_raw("f", "FP32", [2, 3], f.tobytes()[:20])
    with pytest.raises(TensorError, match="^tensor 'f': 28 bytes of content, shape \\[2, 3\\] FP32 needs 24$"):
        from_raw("f", "FP32", [2, 3], f.tobytes() + b"\0" * 4)
    with pytest.raises(TensorError, match="^tensor 'f': negative dimension in shape \\[2, -3\\]$"):
        from_raw("f", "FP32", [2, -3], f.tobytes())
    with pytest.raises(TensorError, match="^tensor 'w': 0 bytes of content cannot hold 5 BYTES elements$"):
        from_raw("w", "BYTES", [5], b"")
    empty = from_raw("e", "FP32", [0, 3], b"")  # a zero dimension is a valid, empty tensor
    assert empty.shape == (0, 3) and empty.dtype == np.float32
    got = from_raw("u", "UINT16", np.array([3]), b"\x01\x00\x02\x00\x03\x01")  # shapes arrive as any integers
    assert got.dtype == np.uint16 and got.tolist() == [1, 2, 259]
    assert from_raw("w", "BYTES", (1,), b"\x01\x00\x00\x00z").tolist() == [b"z"]


LARGEST = 2**31  # elements: a gRPC message stops at 2 GiB, and no tensor on the wire has more


def test_element_count_is_exact_up_to_what_a_message_holds():
    assert element_count("x", [LARGEST]) == element_count("x", [2**16, 2**15]) == LARGEST
    assert element_count("x", []) == 1 and element_count("x", [3, 0, 5]) == 0
    # one more, and a count numpy's int64 product wraps around to 0 (2**64)
    for shape in ([LARGEST + 1], [2**16 + 1, 2**15], [2**32, 2**32]):
        with pytest.raises(TensorError, match=f"^tensor 'x': shape {re_list(shape)} has {math.prod(shape)} elements, "
                                              "more than any message holds$"):
            element_count("x", shape)


def test_counts_beyond_any_message_are_refused_before_reading_content():
    too_many = "has 18446744073709551616 elements, more than any message holds$"
    with pytest.raises(TensorError, match=f"^tensor 'f': shape \\[4294967296, 4294967296\\] {too_many}"):
        from_raw("f", "FP32", [2**32, 2**32], b"")
    with pytest.raises(TensorError, match=f"^tensor 'w': shape \\[4294967296, 4294967296\\] {too_many}"):
        decode_bytes(b"", [2**32, 2**32], "w")
    with pytest.raises(TensorError, match=f"^tensor 'v': shape \\[4294967296, 4294967296\\] {too_many}"):
        from_values("v", "INT8", [2**32, 2**32], [])


INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


@pytest.mark.parametrize("dtype", INTS)
def test_typed_contents_span_each_int_range_and_no_further(dtype):
    """Both ends of the datatype's range (numpy's own limits) come through; one past either end
    is refused, not wrapped around."""
    lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
    got = from_values("v", OIP[dtype], np.array([1, 2]), [lo, hi])  # shapes arrive as any integers
    assert got.dtype == np.dtype(dtype) and got.shape == (1, 2) and got.tolist() == [[lo, hi]]
    for beyond in (lo - 1, hi + 1):
        with pytest.raises(TensorError, match=f"^tensor 'v': contents do not fit {OIP[dtype]}: .+"):
            from_values("v", OIP[dtype], [2], [0, beyond])


def test_typed_contents_of_floats_bools_and_bytes():
    got = from_values("f", "FP32", (2,), [0.5, -1.25])
    assert got.dtype == np.float32 and got.tolist() == [0.5, -1.25]
    got = from_values("d", "FP64", [1, 1], [1e300])
    assert got.dtype == np.float64 and got.tolist() == [[1e300]]
    got = from_values("b", "BOOL", [2], [True, False])
    assert got.dtype == np.bool_ and got.tolist() == [True, False]
    # BYTES: object arrays of the bytes as they are (numpy's own bytes dtype would drop the trailing NUL)
    words = from_values("w", "BYTES", (2, 1), [b"a\x00", b""])
    assert words.dtype == object and words.shape == (2, 1) and words.tolist() == [[b"a\x00"], [b""]]
    assert all(type(x) is bytes for x in words.reshape(-1))
    one = from_values("w", "BYTES", [], [b"s"])
    assert one.dtype == object and one.shape == () and one.tolist() == b"s"
    empty = from_values("w", "BYTES", [0, 2], [])
    assert empty.dtype == object and empty.shape == (0, 2)


def test_typed_contents_must_fill_the_shape():
    with pytest.raises(TensorError, match="^tensor 'v': 3 values for shape \\[2, 2\\]$"):
        from_values("v", "INT32", (2, 2), [1, 2, 3])
    with pytest.raises(TensorError, match="^tensor 'v': 5 values for shape \\[2, 2\\]$"):
        from_values("v", "INT32", np.array([2, 2]), [1, 2, 3, 4, 5])
    with pytest.raises(TensorError, match="^tensor 'w': 1 values for shape \\[2\\]$"):
        from_values("w", "BYTES", [2], [b"a"])
    with pytest.raises(TensorError, match="^tensor 'v': negative dimension in shape \\[-1\\]$"):
        from_values("v", "INT32", [-1], [])
    with pytest.raises(TensorError, match="^unsupported datatype 'FP8'"):
        from_values("v", "FP8", [1], [1.0])
    # what numpy cannot read as the datatype at all is the same error, not a traceback
    with pytest.raises(TensorError, match="^tensor 'v': contents do not fit INT32: invalid literal for int\\(\\)"):
        from_values("v", "INT32", [1], ["x"])


@pytest.mark.parametrize("shape", [[1, 64], [-1, 64], [1, -1], [-1, -1]])
def test_check_accepts_the_spec_and_its_wildcards(shape):
    check("x", "float32", [1, 64], "float32", shape)


@pytest.mark.parametrize("got, want", [
    ([1, 64, 1], [1, 64]), ([64], [1, 64]), ([], [1]), ([1], []),  # another rank
    ([2, 64], [1, 64]), ([1, 63], [1, 64]), ([1], [0]),  # another size
    ([5, 1, 2], [-1, 1, 3]),  # a wildcard does not excuse another dimension
])
def test_check_refuses_another_shape(got, want):
    with pytest.raises(TensorError, match=f"^tensor 'x': shape {re_list(got)}, expected {re_list(want)}$"):
        check("x", "float32", got, "float32", want)


def re_list(shape: list[int]) -> str:
    return str(list(shape)).replace("[", "\\[").replace("]", "\\]")


def test_check_refuses_another_datatype_naming_both():
    with pytest.raises(TensorError, match="^tensor 'x': datatype INT64, expected FP32$"):
        check("x", "int64", [1, 64], "float32", [1, 64])
    with pytest.raises(TensorError, match="^tensor 'x': datatype complex64, expected FP32$"):
        check("x", "complex64", [1, 64], "float32", [1, 64])
    with pytest.raises(TensorError, match="^tensor 'x': datatype BYTES, expected UINT8$"):
        check("x", "bytes", [1], "uint8", [-1])
