"""Forwarding tensors to other sites: ModelInfer on their DELIVER_MODEL, one channel per site.

A forward carries, as request parameters: the request id (`id`), the entry site's address
(`entry`), the absolute deadline (`deadline_unix_ns`, informational: the call's own gRPC
timeout is the remaining time and is what the receiver enforces) and the sending site
(`from_site`), and the request's route (`route`: JSON {site: address}, the replica of each site
the entry chose for it); each tensor carries its flow (`flow`). The receiver answers with its own
handling time (`handler_ms`) and the timings of everything it ran and forwarded (`timings`),
so the hop's overhead is the round trip minus the receiver's handling.

A forward ends with its caller: when the call that made it is cancelled, so is the forward,
and the receiver sees its own call cancelled in turn. A request cancelled at its entry is also
announced to the other sites (`cancel`: a ModelInfer on DELIVER_MODEL with the request id, the
parameter `cancel` and no tensors), which drop what they hold for it (a fan-in's inputs).

A site run as several replicas (processes) is balanced by its callers (runtime.balance): the
entry picks one replica of every other site per request, and every forward of that request to that
site goes there, so a node's inputs coming from different sites meet in the same process.
"""

from __future__ import annotations

import json
import time

import grpc

from planner_runtime.admission import Cancellation
from planner_runtime.balance import Balancer
from planner_runtime.bundle_format import DELIVER_MODEL
from planner_runtime.channels import ChannelCache
from planner_runtime.executor import Delivery, Timing, flow_id
from planner_runtime.proto import grpc_predict_v2_pb2 as pb
from planner_runtime.tensors import to_raw
from planner_runtime.wire import MODEL_INFER, Framed, serialize_request


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # a site that comes back is reached again within about a second
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.keepalive_time_ms", 30000),
        ("grpc.enable_retries", 0),
    ]


class ForwardError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class Forwarder:
    """Sends deliveries to other sites. Thread-safe; channels are cached per address (at most `max_channels`)."""

    def __init__(self, site: str, max_message_bytes: int, metrics=None, max_channels: int = 16):
        self.site = site
        self.metrics = metrics
        # ModelInfer taking Framed requests (tensor bytes joined, not copied twice)
        self.channels = ChannelCache(channel_options(max_message_bytes), MODEL_INFER, serialize_request,
                                     pb.ModelInferResponse.FromString, cap=max_channels)
        self._announcing: set = set()  # cancel announcements under way (a dropped future would cancel its call)
        self.balancer = Balancer()

    def model_infer(self, address: str):
        return self.channels.call(address)

    def close(self) -> None:
        self.channels.close()

    def cancel(self, request_id: str, addresses: list[str], timeout_s: float = 5.0) -> None:
        """Tell the sites at `addresses` that the request was cancelled; does not wait for their answers."""
        req = pb.ModelInferRequest(model_name=DELIVER_MODEL, id=request_id)
        req.parameters["cancel"].bool_param = True
        req.parameters["from_site"].string_param = self.site
        for address in addresses:
            fut = self.model_infer(address).future(req, timeout=timeout_s)
            self._announcing.add(fut)
            fut.add_done_callback(self._announcing.discard)

    @staticmethod
    def request(request_id: str, entry: str, deadline_unix_ns: int, from_site: str,
                deliveries: list[Delivery], route: dict[str, str] | None = None) -> tuple[Framed, int, str]:
        req = pb.ModelInferRequest(model_name=DELIVER_MODEL, id=request_id)
        req.parameters["entry"].string_param = entry
        if route:
            req.parameters["route"].string_param = json.dumps(route, sort_keys=True)
        req.parameters["deadline_unix_ns"].int64_param = deadline_unix_ns
        req.parameters["from_site"].string_param = from_site
        nbytes = 0
        raws = []
        for d in deliveries:
            datatype, shape, raw = to_raw(d.value, d.flow.tensor.dtype, view=True)
            t = req.inputs.add(name=d.flow.dst.tensor, datatype=datatype, shape=shape)
            t.parameters["flow"].string_param = flow_id(d.flow)
            raws.append(raw)
            nbytes += raw.nbytes if isinstance(raw, memoryview) else len(raw)
        detail = ",".join(sorted({f"{d.flow.src.name}->{d.flow.dst.name}" for d in deliveries}))
        return Framed(req, raws), nbytes, detail

    def send(self, dst_site: str, address: str, req: Framed, nbytes: int, timeout_s: float,
             detail: str = "", cancel: Cancellation | None = None):
        """Start the call; returns a function that waits for it and gives the receiver's timings (or raises ForwardError).

        With `cancel`, the call is cancelled when that is set (the caller's own call was cancelled)."""
        t0 = time.perf_counter()
        if timeout_s <= 0:
            raise ForwardError(grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline passed before forwarding to site {dst_site}")
        fut = self.model_infer(address).future(req, timeout=timeout_s)
        if cancel is not None:
            cancel.add(fut.cancel)
        finished: list[float] = []
        fut.add_done_callback(lambda f: finished.append(time.perf_counter()))  # not when wait() is called

        def wait() -> list[Timing]:
            try:
                resp = fut.result()
            except grpc.FutureCancelledError:
                raise ForwardError(grpc.StatusCode.CANCELLED, f"forward to site {dst_site} cancelled") from None
            except grpc.RpcError as exc:
                code = exc.code()
                if self.metrics is not None:
                    self.metrics.hop_errors.labels(self.site, dst_site, code.name).inc()
                msg = exc.details() or ""
                if code == grpc.StatusCode.UNAVAILABLE and "site " not in msg:
                    self.balancer.failed(address)
                    msg = f"site {dst_site} ({address}) unavailable: {msg}"
                elif code == grpc.StatusCode.DEADLINE_EXCEEDED and "site " not in msg:
                    msg = f"deadline exceeded waiting for site {dst_site} ({address})"
                raise ForwardError(code, msg) from None
            rtt = ((finished[0] if finished else time.perf_counter()) - t0) * 1000
            handler = resp.parameters["handler_ms"].double_param if "handler_ms" in resp.parameters else 0.0
            hop_ms = max(0.0, rtt - handler)
            if self.metrics is not None:
                self.metrics.hop(dst_site, hop_ms, nbytes)
            timings = [Timing("hop", f"{self.site}->{dst_site}", self.site, hop_ms, nbytes, detail)]
            if "timings" in resp.parameters:
                timings.extend(Timing.from_list(t) for t in json.loads(resp.parameters["timings"].string_param))
            return timings

        return wait
