"""The profiling stage for a whole app: every (node, candidate site) gets numbers with their
provenance. Given numbers (`profile:` in app.yaml) win; the rest are profiled."""

from __future__ import annotations

from planner.domains import candidate_sites
from planner.loader import LoadedApp
from planner.profiling.table import NodeProfile, ProfileTable
from planner.sites import ResolvedSite


def given_profiles(la: LoadedApp, sites: dict[str, ResolvedSite]) -> ProfileTable:
    table = ProfileTable()
    for name, node in la.app.models.items():
        for site, entry in node.profile.items():
            if site in candidate_sites(la.app, name):
                table.entries.append(NodeProfile(
                    node=name, site=site, target=sites[site].target_name, latency_ms=entry.latency_ms,
                    memory_mb=entry.memory_mb, provenance="given",
                ))
    return table


def profile_app(la: LoadedApp, sites: dict[str, ResolvedSite], **options) -> ProfileTable:
    table = given_profiles(la, sites)
    missing = [(m, s) for m in la.app.models for s in candidate_sites(la.app, m) if table.get(m, s) is None]
    if missing:
        m, s = missing[0]
        raise la.error(f"'{m}' has no profile for site {s}, and profiling ONNX models and python steps "
                       "is not available yet", ("models", m))
    return table
