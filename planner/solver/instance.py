"""The placement problem as the solver sees it: integers only, names only, no app.yaml.

Units are chosen so that both the CP-SAT model and the evaluator work on the very same
integers, so rounding can never make them disagree:
  time in microseconds, memory in kilobytes (1/1000 MB), money in micro-dollars per hour,
  load in milli-requests-per-second x microseconds (one replica serves REPLICA_CAPACITY).
"""

from __future__ import annotations

from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field

REPLICA_CAPACITY = 10**9  # 1 request/s x 1 s of work = 1000 mrps x 1e6 us

# What the integer model may hold (checked where it is made, planner.plan.limits). CP-SAT
# reports objective values as doubles, exact up to 2**53, rejects a model whose linear sums
# may pass 2**62, and the solver takes 2**50 us for "never" (no route on).
MAX_TIME_US = 2**48  # ~8.9 years: the longest plan, every model and flow at its slowest
MAX_AMOUNT = 2**52  # the most cost (micro-$/h) of a plan, or memory (kB) or load of one site


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteData(Frozen):
    name: str
    cost_uph: int = Field(ge=0, description="price of one replica, micro-$ per hour")
    memory_kb: int = Field(ge=0, description="memory of one replica")
    max_replicas: int = Field(ge=1)


class Option(Frozen):
    """A node on a site it may use."""

    latency_us: int = Field(ge=0)
    memory_kb: int = Field(ge=0)
    load: int = Field(ge=0, description="rate_mrps x latency_us: the replica capacity it takes")


class Transfer(Frozen):
    """A flow whose producer is on `src_site` and consumer on `dst_site` (different sites)."""

    src_site: str
    dst_site: str
    latency_us: int = Field(ge=0)
    egress_uph: int = Field(ge=0)


class FlowData(Frozen):
    index: int
    src: str
    dst: str
    nbytes: int
    transfers: list[Transfer] = Field(description="every routable pair of distinct sites")

    @cached_property
    def pair_index(self) -> dict[tuple[str, str], Transfer]:
        out: dict[tuple[str, str], Transfer] = {}
        for tr in self.transfers:
            out.setdefault((tr.src_site, tr.dst_site), tr)  # the first, as a scan would find
        return out

    def transfer(self, s: str, t: str) -> Transfer | None:
        return self.pair_index.get((s, t))


class Instance(Frozen):
    sites: list[SiteData]
    models: list[str] = Field(description="in topological order")
    options: dict[str, dict[str, Option]] = Field(description="model -> allowed site -> numbers")
    unpinned: dict[str, dict[str, Option]] = Field(
        default_factory=dict,
        description="model -> site its `sites:` excludes but that has numbers: what relaxing the pin would allow",
    )
    fixed: dict[str, str] = Field(description="source or sink -> its site")
    sources: list[str]
    sinks: list[str]
    flows: list[FlowData]
    slo_us: int | None = None
    cost_cap_uph: int | None = None

    @cached_property
    def site_index(self) -> dict[str, SiteData]:
        return {s.name: s for s in reversed(self.sites)}  # the first of a name wins, as a scan

    def site(self, name: str) -> SiteData:
        try:
            return self.site_index[name]
        except KeyError:
            raise KeyError(name) from None

    def allowed(self, node: str, unpinned: bool = False) -> list[str]:
        """Sites a node may use (with `unpinned`, also those only its pin excludes);
        sources and sinks have exactly one."""
        if node in self.fixed:
            return [self.fixed[node]]
        return list(self.options[node]) + (list(self.unpinned.get(node, {})) if unpinned else [])

    def option(self, node: str, site: str) -> Option:
        return self.options[node].get(site) or self.unpinned[node][site]
