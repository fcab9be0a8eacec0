"""A small Open Inference Protocol client on this package's stubs (`planner bench`, benchmarks).

Do not use it in a process that imports tritonclient (the two sets of stubs clash).
"""

from __future__ import annotations

import json

import grpc
import numpy as np

from planner_runtime.forward import channel_options
from planner_runtime.proto import grpc_predict_v2_pb2 as pb
from planner_runtime.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from planner_runtime.tensors import from_raw, to_raw
from planner_runtime.wire import MODEL_INFER, Framed, parse_response, serialize_request


class OipClient:
    def __init__(self, address: str, max_message_bytes: int = 64 << 20):
        self.address = address
        self.channel = grpc.insecure_channel(address, options=channel_options(max_message_bytes))
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self._infer = self.channel.unary_unary(MODEL_INFER, request_serializer=serialize_request,
                                               response_deserializer=parse_response)

    def close(self) -> None:
        self.channel.close()

    def ready(self, timeout: float = 5.0) -> bool:
        return self.stub.ServerReady(pb.ServerReadyRequest(), timeout=timeout).ready

    def metadata(self, model: str, timeout: float = 5.0) -> pb.ModelMetadataResponse:
        return self.stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=timeout)

    def infer(self, model: str, inputs: dict[str, np.ndarray], timeout: float | None = None,
              dtypes: dict[str, str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """(outputs by name, response parameters as plain values; `timings` decoded)."""
        return decode_response(self._infer(infer_request(model, inputs, dtypes), timeout=timeout))

    def infer_future(self, request: Framed, timeout: float | None = None) -> grpc.Future:
        """Send `request` (infer_request) and return at once: the call's future, whose result
        decode_response reads (an open-loop sender must never wait on an answer)."""
        return self._infer.future(request, timeout=timeout)


def infer_request(model: str, inputs: dict[str, np.ndarray], dtypes: dict[str, str] | None = None) -> Framed:
    """A ModelInfer request for `model` with `inputs` (the same one may be sent many times)."""
    req = pb.ModelInferRequest(model_name=model)
    raws = []
    for name, arr in inputs.items():
        datatype, shape, raw = to_raw(arr, (dtypes or {}).get(name), view=True)
        req.inputs.add(name=name, datatype=datatype, shape=shape)
        raws.append(raw)
    return Framed(req, raws)


def decode_response(resp) -> tuple[dict[str, np.ndarray], dict]:
    """(outputs by name, response parameters as plain values; `timings` decoded)."""
    outputs = {o.name: from_raw(o.name, o.datatype, list(o.shape), raw)
               for o, raw in zip(resp.outputs, resp.raw_output_contents)}
    params = {}
    for k, v in resp.parameters.items():
        params[k] = getattr(v, v.WhichOneof("parameter_choice")) if v.WhichOneof("parameter_choice") else None
    if "timings" in params:
        params["timings"] = json.loads(params["timings"])
    return outputs, params
