"""The dataflow executor: runs the nodes of an ensemble graph in dependency order.

gRPC-free on purpose: `planner run` uses it in one process, and each site's server uses the
same state machine for the part of the graph placed on its site.

    Executor(bundle_or_graph, runners).run({"x": array}) -> {"out": array, ...}

Execution is push-based. A tensor arrives on a flow (`Delivery`); when every input of a
node is present the node runs (once per request); each of its outputs is pushed along every
flow leaving it. Flows into nodes of another site and into sinks are handed back to the
caller as outgoing deliveries (the server forwards them); with `site=None` every node is local.

Runners are callables `runner(inputs: dict[str, ndarray]) -> dict[str, ndarray]`
(runtime.nodes builds them from a bundle's artifacts).

A node serves `instances` requests at once (its NodeSpec, default 1); a request finding them all
busy waits in FIFO order (runtime.admission's gate) until one frees, its deadline passes or it is
cancelled (`Wait`). The wait is a timing of its own ("queue", with the instance's handover in
it reported apart), apart from the run ("model").
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from planner_runtime.admission import Admission, Cancellation, Refused
from planner_runtime.bundle_format import Bundle, FlowEdge, Tensor
from planner_runtime.steps import StepFailed

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class GraphError(ValueError):
    """The graph is malformed (an input fed twice, a flow to an unknown node...)."""


class NodeError(RuntimeError):
    """A node raised while running, or returned outputs that do not fit its spec."""

    def __init__(self, node: str, message: str):
        super().__init__(f"node {node!r}: {message}")
        self.node = node


def flow_id(flow: FlowEdge) -> str:
    """A stable name of a flow, the same in every site's bundle."""
    s, d = flow.src, flow.dst
    return f"{s.kind}:{s.name}.{s.tensor}->{d.kind}:{d.name}.{d.tensor}"


@dataclass(frozen=True)
class IOTensor:
    """An input or output of the whole ensemble (a source's or a sink's tensor)."""

    key: str  # the name the ensemble model uses for it
    owner: str  # the source or sink
    tensor: Tensor


class Graph:
    """The ensemble graph of a bundle with the lookups execution needs."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.app = bundle.app
        self.nodes = bundle.nodes
        self.flows = list(bundle.flows)
        self.flow_by_id: dict[str, FlowEdge] = {}
        self.out_flows: dict[tuple[str, str], list[FlowEdge]] = defaultdict(list)  # (kind:name, tensor)
        fed: dict[tuple[str, str], str] = {}
        for f in self.flows:
            fid = flow_id(f)
            if fid in self.flow_by_id:
                raise GraphError(f"flow {fid} appears twice")
            self.flow_by_id[fid] = f
            self.out_flows[(f"{f.src.kind}:{f.src.name}", f.src.tensor)].append(f)
            if f.dst.kind == "node":
                spec = self.nodes.get(f.dst.name)
                if spec is None:
                    raise GraphError(f"flow {fid} goes to unknown node {f.dst.name!r}")
                if f.dst.tensor not in {t.name for t in spec.inputs}:
                    raise GraphError(f"flow {fid}: node {f.dst.name!r} has no input {f.dst.tensor!r}")
                key = (f.dst.name, f.dst.tensor)
                if key in fed:
                    raise GraphError(f"input {f.dst.tensor!r} of node {f.dst.name!r} is fed twice ({fed[key]}, {fid})")
                fed[key] = fid
            if f.src.kind == "node" and f.src.name not in self.nodes:
                raise GraphError(f"flow {fid} comes from unknown node {f.src.name!r}")
        for name, spec in self.nodes.items():
            for t in spec.inputs:
                if (name, t.name) not in fed:
                    raise GraphError(f"input {t.name!r} of node {name!r} is fed by no flow")
        self.inputs = _io_tensors({s: spec.tensors for s, spec in bundle.sources.items()})
        self.outputs = _io_tensors({s: spec.tensors for s, spec in bundle.sinks.items()})
        self.input_by_key = {t.key: t for t in self.inputs}
        self.output_key = {(t.owner, t.tensor.name): t.key for t in self.outputs}
        self.order = self._topological_order()

    def _topological_order(self) -> list[str]:
        deps = {n: set() for n in self.nodes}
        for f in self.flows:
            if f.dst.kind == "node" and f.src.kind == "node":
                deps[f.dst.name].add(f.src.name)
        order, ready = [], deque(sorted(n for n, d in deps.items() if not d))
        while ready:
            n = ready.popleft()
            order.append(n)
            for m, d in deps.items():
                if n in d:
                    d.discard(n)
                    if not d and m not in order and m not in ready:
                        ready.append(m)
        if len(order) != len(self.nodes):
            raise GraphError(f"the graph has a cycle through {sorted(set(self.nodes) - set(order))}")
        return order

    def sink_key(self, flow: FlowEdge) -> str:
        return self.output_key[(flow.dst.name, flow.dst.tensor)]

    def source_flows(self, key: str) -> list[FlowEdge]:
        t = self.input_by_key[key]
        return self.out_flows.get((f"source:{t.owner}", t.tensor.name), [])


def _io_tensors(owners: Mapping[str, list[Tensor]]) -> list[IOTensor]:
    count: dict[str, int] = defaultdict(int)
    for tensors in owners.values():
        for t in tensors:
            count[t.name] += 1
    return [IOTensor(t.name if count[t.name] == 1 else f"{owner}.{t.name}", owner, t)
            for owner, tensors in owners.items() for t in tensors]


@dataclass
class Delivery:
    flow: FlowEdge
    value: np.ndarray


@dataclass
class Timing:
    """What a request spent where: `kind` is "model" (a node run), "queue" (waiting for one of the node's
    instances) or "hop" (a forward)."""

    kind: str
    name: str
    site: str
    ms: float
    bytes: int = 0
    detail: str = ""  # hops: the flows carried, "producer->consumer" comma-separated
    # a node run: the CPU time its process used meanwhile, every thread's (a build's own pool
    # included); the node's own where nothing else ran in the process (one request at a time)
    cpu_ms: float | None = None
    # a queue wait: of it, the time from the instance's hand-on to this request until its thread ran
    handover_ms: float | None = None

    def as_list(self) -> list:
        return [self.kind, self.name, self.site, round(self.ms, 4), self.bytes, self.detail,
                _rounded(self.cpu_ms), _rounded(self.handover_ms)]

    @classmethod
    def from_list(cls, item: list) -> Timing:
        return cls(item[0], item[1], item[2], float(item[3]), int(item[4]), item[5] if len(item) > 5 else "",
                   _optional(item, 6), _optional(item, 7))


def _rounded(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _optional(item: list, i: int) -> float | None:
    return float(item[i]) if len(item) > i and item[i] is not None else None


@dataclass(frozen=True)
class Wait:
    """How long a request may wait for a node's instance: until `deadline` (time.monotonic(); None: no
    limit) or until `cancel` is set."""

    deadline: float | None = None
    cancel: Cancellation | None = None

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


@dataclass
class RequestState:
    """One request's tensors at one site: inputs that arrived, nodes that ran."""

    values: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (node, input) -> array
    started: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Executor:
    """Runs the nodes of `site` (every node when site is None) for requests of one graph."""

    def __init__(self, graph: Bundle | Graph, runners: Mapping[str, Runner], site: str | None = None,
                 on_model: Callable[[str, float], None] | None = None,
                 on_queue: Callable[[str, float], None] | None = None,
                 on_instances: Callable[[str, int, int], None] = lambda node, busy, queued: None):
        self.graph = graph if isinstance(graph, Graph) else Graph(graph)
        self.site = site
        self.runners = dict(runners)
        self.on_model = on_model
        self.on_queue = on_queue
        self.local = [n for n in self.graph.order if site is None or self.graph.nodes[n].site == site]
        missing = [n for n in self.local if n not in self.runners]
        if missing:
            raise GraphError(f"no runner for node(s) {', '.join(missing)}")
        self.gates = {n: Admission(self.graph.nodes[n].instances, None, what=f"instances of node {n!r}",
                                   on_change=lambda busy, queued, n=n: on_instances(n, busy, queued))
                      for n in self.local}

    # -- the whole graph in one process ------------------------------------------------------
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run every node (all must be local) and return the sink tensors by ensemble output name."""
        state = RequestState()
        outputs: dict[str, np.ndarray] = {}
        for d in self.advance(state, self.source_deliveries(inputs)):
            if d.flow.dst.kind != "sink":
                raise GraphError(f"node {d.flow.dst.name!r} is not on site {self.site!r}")
            outputs[self.graph.sink_key(d.flow)] = d.value
        missing = [t.key for t in self.graph.outputs if t.key not in outputs]
        if missing:
            raise GraphError(f"sink tensor(s) {', '.join(missing)} were never produced")
        return outputs

    # -- the pieces the server uses -----------------------------------------------------------
    def source_deliveries(self, inputs: Mapping[str, np.ndarray]) -> list[Delivery]:
        unknown = set(inputs) - set(self.graph.input_by_key)
        if unknown:
            raise GraphError(f"unknown ensemble input(s) {', '.join(sorted(unknown))}; "
                             f"inputs are {', '.join(self.graph.input_by_key)}")
        out = []
        for key in self.graph.input_by_key:
            if key not in inputs:
                raise GraphError(f"ensemble input {key!r} missing")
            out.extend(Delivery(f, inputs[key]) for f in self.graph.source_flows(key))
        return out

    def is_local(self, flow: FlowEdge) -> bool:
        return flow.dst.kind == "node" and (self.site is None or self.graph.nodes[flow.dst.name].site == self.site)

    def advance(self, state: RequestState, deliveries: Iterable[Delivery],
                timings: list[Timing] | None = None, wait: Wait = Wait()) -> list[Delivery]:
        """Take in deliveries, run every local node that becomes ready, return what leaves this site.
        Raises Refused when the request's `wait` ends while it waits for a node's instance."""
        queue = deque(deliveries)
        outgoing: list[Delivery] = []
        while queue:
            d = queue.popleft()
            if not self.is_local(d.flow):
                outgoing.append(d)
                continue
            node = d.flow.dst.name
            spec = self.graph.nodes[node]
            with state.lock:
                state.values[(node, d.flow.dst.tensor)] = d.value
                if node in state.started or any((node, t.name) not in state.values for t in spec.inputs):
                    continue
                state.started.add(node)
                feeds = {t.name: state.values.pop((node, t.name)) for t in spec.inputs}
            results = self._run_node(node, feeds, timings, wait)
            for t in spec.outputs:
                for f in self.graph.out_flows.get((f"node:{node}", t.name), []):
                    queue.append(Delivery(f, results[t.name]))
        return outgoing

    def done(self, state: RequestState) -> bool:
        """Whether every local node ran for this request."""
        return len(state.started) == len(self.local)

    def _run_node(self, node: str, feeds: dict[str, np.ndarray], timings: list[Timing] | None,
                  wait: Wait = Wait()) -> dict:
        spec = self.graph.nodes[node]
        gate = self.gates[node]
        try:
            admitted = gate.enter(wait.remaining_s(), wait.cancel)
        except Refused as exc:
            raise Refused(exc.reason, f"node {node!r}: {exc}") from None
        t0, cpu0 = time.perf_counter(), time.process_time()
        try:
            results = self.runners[node](feeds)
        except StepFailed as exc:  # in a worker process: already described, as below
            raise NodeError(node, str(exc)) from exc
        except Exception as exc:  # a node's own failure, named
            raise NodeError(node, f"{type(exc).__name__}: {exc}") from exc
        finally:
            gate.leave()
        ms = (time.perf_counter() - t0) * 1000
        cpu_ms = (time.process_time() - cpu0) * 1000
        queued_ms = admitted.waited_s * 1000
        if not isinstance(results, Mapping):
            raise NodeError(node, f"returned {type(results).__name__}, expected a dict of output name -> array")
        missing = [t.name for t in spec.outputs if t.name not in results]
        if missing:
            raise NodeError(node, f"did not return output(s) {', '.join(missing)} (returned {', '.join(results)})")
        out = {}
        for t in spec.outputs:
            v = results[t.name]
            out[t.name] = np.asarray(v, dtype=object) if t.dtype == "bytes" else np.asarray(v)
        if timings is not None:
            timings.append(Timing("queue", node, spec.site, queued_ms, handover_ms=admitted.handover_s * 1000))
            timings.append(Timing("model", node, spec.site, ms, cpu_ms=cpu_ms))
        if self.on_queue is not None:
            self.on_queue(node, queued_ms)
        if self.on_model is not None:
            self.on_model(node, ms)
        return out
