"""The site server: serves one site's bundle over gRPC (KServe v2 / Open Inference Protocol).

Models served by ModelInfer:
- every node placed on this site, by its name (runs that node alone);
- DELIVER_MODEL (internal): tensors forwarded by other sites for this site's nodes, or sink
  tensors coming back to the entry site of a request;
- at a site hosting a source: the whole ensemble, named after the app (inputs: the sources'
  tensors, outputs: the sinks' tensors).

A request entering the ensemble runs the nodes of the entry site that are ready, forwards
each tensor whose consumer lives elsewhere to that site (ModelInfer on DELIVER_MODEL, with the
remaining deadline as the call's timeout), and waits for the sink tensors, which every site
sends back to the entry. A forward returns when the receiving site has run what the tensor
made ready and finished its own forwards, so an error anywhere downstream travels back to the
entry as the status of its forward, and the entry answers with it. State held for a request
(the entry's, or a fan-in waiting for its other inputs) is dropped at the request's deadline.

Admission (runtime.admission): requests entering here run `max_inflight` at a time; up to
`max_queue` more wait in FIFO order until a slot frees, their deadline passes or they are
cancelled; beyond that they are refused at once (RESOURCE_EXHAUSTED). A request cancelled by
its client (or ended by its deadline) cancels its forwards, which cancels theirs, frees its
slot at once and tells the other sites to drop what they hold for it.

Each node runs `instances` requests at once (bundle.yaml); the others wait for an instance in
FIFO order, until their deadline or cancellation (runtime.executor).

A site may run as several replicas (processes, each with its own address: `--peer SITE=A,B`). The
entry replica a request enters picks one replica of every other site for it (runtime.balance)
and sends that route along with every forward, so all of the request's tensors for a site meet
in one replica; sink tensors come back to the entry replica itself.

Deliveries are accepted only for requests entering at a site of this ensemble: the `entry`
address a forward names, where the sink tensors go, and every address of its route must be a
replica of one of the bundle's sites (bundle.yaml's addresses or their `--peer`/`--advertise`
overrides), so a site cannot be used to make calls elsewhere.

Response parameters carry the timings: `timings` (JSON list of [kind, name, site, ms, bytes,
detail, cpu_ms, handover_ms], kind "model" for a node run, "queue" for the wait for one of its
instances, "hop" for a forward: round trip minus the receiver's handling; cpu_ms, of a node run,
the CPU time its process used meanwhile; handover_ms, of a queue wait, the part from the
instance's hand-on to the request until its thread ran) and `server_ms`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from planner_runtime.admission import Admission, Cancellation, Refused
from planner_runtime.balance import parse_route
from planner_runtime.bundle_format import DELIVER_MODEL, Bundle, Tensor
from planner_runtime.executor import Delivery, Executor, Graph, NodeError, RequestState, Timing, Wait
from planner_runtime.forward import ForwardError, Forwarder, channel_options
from planner_runtime.metrics import Metrics
from planner_runtime.nodes import close_runners, load_runners
from planner_runtime.proto import grpc_predict_v2_pb2 as pb
from planner_runtime.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from planner_runtime.tensors import (TensorError, array_dtype, bundle_dtype, check, from_raw, from_values, oip_datatype,
                                     to_raw)
from planner_runtime.wire import Framed, parse_request, serialize_response

log = logging.getLogger("planner_runtime")
SERVER_NAME = "planner-runtime"
VERSION = "1"
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name

_REFUSED = {"full": grpc.StatusCode.RESOURCE_EXHAUSTED, "deadline": grpc.StatusCode.DEADLINE_EXCEEDED,
            "cancelled": grpc.StatusCode.CANCELLED}
# a call cancelled this close to its deadline ended by it: the client's own deadline passes first
# and its cancel can arrive before this server's copy of the deadline does (this server took the
# deadline from the call's header, later); under load it arrived with ms to spare and was
# counted as cancelled (tests/runtime/test_hardening.py, 2 CI runs)
DEADLINE_SLACK_S = 0.1
MAX_REQUEST_ID = 128  # request ids of forwards (ours are 32 hex digits): longer ones are refused
MAX_MESSAGE = 2000  # characters of an error message sent back
MAX_CANCELLED = 4096  # cancelled request ids remembered (against late deliveries), oldest forgotten first
_CONTENTS_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                   "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                   "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
                   "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class EntryWait:
    """At the entry site: the sink tensors of one request, as they arrive."""

    expected: set[str]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    event: threading.Event = field(default_factory=threading.Event)


@dataclass
class SiteRequest:
    state: RequestState
    expires: float  # time.monotonic()
    entry: EntryWait | None = None  # set when this site is the request's entry
    route: dict[str, str] = field(default_factory=dict)  # site -> the replica this request's forwards go to


class SiteServer:
    """One site's runtime. `start()`, then `wait()` or `stop()`."""

    def __init__(self, bundle_dir: Path, port: int | None = None, host: str = "0.0.0.0",
                 host_targets: bool = False, metrics_port: int | None = None, workers: int = 32,
                 peers: dict[str, str | list[str]] | None = None, advertise: str | None = None,
                 max_inflight: int | None = None, max_queue: int | None = None):
        self.bundle_dir = Path(bundle_dir)
        self.bundle = Bundle.read(self.bundle_dir)
        self.site = self.bundle.site
        self.graph = Graph(self.bundle)
        self.host_targets = host_targets
        self.metrics = Metrics(self.site)
        self.metrics_port = metrics_port
        self.runners = load_runners(self.bundle, self.bundle_dir, host_targets)
        self.executor = Executor(self.graph, self.runners, site=self.site, on_model=self.metrics.model,
                                 on_queue=self.metrics.queue, on_instances=self.metrics.instances)
        # where each site's replicas are reached: bundle.yaml's address, unless overridden (--peer SITE=HOST:PORT,...)
        self.replicas = {name: [s.address] for name, s in self.bundle.sites.items()}
        self._advertise = advertise
        self._override(peers or {})
        own_port = self.replicas[self.site][0].rsplit(":", 1)[1]
        self.port = int(port if port is not None else own_port)
        self._route()
        self.host = host
        self.is_entry = any(s.site == self.site for s in self.bundle.sources.values())
        self.settings = self.bundle.runtime
        self.forwarder = Forwarder(self.site, self.settings.max_message_bytes, self.metrics,
                                   max_channels=max(16, 2 * sum(map(len, self.replicas.values()))))
        self._states: dict[str, SiteRequest] = {}
        self._cancelled: dict[str, float] = {}  # request id -> when to forget it (time.monotonic())
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: grpc.Server | None = None
        self._health = health.HealthServicer()
        self.admission = Admission(max_inflight or self.settings.max_inflight,
                                   self.settings.max_queue if max_queue is None else max_queue,
                                   on_change=self.metrics.admission)
        # A request entering here holds a handler thread while it runs and while it waits in the
        # queue, and its sinks come back as calls needing handler threads too: `workers` threads
        # beyond the admitted and queued ones stay free for deliveries and single-model calls
        # (otherwise a burst could starve its own answers).
        self._threads = self.admission.slots + self.admission.queue + max(1, workers)

    def set_peers(self, peers: dict[str, str | list[str]]) -> None:
        """Reach these sites at these addresses (one per replica) instead of bundle.yaml's: `--peer SITE=HOST:PORT`,
        or the peers file once every site started on port 0 has bound its port (before it serves)."""
        self._override(peers)
        self._route()

    def _override(self, peers: dict[str, str | list[str]]) -> None:
        for name, addresses in peers.items():
            if name not in self.replicas:
                raise ValueError(f"--peer {name}: no site {name!r} in the bundle (sites: {', '.join(self.replicas)})")
            addresses = [addresses] if isinstance(addresses, str) else list(addresses)
            if not addresses:
                raise ValueError(f"--peer {name}: no address")
            self.replicas[name] = addresses

    def _route(self) -> None:
        own_host = self.replicas[self.site][0].rsplit(":", 1)[0]
        # where other sites send the sink tensors of requests entering here
        self.address = self._advertise or f"{own_host}:{self.port}"
        # the only addresses a forward may name as its entry or in its route
        self.site_of_address = {a: name for name, addresses in self.replicas.items() for a in addresses}
        self.site_of_address[self.address] = self.site

    # -- lifecycle ----------------------------------------------------------------------------
    def bind(self) -> int:
        """Make the gRPC server and listen on the port (0: one the system picks); the port. `start()` binds if not yet."""
        if self._server is not None:
            return self.port
        opts = channel_options(self.settings.max_message_bytes)[:2] + [("grpc.so_reuseport", 0)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._threads,
                                                        thread_name_prefix=f"site-{self.site}"), options=opts)
        server.add_generic_rpc_handlers((_handlers(_Servicer(self)),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        try:
            bound = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise OSError(f"site {self.site}: cannot listen on {self.host}:{self.port} (in use?)")
        self._server = server
        if self.port == 0:
            self.port = bound
            self._route()
        return self.port

    def start(self, serving: bool = True) -> SiteServer:
        """Listen and serve; with serving=False the health check says NOT_SERVING until
        set_serving() (a site started on port 0 waits to learn where the others are)."""
        self.bind()
        self._server.start()
        if serving:
            self.set_serving()
        else:
            for name in ("", SERVICE):
                self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.metrics_port is not None:
            try:
                # on the gRPC port's interface: Prometheus scrapes a pod at its own address, not loopback
                self.metrics_port = self.metrics.serve(self.metrics_port, addr=self.host)
            except OSError as exc:  # metrics are not worth refusing to serve
                log.warning("site %s: no metrics: cannot listen on port %s: %s", self.site, self.metrics_port, exc)
                self.metrics_port = None
        threading.Thread(target=self._reap, name="reaper", daemon=True).start()
        return self

    def set_serving(self) -> None:
        for name in ("", SERVICE):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def wait(self) -> None:
        self._server.wait_for_termination()

    def stop(self, grace: float = 1.0) -> None:
        self._stopping.set()
        self._health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait()
        self.forwarder.close()
        close_runners(self.runners)

    def _reap(self) -> None:
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            with self._lock:
                for rid in [r for r, s in self._states.items() if s.entry is None and s.expires < now]:
                    del self._states[rid]
                    log.info("site %s: dropped request %s at its deadline", self.site, rid)
                for rid in [r for r, forget in self._cancelled.items() if forget < now]:
                    del self._cancelled[rid]
                self.metrics.pending.labels(self.site).set(len(self._states))

    def _cancel_here(self, rid: str) -> None:
        """The request was cancelled at its entry: drop what this site holds for it, refuse what still comes."""
        limit_ms = max(self.settings.default_deadline_ms, self.settings.forward_timeout_ms)
        with self._lock:
            req = self._states.get(rid)
            if req is not None and req.entry is None:
                del self._states[rid]
                self.metrics.pending.labels(self.site).set(len(self._states))
            self._cancelled[rid] = time.monotonic() + limit_ms / 1000  # no forward of it lives longer
            if len(self._cancelled) > MAX_CANCELLED:
                del self._cancelled[next(iter(self._cancelled))]

    def _remote_sites(self) -> list[str]:
        return sorted({spec.site for spec in self.bundle.nodes.values()} - {self.site})

    def _announce_cancel(self, rid: str, route: dict[str, str]) -> None:
        self.forwarder.cancel(rid, sorted({route[s] for s in self._remote_sites()}))

    def _pick_route(self) -> dict[str, str]:
        """The replica of every other site a request entering here goes to (and this replica for its own site)."""
        route = {s: self.forwarder.balancer.pick(s, self.replicas[s]) for s in self._remote_sites()}
        return {**route, self.site: self.address}

    def _check_route(self, text: str) -> dict[str, str]:
        """A forward's route, every address a replica of the site it names (else PERMISSION_DENIED)."""
        route = parse_route(text, self.site_of_address)
        if route is None:
            raise Abort(grpc.StatusCode.PERMISSION_DENIED,
                        f"site {self.site}: route {text[:200]!r} names an address that is not a replica of the site "
                        f"it is given for; deliveries go only to the sites of {self.bundle.app!r}")
        return route

    def _put_state(self, rid: str, req: SiteRequest) -> None:
        with self._lock:
            self._states[rid] = req
            self.metrics.pending.labels(self.site).set(len(self._states))

    def _drop_state(self, rid: str) -> None:
        with self._lock:
            self._states.pop(rid, None)
            self.metrics.pending.labels(self.site).set(len(self._states))

    def models(self) -> list[str]:
        return ([self.bundle.app] if self.is_entry else []) + self.bundle.local_nodes()

    # -- decoding -----------------------------------------------------------------------------
    @staticmethod
    def _wire_tensors(request: pb.ModelInferRequest) -> list[tuple[object, object]]:
        """Each input's message with its raw contents (None when it comes as typed `contents`)."""
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise TensorError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
        return [(t, raw[i] if raw else None) for i, t in enumerate(request.inputs)]

    @staticmethod
    def _checked_array(t, raw, want: Tensor) -> np.ndarray:
        """The tensor's array, once its datatype and shape match `want` (checked before any decoding)."""
        shape = list(t.shape)
        check(t.name, bundle_dtype(t.datatype), shape, want.dtype, want.shape)
        if raw is not None:
            return from_raw(t.name, t.datatype, shape, raw)
        fname = _CONTENTS_FIELD.get(t.datatype)
        if fname is None:
            raise TensorError(f"tensor {t.name!r}: datatype {t.datatype} needs raw_input_contents")
        return from_values(t.name, t.datatype, shape, getattr(t.contents, fname))

    def _validated(self, request, specs: list[tuple[str, Tensor]], what: str) -> dict[str, np.ndarray]:
        want = dict(specs)
        got = {}
        for t, raw in self._wire_tensors(request):
            name = t.name
            spec = want.get(name)
            if spec is None:
                raise TensorError(f"tensor {name!r} is not an input of {what} (inputs: {', '.join(want)})")
            if name in got:
                raise TensorError(f"tensor {name!r} given twice")
            got[name] = self._checked_array(t, raw, spec)
        missing = [n for n in want if n not in got]
        if missing:
            raise TensorError(f"input tensor(s) {', '.join(repr(m) for m in missing)} of {what} missing")
        return got

    # -- the dataflow ---------------------------------------------------------------------------
    def _deadline(self, context, default_ms: float) -> float:
        remaining = context.time_remaining()
        limit = default_ms / 1000
        if remaining is None or remaining > limit:
            remaining = limit
        return time.monotonic() + remaining

    def _process(self, rid: str, req: SiteRequest, deliveries: list[Delivery], timings: list[Timing],
                 deadline: float, entry_address: str, cancel: Cancellation) -> None:
        """Run what the deliveries make ready here; forward what leaves; wait for those forwards."""
        try:
            outgoing = self.executor.advance(req.state, deliveries, timings, Wait(deadline, cancel))
        except NodeError as exc:
            raise Abort(grpc.StatusCode.INTERNAL, f"site {self.site}: {exc}") from None
        except Refused as exc:
            raise Abort(_REFUSED[exc.reason], f"site {self.site}: {exc}") from None
        if cancel.is_set:  # a node ran while the call was cancelled: nothing more to send
            raise Abort(grpc.StatusCode.CANCELLED, f"site {self.site}: request {rid} cancelled")
        groups: dict[str, list[Delivery]] = defaultdict(list)
        for d in outgoing:
            if d.flow.dst.kind == "sink":
                if req.entry is not None:
                    self._sink_arrived(req.entry, d)
                else:
                    groups[entry_address].append(d)
            else:
                site = self.graph.nodes[d.flow.dst.name].site
                groups[req.route.get(site) or self.replicas[site][0]].append(d)
        if not groups:
            return
        deadline_unix_ns = time.time_ns() + int((deadline - time.monotonic()) * 1e9)
        waits = []
        for address, ds in groups.items():
            dst = self.site_of_address[address]
            msg, nbytes, detail = Forwarder.request(rid, entry_address, deadline_unix_ns, self.site, ds, req.route)
            try:
                waits.append(self.forwarder.send(dst, address, msg, nbytes, deadline - time.monotonic(), detail,
                                                 cancel))
            except ForwardError as exc:
                waits.append(exc)
        first: ForwardError | None = None
        for w in waits:
            try:
                if isinstance(w, ForwardError):
                    raise w
                timings.extend(w())
            except ForwardError as exc:
                first = first or exc
        if first is not None:
            raise Abort(first.code, str(first))

    def _sink_arrived(self, wait: EntryWait, d: Delivery) -> None:
        key = self.graph.sink_key(d.flow)
        wait.outputs[key] = d.value
        if wait.expected <= set(wait.outputs):
            wait.event.set()

    # -- ModelInfer variants --------------------------------------------------------------------
    def infer_ensemble(self, request: pb.ModelInferRequest, context, cancel: Cancellation) -> pb.ModelInferResponse:
        t0 = time.perf_counter()
        deadline = self._deadline(context, self.settings.default_deadline_ms)
        specs = [(t.key, t.tensor) for t in self.graph.inputs]
        inputs = self._validated(request, specs, f"model {self.bundle.app!r}")
        wanted = self._requested(request, [t.key for t in self.graph.outputs])
        try:
            self.admission.enter(deadline - time.monotonic(), cancel)
        except Refused as exc:
            raise Abort(_REFUSED[exc.reason], f"site {self.site}: {exc}") from None
        rid = uuid.uuid4().hex
        req = SiteRequest(RequestState(), deadline, EntryWait({t.key for t in self.graph.outputs}), self._pick_route())
        self._put_state(rid, req)
        cancel.add(req.entry.event.set)
        timings: list[Timing] = []
        try:
            self._process(rid, req, self.executor.source_deliveries(inputs), timings, deadline, self.address, cancel)
            finished = req.entry.event.wait(max(0.0, deadline - time.monotonic()))
            if cancel.is_set:
                raise Abort(grpc.StatusCode.CANCELLED, f"site {self.site}: request {rid} cancelled")
            if not finished:
                missing = sorted(req.entry.expected - set(req.entry.outputs))
                raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"deadline exceeded waiting for sink tensor(s) {', '.join(missing)}")
        except Abort:
            if cancel.is_set:  # the client went away (or its deadline passed): the other sites may drop it too
                self._announce_cancel(rid, req.route)
            raise
        finally:
            self._drop_state(rid)
            self.admission.leave()
            for site in self._remote_sites():
                self.forwarder.balancer.release(req.route[site])
        resp = pb.ModelInferResponse(model_name=self.bundle.app, model_version=VERSION, id=request.id)
        specs_out = {t.key: t.tensor for t in self.graph.outputs}
        framed = self._fill_outputs(resp, {k: req.entry.outputs[k] for k in wanted}, specs_out)
        resp.parameters["timings"].string_param = json.dumps([t.as_list() for t in timings])
        resp.parameters["server_ms"].double_param = (time.perf_counter() - t0) * 1000
        resp.parameters["request_id"].string_param = rid
        return framed

    def infer_node(self, name: str, request: pb.ModelInferRequest, context,
                   cancel: Cancellation) -> pb.ModelInferResponse:
        spec = self.graph.nodes[name]
        inputs = self._validated(request, [(t.name, t) for t in spec.inputs], f"model {name!r}")
        wanted = self._requested(request, [t.name for t in spec.outputs])
        timings: list[Timing] = []
        wait = Wait(self._deadline(context, self.settings.default_deadline_ms), cancel)
        try:
            results = self.executor._run_node(name, inputs, timings, wait)
        except NodeError as exc:
            raise Abort(grpc.StatusCode.INTERNAL, f"site {self.site}: {exc}") from None
        except Refused as exc:
            raise Abort(_REFUSED[exc.reason], f"site {self.site}: {exc}") from None
        resp = pb.ModelInferResponse(model_name=name, model_version=VERSION, id=request.id)
        framed = self._fill_outputs(resp, {k: results[k] for k in wanted}, {t.name: t for t in spec.outputs})
        resp.parameters["timings"].string_param = json.dumps([t.as_list() for t in timings])
        return framed

    def deliver(self, request: pb.ModelInferRequest, context, cancel: Cancellation) -> pb.ModelInferResponse:
        t0 = time.perf_counter()
        rid = request.id
        if not rid or len(rid) > MAX_REQUEST_ID:
            raise TensorError(f"a delivery needs a request id of 1 to {MAX_REQUEST_ID} characters")
        params = request.parameters
        if "cancel" in params:
            self._cancel_here(rid)
            return pb.ModelInferResponse(model_name=DELIVER_MODEL, id=rid)
        entry_address = params["entry"].string_param if "entry" in params else ""
        if entry_address not in self.site_of_address:
            raise Abort(grpc.StatusCode.PERMISSION_DENIED,
                        f"site {self.site}: entry {entry_address[:100]!r} is not the address of a site of "
                        f"{self.bundle.app!r}; deliveries go only to its own sites")
        route = self._check_route(params["route"].string_param if "route" in params else "")
        deadline = self._deadline(context, self.settings.forward_timeout_ms)
        if deadline <= time.monotonic():
            raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"site {self.site}: deadline passed on arrival")
        deliveries = []
        for t, raw in self._wire_tensors(request):
            fid = t.parameters["flow"].string_param if "flow" in t.parameters else ""
            flow = self.graph.flow_by_id.get(fid)
            if flow is None:
                raise TensorError(f"tensor {t.name!r}: unknown flow {fid[:200]!r} (bundles of different plans?)")
            if flow.dst.kind == "node" and self.graph.nodes[flow.dst.name].site != self.site:
                raise TensorError(f"tensor {t.name!r}: flow {fid} ends at site {self.graph.nodes[flow.dst.name].site}")
            deliveries.append(Delivery(flow, self._checked_array(t, raw, flow.tensor)))
        with self._lock:
            if rid in self._cancelled:
                raise Abort(grpc.StatusCode.CANCELLED, f"site {self.site}: request {rid} was cancelled")
            req = self._states.get(rid)
            # sink tensors only ever go to the request's own entry, which waits for them
            if any(d.flow.dst.kind == "sink" for d in deliveries) and (req is None or req.entry is None):
                raise Abort(grpc.StatusCode.NOT_FOUND, f"site {self.site}: request {rid} is not pending at "
                                                       f"this entry (its deadline passed, it failed, or it never entered here)")
            if req is None:
                req = self._states[rid] = SiteRequest(RequestState(), deadline, route=route)
                self.metrics.pending.labels(self.site).set(len(self._states))
        timings: list[Timing] = []
        try:
            self._process(rid, req, deliveries, timings, deadline, entry_address, cancel)
        except Abort:
            if req.entry is None:
                self._drop_state(rid)
            raise
        if req.entry is None and self.executor.done(req.state):
            self._drop_state(rid)
        resp = pb.ModelInferResponse(model_name=DELIVER_MODEL, id=rid)
        resp.parameters["timings"].string_param = json.dumps([t.as_list() for t in timings])
        resp.parameters["handler_ms"].double_param = (time.perf_counter() - t0) * 1000
        return resp

    @staticmethod
    def _requested(request, names: list[str]) -> list[str]:
        if not request.outputs:
            return names
        wanted = [o.name for o in request.outputs]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise TensorError(f"requested output(s) {', '.join(repr(u) for u in unknown)} unknown "
                              f"(outputs: {', '.join(names)})")
        return wanted

    @staticmethod
    def _fill_outputs(resp, values: dict[str, np.ndarray], specs: dict[str, Tensor]) -> Framed:
        raws = []
        for key, arr in values.items():
            datatype, shape, raw = to_raw(arr, specs[key].dtype if key in specs else array_dtype(arr), view=True)
            resp.outputs.add(name=key, datatype=datatype, shape=shape)
            raws.append(raw)
        return Framed(resp, raws)  # the tensors are joined into the answer once, by serialize_response

    def tensor_meta(self, t: Tensor, name: str | None = None):
        return pb.ModelMetadataResponse.TensorMetadata(name=name or t.name, datatype=oip_datatype(t.dtype),
                                                       shape=t.shape)


class _Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, site: SiteServer):
        self.s = site

    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=not self.s._stopping.is_set())

    def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=request.name in self.s.models() or request.name == DELIVER_MODEL)

    def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=VERSION, extensions=[f"site:{self.s.site}"])

    def ModelMetadata(self, request, context):
        s = self.s
        name = request.name
        if name == s.bundle.app and s.is_entry:
            return pb.ModelMetadataResponse(
                name=name, versions=[VERSION], platform="planner_ensemble",
                inputs=[s.tensor_meta(t.tensor, t.key) for t in s.graph.inputs],
                outputs=[s.tensor_meta(t.tensor, t.key) for t in s.graph.outputs])
        if name in s.bundle.local_nodes():
            spec = s.graph.nodes[name]
            return pb.ModelMetadataResponse(name=name, versions=[VERSION], platform=s.runners[name].platform,
                                            inputs=[s.tensor_meta(t) for t in spec.inputs],
                                            outputs=[s.tensor_meta(t) for t in spec.outputs])
        if name == DELIVER_MODEL:
            return pb.ModelMetadataResponse(name=name, versions=[VERSION], platform="planner_deliver")
        context.abort(grpc.StatusCode.NOT_FOUND, self._unknown(name))

    def _unknown(self, name: str) -> str:
        return f"unknown model {name[:100]!r} at site {self.s.site}; models here: {', '.join(self.s.models())}"

    def ModelInfer(self, request, context):
        s = self.s
        name = request.model_name
        t0 = time.perf_counter()
        code, message = grpc.StatusCode.OK, ""
        cancel = Cancellation()  # set when the call ends before its handler does: cancelled, or past its deadline
        if not context.add_callback(cancel.set):
            cancel.set()
        s.metrics.in_progress.labels(s.site).inc()
        try:
            if name == DELIVER_MODEL:
                return s.deliver(request, context, cancel)
            if name == s.bundle.app and s.is_entry:
                return s.infer_ensemble(request, context, cancel)
            if name in s.bundle.local_nodes():
                return s.infer_node(name, request, context, cancel)
            raise Abort(grpc.StatusCode.NOT_FOUND, self._unknown(name))
        except TensorError as exc:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, f"model {name[:100]!r}: {exc}"
        except Abort as exc:
            code, message = exc.code, str(exc)
            if cancel.is_set and code == grpc.StatusCode.CANCELLED and context.time_remaining() <= DEADLINE_SLACK_S:
                code = grpc.StatusCode.DEADLINE_EXCEEDED  # ended by the client's deadline, not by the client
        except Exception as exc:  # a bug: logged, answered as INTERNAL, the server keeps serving
            log.exception("site %s: %s failed", s.site, name)
            code, message = grpc.StatusCode.INTERNAL, f"site {s.site}: {type(exc).__name__}: {exc}"
        finally:
            s.metrics.in_progress.labels(s.site).dec()
            label = name if name in s.models() or name == DELIVER_MODEL else "<unknown>"
            s.metrics.requests.labels(s.site, label, code.name).inc()
            s.metrics.request_seconds.labels(s.site, label).observe(time.perf_counter() - t0)
        if len(message) > MAX_MESSAGE:  # names echoed from the request: keep the status within gRPC's header limits
            message = f"{message[:MAX_MESSAGE // 2]} ... {message[-MAX_MESSAGE // 2:]}"
        context.abort(code, message)


def _handlers(servicer: _Servicer) -> grpc.GenericRpcHandler:
    """The GRPCInferenceService methods; ModelInfer with the framed (copy-saving) codec of runtime.wire."""
    def h(method, req_cls, resp_cls):
        return grpc.unary_unary_rpc_method_handler(method, request_deserializer=req_cls.FromString,
                                                   response_serializer=resp_cls.SerializeToString)

    return grpc.method_handlers_generic_handler(SERVICE, {
        "ServerLive": h(servicer.ServerLive, pb.ServerLiveRequest, pb.ServerLiveResponse),
        "ServerReady": h(servicer.ServerReady, pb.ServerReadyRequest, pb.ServerReadyResponse),
        "ModelReady": h(servicer.ModelReady, pb.ModelReadyRequest, pb.ModelReadyResponse),
        "ServerMetadata": h(servicer.ServerMetadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
        "ModelMetadata": h(servicer.ModelMetadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
        "ModelInfer": grpc.unary_unary_rpc_method_handler(servicer.ModelInfer, request_deserializer=parse_request,
                                                          response_serializer=serialize_response),
    })
