"""Prometheus metrics of one site server: per model and per hop (prometheus_client).

Each server owns a registry (several servers may live in one process in tests);
`serve(port)` exposes it over HTTP at /metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, site: str):
        self.site = site
        self.registry = r = CollectorRegistry()
        self.requests = Counter("oip_requests", "ModelInfer calls by model and status code",
                                ["site", "model", "code"], registry=r)
        self.in_progress = Gauge("oip_requests_in_progress", "ModelInfer calls being handled (running or waiting)",
                                 ["site"], registry=r)
        self.in_progress.labels(site).set(0)
        self.request_seconds = Histogram("oip_request_duration_seconds", "ModelInfer handling time by model",
                                         ["site", "model"], buckets=_BUCKETS, registry=r)
        self.model_seconds = Histogram("runtime_model_duration_seconds", "time a node (model or step) ran",
                                       ["site", "model"], buckets=_BUCKETS, registry=r)
        self.queue_seconds = Histogram("runtime_queue_wait_seconds", "time a request waited for one of a node's "
                                       "instances before it ran", ["site", "model"], buckets=_BUCKETS, registry=r)
        self.instances_busy = Gauge("runtime_instances_busy", "a node's instances running a request",
                                    ["site", "model"], registry=r)
        self.instances_queued = Gauge("runtime_instances_queued", "requests waiting for one of a node's instances",
                                      ["site", "model"], registry=r)
        self.hop_seconds = Histogram("runtime_hop_duration_seconds",
                                     "forward overhead (round trip minus the receiver's handling) by destination site",
                                     ["src_site", "dst_site"], buckets=_BUCKETS, registry=r)
        self.hop_bytes = Counter("runtime_hop_bytes", "tensor bytes forwarded", ["src_site", "dst_site"], registry=r)
        self.hop_errors = Counter("runtime_hop_errors", "failed forwards by destination and status code",
                                  ["src_site", "dst_site", "code"], registry=r)
        self.pending = Gauge("runtime_pending_requests", "requests with state held at this site "
                             "(waiting for sinks, or for more inputs of a fan-in)", ["site"], registry=r)
        self.pending.labels(site).set(0)
        self.inflight = Gauge("runtime_inflight_requests", "requests entering the ensemble here that hold a slot",
                              ["site"], registry=r)
        self.queued = Gauge("runtime_queued_requests", "requests entering the ensemble here waiting for a slot",
                            ["site"], registry=r)
        self.admission(0, 0)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on `port` of interface `addr` (port 0: one the system picks); the port it serves on."""
        httpd, _ = start_http_server(port, addr=addr, registry=self.registry)
        return httpd.server_port

    def admission(self, running: int, queued: int) -> None:
        self.inflight.labels(self.site).set(running)
        self.queued.labels(self.site).set(queued)

    def model(self, name: str, ms: float) -> None:
        self.model_seconds.labels(self.site, name).observe(ms / 1000)

    def queue(self, name: str, ms: float) -> None:
        self.queue_seconds.labels(self.site, name).observe(ms / 1000)

    def instances(self, name: str, busy: int, queued: int) -> None:
        self.instances_busy.labels(self.site, name).set(busy)
        self.instances_queued.labels(self.site, name).set(queued)

    def hop(self, dst: str, ms: float, nbytes: int) -> None:
        self.hop_seconds.labels(self.site, dst).observe(ms / 1000)
        self.hop_bytes.labels(self.site, dst).inc(nbytes)
