"""The plan's prediction for its own placement on this machine: what `planner bench` compares with.

`planner up --host-targets` runs every site on this machine over loopback, so the latency the
plan predicts for the sites' hardware and links is not what a bench can measure. This module
re-evaluates the same placement with the same latency model (planner.evaluate) after two
substitutions: every model's profile is this host's (measured here, as `planner run` compiles
them), and every pair of sites is joined by a loopback link whose figures come from the
measured runtime hop (benchmarks/results/runtime_overhead.md: about 1 ms per hop plus
bytes / 1.7 GB/s for 10 KB .. 8 MB tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import combinations

from planner.spec import App, Link

# A runtime hop on loopback, as measured end to end (serialize, send, deserialize, forward):
# rtt/2 = 1.0 ms, 8 MB in 5.7 ms -> ~1.7 GB/s.
LOOPBACK_RTT_MS = 2.0
LOOPBACK_BANDWIDTH_MBPS = 13_600.0


@dataclass
class HostPrediction:
    latency_ms: float
    models: dict[str, dict] = field(default_factory=dict)  # name -> {site, ms, provenance}
    transfers: dict[str, dict] = field(default_factory=dict)  # "a->b" -> {ms, bytes, sites}
    client_ms: float = 0.0  # the bench client's own hop to the entry and back
    assumptions: list[str] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        return self.latency_ms + self.client_ms

    def as_dict(self) -> dict:
        return {"latency_ms": round(self.total_ms, 3), "ensemble_ms": round(self.latency_ms, 3),
                "client_hop_ms": round(self.client_ms, 3), "models": self.models, "transfers": self.transfers,
                "assumptions": self.assumptions}


def loopback_app(app: App) -> App:
    """The app with its links replaced by a loopback link between every pair of sites (the
    runtime forwards a tensor straight to the site that consumes it)."""
    links = [Link(between=(a, b), bandwidth_mbps=LOOPBACK_BANDWIDTH_MBPS, rtt_ms=LOOPBACK_RTT_MS)
             for a, b in combinations(app.sites, 2)]
    return app.model_copy(update={"links": links})


def loopback_ms(nbytes: int) -> float:
    from planner.network import link_transfer_ms

    return link_transfer_ms(nbytes, LOOPBACK_BANDWIDTH_MBPS, LOOPBACK_RTT_MS)


def predict_on_host(la, placement: dict[str, str], profiles=None) -> HostPrediction:
    """Latency of `placement` with host profiles and loopback links, by planner.evaluate.

    `profiles` defaults to the host profiles `planner run` uses (cached after the first run)."""
    from planner.checks import check_app
    from planner.ensemble_run import host_profiles
    from planner.errors import InputError
    from planner.evaluate import evaluate
    from planner.network import Network
    from planner.problem import build_instance
    from planner.sites import resolve_sites

    graph = check_app(la)
    unknown = sorted(set(placement) ^ set(la.app.models))
    if unknown:
        raise InputError(f"the plan's placement does not match {la.path}: models {', '.join(unknown)} "
                         "are in one and not the other (re-run `planner solve`)")
    profiles = profiles if profiles is not None else host_profiles(la)
    loop = replace(la, app=loopback_app(la.app))
    sites = resolve_sites(la)
    inst = build_instance(loop, sites, graph, Network(loop.app), profiles)
    missing = [f"{m} on {s}" for m, s in placement.items() if s not in inst.options.get(m, {})]
    if missing:
        raise InputError(f"no host profile for {', '.join(missing)} (the profiler excluded it on this machine)")
    ev = evaluate(inst, placement)
    provenance = {(e.node, e.site): e.provenance for e in profiles.entries}
    pred = HostPrediction(latency_ms=ev.latency_us / 1000)
    for m, s in placement.items():
        pred.models[m] = {"site": s, "ms": inst.option(m, s).latency_us / 1000, "provenance": provenance.get((m, s))}
    for term in ev.flows:
        flow = la.app.flows[term.index]
        nbytes = inst.flows[term.index].nbytes
        pred.transfers[f"{flow.from_}->{flow.to}"] = {"ms": term.latency_us / 1000, "bytes": nbytes,
                                                     "sites": [term.src_site, term.dst_site]}
    # the bench's client sends the sources' tensors to the entry and gets the sinks' back
    sent = {(f.from_, f.output): inst.flows[i].nbytes for i, f in enumerate(la.app.flows)
            if f.from_ in la.app.sources}  # one tensor per source output, however many read it
    returned = sum(inst.flows[i].nbytes for i, f in enumerate(la.app.flows) if f.to in la.app.sinks)
    pred.client_ms = loopback_ms(sum(sent.values()) + returned)
    pred.assumptions = [
        "models: this machine's profiles (compiled for the host, as `planner up --host-targets` runs them)",
        f"transfers: loopback, {LOOPBACK_RTT_MS / 2:g} ms + bytes / {LOOPBACK_BANDWIDTH_MBPS / 8000:g} GB/s per hop "
        "(the runtime's measured hop, benchmarks/results/runtime_overhead.md)",
        "plus the client's hop to the entry site and back",
    ]
    return pred
