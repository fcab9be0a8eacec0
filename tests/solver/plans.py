"""Every plan of a small instance, for brute force: a placement, a build per model and replicas
per used site, each plan scored by the independent evaluator."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from planner.solver.evaluate import Evaluation, evaluate


def most_replicas(inst, site: str, unpinned: bool) -> int:
    """The most replicas a plan may give the site: max_replicas; when explaining (`unpinned`), as
    many as every model that may run there could need at once, as the explainer's model allows."""
    most = inst.site(site).max_replicas
    if not unpinned:
        return most
    options = [o for m in inst.models if site in inst.allowed(m, unpinned=True) for o in inst.builds(m, site)]
    return max(most, inst.least_replicas(site, sum(o.load for o in options), options))


def all_plans(inst, unpinned: bool = False) -> Iterator[Evaluation]:
    """Replicas run from the fewest the load allows up to the most allowed, or to where every
    queue on the site, and the site's cores (SiteData.waits), stop waiting less, whichever comes
    first (more can only cost more)."""
    models = inst.models
    for combo in itertools.product(*(inst.allowed(m, unpinned=unpinned) for m in models)):
        placement = dict(zip(models, combo))
        for chosen in itertools.product(*(inst.builds(m, placement[m]) for m in models)):
            builds = {m: o.build for m, o in zip(models, chosen)}
            least = evaluate(inst, placement, builds)
            sites = sorted(least.replicas)
            ranges = []
            for s in sites:
                here = [o for m, o in zip(models, chosen) if placement[m] == s]
                ends = max(o.min_replicas + len(o.waits_us) for o in here)
                if any(o.core_load for o in here):  # the site's own wait falls up to its table's last row
                    ends = max(ends, len(inst.site(s).waits))
                top = max(least.replicas[s], min(most_replicas(inst, s, unpinned), ends))
                ranges.append(range(least.replicas[s], top + 1))
            for counts in itertools.product(*ranges):
                yield evaluate(inst, placement, builds, dict(zip(sites, counts)))
