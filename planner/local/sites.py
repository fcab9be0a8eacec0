"""The site bundles of a solved plan (OUT/sites/<site>/) and where they serve on this machine:
the addresses `planner up` chose (OUT/logs/endpoints.json and services.json while it runs) or
bundle.yaml's."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from planner.errors import InputError, PlannerError
from planner_runtime.bundle_format import BUNDLE_FILE, Bundle, BundleError

ENDPOINTS = "endpoints.json"  # OUT/logs/endpoints.json: where `planner up` serves, while it runs
SERVICES = "services.json"  # OUT/logs/services.json: every replica's addresses, {site: {"grpc": [...], "metrics": [...]}}

SiteBundle = tuple[str, Path, Bundle]  # (site, its folder, its bundle.yaml)


def live_endpoints(out_dir: Path) -> dict[str, str]:
    """{site: address} of a running `planner up OUT`, or {} (then bundle.yaml's addresses hold)."""
    try:
        return json.loads((Path(out_dir) / "logs" / ENDPOINTS).read_text())
    except (OSError, ValueError):
        return {}


def live_services(out_dir: Path) -> dict[str, list[str]]:
    """{site: [gRPC address of each replica]} of a running `planner up OUT`, or {} without
    OUT/logs/services.json (then one address per site, live_endpoints' or bundle.yaml's)."""
    try:
        data = json.loads((Path(out_dir) / "logs" / SERVICES).read_text())
        return {site: [str(a) for a in s["grpc"]] for site, s in data.items() if s.get("grpc")}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def live_replicas(out_dir: Path, site: str) -> list[str]:
    """The gRPC addresses of `site`'s replicas in a running `planner up OUT`, or [] (see live_services)."""
    return live_services(out_dir).get(site, [])


def site_bundles(out_dir: Path) -> list[SiteBundle]:
    """Every site bundle of OUT, checked (Bundle.read), and all of them: a plan served without one
    of its sites would forward to an address nothing of this plan serves."""
    sites_dir = Path(out_dir) / "sites"
    files = sorted(sites_dir.glob(f"*/{BUNDLE_FILE}"))
    if not files:
        raise InputError(f"no site bundles under {sites_dir} (write them with `planner solve APP -o OUT`)")
    found = []
    for f in files:
        try:
            b = Bundle.read(f.parent)
        except BundleError as exc:
            raise InputError(str(exc)) from None  # it names the file
        found.append((b.site, f.parent, b))
    have = {site for site, _, _ in found}
    for _, directory, b in found:
        missing = sorted(set(b.sites) - have)
        if missing:
            raise InputError(f"{sites_dir / missing[0] / BUNDLE_FILE} is missing: {directory / BUNDLE_FILE} places "
                             f"models or requests on site(s) {', '.join(missing)}; copy OUT/sites whole or re-run "
                             "`planner solve APP -o OUT`")
    return found


def entry_bundle(bundles: list[SiteBundle]) -> tuple[str, Bundle]:
    """The site hosting a source: where the ensemble is served as one model."""
    for site, _, b in bundles:
        if any(s.site == site for s in b.sources.values()):
            return site, b
    raise InputError("no site bundle hosts a source: there is no entry to the ensemble")


def is_serving(address: str) -> bool:
    """The gRPC server at `address` answers its health check as SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as ch:
        try:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1).status
        except grpc.RpcError:
            return False
    return status == health_pb2.HealthCheckResponse.SERVING


def wait_for_sites(out_dir: Path, timeout_s: float, on_wait: Callable[[], None] = lambda: None) -> dict[str, str]:
    """Until every site answers its gRPC health check as SERVING (so `planner up OUT &` then
    `planner bench OUT` works); the addresses, from a running `planner up` or bundle.yaml."""
    bundles = site_bundles(out_dir)
    end = time.monotonic() + timeout_s
    told = False
    while True:
        addresses = {site: b.sites[site].address for site, _, b in bundles} | live_endpoints(out_dir)
        down = [f"{site} ({address})" for site, address in sorted(addresses.items()) if not is_serving(address)]
        if not down:
            return addresses
        if time.monotonic() > end:
            raise PlannerError(f"not serving after {timeout_s:g} s: {', '.join(down)}; start the sites with "
                               f"`planner up {out_dir}`")
        if not told:
            on_wait()
            told = True
        time.sleep(0.5)
