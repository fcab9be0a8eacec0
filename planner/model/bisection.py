"""Where a monotone property turns: the margin a plan keeps, the toll a machine's crowding
charges, the slowdown a measured p50 implies all search one factor this way."""

from __future__ import annotations

from collections.abc import Callable


def turning_point(holds: Callable[[float], bool], lo: float, hi: float, within: float) -> tuple[float, float]:
    """[lo, hi] narrowed by halving to at most `within` wide around where `holds` turns false:
    `holds` must hold at lo and not at hi, and never hold again once it has stopped."""
    while hi - lo > within:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
    return lo, hi
