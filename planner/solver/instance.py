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

    def model_copy(self, *, update=None, deep: bool = False):
        """A copy without the original's cached properties: they were computed from fields the
        update may change (a copy with other sites kept the old site index)."""
        copy = super().model_copy(update=update, deep=deep)
        for name, attribute in vars(type(self)).items():
            if isinstance(attribute, cached_property):
                copy.__dict__.pop(name, None)
        return copy


# A site's cores as one queue (planner.model.queueing's M/D/c, c = its replicas): its utilization
# rho (its models' core_load over its replicas' cores) rounded up to one of these levels, in
# 400ths (0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.10, 0.15, ... 0.90, 0.925, 0.95: fine where one
# server's p99 wait first appears, at 1 %; small integers keep the solver's sums small); above
# the last, the site is too busy (its wait grows without end).
SITE_LEVEL_UNIT = 400
SITE_LEVELS = (4, 8, 12, 16, 20, 30, 40, *range(60, 361, 20), 370, 380)
SITE_WAIT_SCALE = 1000  # a site's wait table: the wait per microsecond of core time, in thousandths


class SiteData(Frozen):
    name: str
    cost_uph: int = Field(ge=0, description="price of one replica, micro-$ per hour")
    memory_kb: int = Field(ge=0, description="memory of one replica")
    max_replicas: int = Field(ge=1)
    waits: tuple[tuple[int, ...], ...] = Field(
        default=(), description="with 1, 2, ... replicas (the last row: that many or more), at each of SITE_LEVELS: "
                                "the wait at the percentile of a request's core time on the site, per microsecond "
                                "of it, x SITE_WAIT_SCALE; () where the site's cores are unknown (no wait counted)")

    def level(self, core_load: int, replicas: int) -> int | None:
        """The index of the least SITE_LEVELS level its utilization is within, None above the last."""
        for j, level in enumerate(SITE_LEVELS):
            if core_load * SITE_LEVEL_UNIT <= level * REPLICA_CAPACITY * replicas:
                return j
        return None

    def wait_per_us(self, core_load: int, replicas: int) -> int:
        """The table's wait (x SITE_WAIT_SCALE) for this load on these replicas; 0 without a table or load."""
        if not self.waits or core_load == 0:
            return 0
        j = self.level(core_load, replicas)
        if j is None:
            raise ValueError(f"{self.name}: {replicas} replicas are fewer than its cores' load needs")
        return self.waits[min(replicas, len(self.waits)) - 1][j]

    def least_replicas_for_cores(self, core_load: int) -> int:
        """Fewest replicas whose cores stay within the last level."""
        if not self.waits or core_load == 0:
            return 1
        return max(1, -(-core_load * SITE_LEVEL_UNIT // (SITE_LEVELS[-1] * REPLICA_CAPACITY)))


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
    core_us: int = Field(default=0, ge=0, description="its site's core time per request: latency_us x threads / "
                                                      "the site's cores (0: the site's cores are unknown)")
    core_load: int = Field(default=0, ge=0, description="rate_mrps x core_us: its share of the site's cores")

    def site_wait_us(self, wait_per_us: int) -> int:
        """Its share of its site's wait: core_us x the site's wait per microsecond, rounded up."""
        return -(-self.core_us * wait_per_us // SITE_WAIT_SCALE)

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
        """Fewest replicas a site may run for this load and these options: its capacity, its cores'
        (within the last level of its wait table), and each queue's."""
        cores = self.site(site).least_replicas_for_cores(sum(o.core_load for o in options))
        return max(1, -(-load // self.replica_capacity), cores, *(o.min_replicas for o in options))
