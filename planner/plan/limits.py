"""The sums the solver forms, checked against what its integers hold (planner.solver.instance).

Each number in app.yaml has a range (planner.app.spec); an app can still add up past the
solver's integers with many of them at once, or with a huge flow on a slow link. That is an
input error naming the largest part, not an overflow inside CP-SAT."""

from __future__ import annotations

from collections.abc import Callable

from planner.errors import KeyPath
from planner.model.checked_app import CheckedApp
from planner.solver.instance import MAX_AMOUNT, MAX_TIME_US, REPLICA_CAPACITY, Instance, Option

Part = tuple[int, str, KeyPath]  # (amount, what it is, the key to change)


def _duration(us: float) -> str:
    s = us / 1e6
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600)):
        if s >= 2 * size:
            return f"{s / size:,.3g} {unit}"
    return f"{s:,.3g} s"


def _dollars(uph: float) -> str:
    return f"${uph / 1e6:,.3g}/h"


def _megabytes(kb: float) -> str:
    return f"{kb / 1000:,.3g} MB"


def _replicas(load: float) -> str:
    return f"{load / REPLICA_CAPACITY:,.3g} replicas"


def _within(checked: CheckedApp, parts: list[Part], limit: int, total_is: str, fmt: Callable[[float], str]) -> None:
    total = sum(amount for amount, _, _ in parts)
    if total <= limit:
        return
    amount, what, key = max(parts, key=lambda part: part[0])
    raise checked.error(f"{total_is} {fmt(total)}, more than the {fmt(limit)} the solver's integers hold; "
                        f"the largest part: {what} ({fmt(amount)}); check the numbers' units", key)


def check_solver_limits(checked: CheckedApp, inst: Instance) -> None:
    """Every time, load, memory and cost sum the CP-SAT model forms fits its integers."""
    hosted: dict[str, list[tuple[str, Option]]] = {}
    slowest: list[Part] = []
    for m in inst.models:
        options = {**inst.options[m], **inst.unpinned.get(m, {})}
        # its latency and its longest share of its site's wait (whose product with the site's
        # table the solver forms: bounded with it)
        slow = {s: o.latency_us + (o.site_wait_us(inst.site(s).waits[0][-1]) if inst.site(s).waits else 0)
                for s, o in options.items()}
        site = max(slow, key=slow.get)
        slowest.append((slow[site], f"'{m}' on {site}", ("models", m)))
        for s, o in options.items():
            hosted.setdefault(s, []).append((m, o))
    for f in inst.flows:
        if f.transfers:
            tr = max(f.transfers, key=lambda t: t.latency_us)
            slowest.append((tr.latency_us, f"flow {f.src} -> {f.dst} from {tr.src_site} to {tr.dst_site}",
                            ("flows", f.index)))
    _within(checked, slowest, MAX_TIME_US, "a plan could take", _duration)

    costs: list[Part] = []
    for site in inst.sites:
        models = hosted.get(site.name, [])
        loads = [(o.load, f"'{m}' at its request rate", ("models", m)) for m, o in models]
        _within(checked, loads, MAX_AMOUNT, f"the models that may run on {site.name} could need", _replicas)
        memory = [(o.memory_kb, f"'{m}'", ("models", m)) for m, o in models]
        _within(checked, memory, MAX_AMOUNT, f"the models that may run on {site.name} could take", _megabytes)
        # the most replicas the model allows the site (when explaining infeasibility: its whole load)
        most = max(site.max_replicas, -(-sum(load for load, _, _ in loads) // REPLICA_CAPACITY))
        costs.append((site.cost_uph * most, f"{most:,} replicas on {site.name}", ("sites", site.name, "cost_per_hour")))
    for f in inst.flows:
        if f.transfers:
            tr = max(f.transfers, key=lambda t: t.egress_uph)
            costs.append((tr.egress_uph, f"egress of flow {f.src} -> {f.dst}", ("flows", f.index)))
    _within(checked, costs, MAX_AMOUNT, "a plan could cost", _dollars)
