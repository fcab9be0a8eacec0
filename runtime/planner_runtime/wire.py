"""ModelInfer messages with their tensor bytes kept out of protobuf (fewer copies of big tensors).

The protobuf encoding of a message is the concatenation of its fields, so a ModelInferRequest
is `header.SerializeToString()` followed by one length-delimited field 7 (raw_input_contents)
per tensor, and a ModelInferResponse likewise with field 6 (raw_output_contents). Sending, the
tensors are joined straight from the arrays' memory into the one buffer gRPC sends (one copy).
Receiving, the raw fields are cut out of the received buffer as memoryviews (no copy) and only
the small rest is parsed by protobuf. The bytes on the wire are standard OIP: any client or
server (tritonclient) reads and writes them as usual.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError

from planner_runtime.proto import grpc_predict_v2_pb2 as pb

REQUEST_RAW_FIELD = 7  # ModelInferRequest.raw_input_contents
RESPONSE_RAW_FIELD = 6  # ModelInferResponse.raw_output_contents


class Framed:
    """A message whose raw tensor contents live beside it (`raws`: bytes-like, in input/output order).

    Attribute access falls through to the message, so handlers read it like the message itself.
    """

    __slots__ = ("msg", "raws")

    def __init__(self, msg, raws: list):
        self.msg = msg
        self.raws = raws

    def __getattr__(self, name):
        return getattr(self.msg, name)

    @property
    def raw_input_contents(self):
        return self.raws

    @property
    def raw_output_contents(self):
        return self.raws


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def as_buffer(arr: np.ndarray):
    """The bytes of a numeric array without copying (when already C-contiguous)."""
    return memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def serialize(field: int):
    tag = _varint((field << 3) | 2)

    def ser(message) -> bytes:
        if not isinstance(message, Framed):
            return message.SerializeToString()
        parts = [message.msg.SerializeToString()]
        for raw in message.raws:
            parts.append(tag)
            parts.append(_varint(len(raw) if not isinstance(raw, memoryview) else raw.nbytes))
            parts.append(raw)
        return b"".join(parts)

    return ser


def split(data: bytes, field: int) -> tuple[bytes, list[memoryview]]:
    """(the message's bytes without `field`, the payloads of `field` as views into `data`)."""
    mv = memoryview(data)
    n = len(data)
    pos = 0
    rest, raws = [], []
    try:
        while pos < n:
            start = pos
            key, pos = _read_varint(data, pos)
            wt = key & 7
            if wt == 0:
                _, pos = _read_varint(data, pos)
            elif wt == 1:
                pos += 8
            elif wt == 5:
                pos += 4
            elif wt == 2:
                length, body = _read_varint(data, pos)
                pos = body + length
                if key >> 3 == field:
                    if pos > n:
                        raise DecodeError("truncated field")
                    raws.append(mv[body:pos])
                    continue
            else:
                raise DecodeError(f"unsupported wire type {wt}")
            rest.append(mv[start:pos])
    except IndexError:
        raise DecodeError("truncated message") from None
    if pos != n:
        raise DecodeError("truncated message")
    return b"".join(rest), raws


def parse(cls, field: int):
    def de(data: bytes) -> Framed:
        rest, raws = split(data, field)
        return Framed(cls.FromString(rest), raws)

    return de


serialize_request = serialize(REQUEST_RAW_FIELD)
serialize_response = serialize(RESPONSE_RAW_FIELD)
parse_request = parse(pb.ModelInferRequest, REQUEST_RAW_FIELD)
parse_response = parse(pb.ModelInferResponse, RESPONSE_RAW_FIELD)
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
