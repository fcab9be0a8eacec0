"""The placement problem as the solver sees it: integers only, names only, no app.yaml.

Units are chosen so that both the CP-SAT model and the evaluator work on the very same
integers, so rounding can never make them disagree:
  time in microseconds, memory in kilobytes (1/1000 MB), money in micro-dollars per hour,
  load in milli-requests-per-second x microseconds (one replica serves REPLICA_CAPACITY).

A node may have several builds on a site (engines, precisions: planner.profiling.table); each
is an Option. Queueing enters as a table per option: the waiting time at the planned
percentile for each replica count of its site (planner.model.queueing), computed once here so
that the solver and the evaluator read the very same integers.
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
    """A node on a site it may use, in one build."""

    latency_us: int = Field(ge=0)
    memory_kb: int = Field(ge=0)
    load: int = Field(ge=0, description="the replica capacity it takes: rate_mrps x latency_us x the larger of "
                                           "1 / instances and threads / the site's cores")
    build: str = "given/fp32"
    min_replicas: int = Field(default=1, ge=1, description="fewest replicas of the site its queue keeps up with")
    waits_us: tuple[int, ...] = Field(
        default=(), description="waiting time at the percentile with min_replicas, min_replicas + 1, ... replicas; "
                                "0 beyond the last")

    def wait_us(self, replicas: int) -> int:
        """The percentile wait with `replicas` replicas of its site (at least min_replicas)."""
        k = replicas - self.min_replicas
        if k < 0:
            raise ValueError(f"{replicas} replicas are fewer than the {self.min_replicas} its queue needs")
        return self.waits_us[k] if k < len(self.waits_us) else 0

    def least_us(self, max_replicas: int) -> int:
        """Its shortest possible time on a path: latency plus the wait with the most replicas allowed."""
        return self.latency_us + self.wait_us(max(max_replicas, self.min_replicas))


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
    options: dict[str, dict[str, Option]] = Field(description="model -> allowed site -> its default (fastest) build")
    more_builds: dict[str, dict[str, list[Option]]] = Field(
        default_factory=dict, description="model -> site -> its other builds that no build beats in both latency "
                                          "and memory")
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
    percentile: float = Field(default=99, description="the SLO bounds this percentile of every path")
    replica_capacity: int = Field(default=REPLICA_CAPACITY, ge=1,
                                  description="load one replica may carry: REPLICA_CAPACITY x max_utilization")

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

    def option(self, node: str, site: str, build: str | None = None) -> Option:
        """The node's option on a site: the named build, else the default one."""
        if build is not None:
            for o in self.builds(node, site):
                if o.build == build:
                    return o
            raise ValueError(f"{node} has no build {build} on {site}")
        return self.options[node].get(site) or self.unpinned[node][site]

    def builds(self, node: str, site: str) -> list[Option]:
        """Every build of a node on a site it may use (the default first)."""
        return [self.option(node, site), *self.more_builds.get(node, {}).get(site, [])]

    def least_replicas(self, site: str, load: int, options: list[Option]) -> int:
        """Fewest replicas a site may run for this load and these options: its capacity, and each queue's."""
        return max(1, -(-load // self.replica_capacity), *(o.min_replicas for o in options))
