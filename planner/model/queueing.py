"""How long a request waits in one model's FIFO queue on a site: an M/G/c queue.

A model m on a site with r replicas, each running `instances` i of it, is c = r * i servers
fed by one FIFO queue; requests arrive as a Poisson stream at lambda = rate_rps(m) and each
takes S ms (the profile's latency) with squared coefficient of variation cv2 (0: a fixed-shape
model takes nearly constant time, the planner's default). With the offered load
a = lambda * S / 1000 erlangs and the utilization rho = a / c (stable when rho < 1):

- Erlang B by the recurrence B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)): no factorials, and
  every step stays in [0, 1], so it is exact to rounding for thousands of servers;
- Erlang C, the probability that a request waits: C = B(c) / (1 - rho (1 - B(c)));
- the mean wait: M/M/c's exact C S / (c (1 - rho)) times a factor for how variable the
  service is: Allen-Cunneen's (1 + cv2) / 2, except that for constant service (M/D/c)
  Cosmetatos's correction replaces the 1/2,
      f_D = (1 + (1 - rho) (c - 1) (sqrt(4 + 5c) - 2) / (16 rho c)) / 2,
  and 0 < cv2 < 1 interpolates linearly: f = cv2 + (1 - cv2) f_D. Exact for M/M/c (cv2 = 1)
  and for M/G/1 (f_D = 1/2 at c = 1, C = rho: Pollaczek-Khinchine). Plain Allen-Cunneen
  under-states M/D/c's mean wait by up to 23 % on 2-8 servers at rho <= 0.5 (where the wait
  is short); with the correction it is within 2 % (below). Arrivals that are not Poisson
  scale it by (ca2 + cv2) / (1 + cv2) (Allen-Cunneen's share; not checked by the simulation);
- the wait's tail: a request waits with probability C, and then on average theta = Wq / C,
  with a coefficient of variation
      s = sqrt(1 - (1 - rho) (2 / (c + 2)) (1 - cv2) / (1 + cv2))   (s = 1 for cv2 >= 1),
  as a shifted exponential of that mean and spread: (1 - s) theta plus an exponential of mean
  s theta. So P(W > t) = C exp(-(t - (1 - s) theta) / (s theta)) beyond the shift, and the
  p-th percentile, closed form:
      W_p = 0 when C <= 1 - p/100, else theta (1 + s (ln(C / (1 - p/100)) - 1)).
  Why this s: for one server it makes the wait's first two moments exact (Takacs's second
  moment of the M/G/1 wait with gamma service: the waits of those who wait have squared cv
  1 - (1 - rho) (2/3) (1 - cv2) / (1 + cv2)); for c servers it runs from the light-traffic limit of constant service (a
  request that finds all c busy waits for the first of c uniform residual services:
  squared cv c / (c + 2)) at rho = 0 to 1 in heavy traffic, linearly in rho. With s = 1 it
  is the plain exponential tail C exp(-t / theta): exact for M/M/c and the heavy-traffic
  limit of every M/G/c. For constant service the plain exponential over-states the p99
  response by up to 18 % at low utilization (one server, rho = 0.3), because fixed-length
  waits are less spread; with s it is within 4 % (errors below). For cv2 > 1 the
  true tail is heavier than exponential and this under-states it (not in the grid below);
- the response (arrival to answer), `response_ms`: S + W_p for constant service. That is
  exact given W_p, not an approximation: S is a constant, so the p-th percentile of S + W is
  S + the p-th percentile of W; it is the number the planner adds per stage. For variable
  service (cv2 > 0) S + W_p would be wrong both ways (the median of a skewed service is
  below its mean; its p99 far above), so the p-th percentile of the sum is computed from its
  distribution: a gamma service (shape 1 / cv2) independent of the wait above (a request's
  own service time does not change how long it waited), by bisection on
  P(S + W <= t) = (1 - C) G(t) + C (G(t - d) - E[exp(-(t - d - S) / (s theta)); S <= t - d]),
  d = (1 - s) theta, G the gamma CDF (no closed form needed for the planner: its service
  times are fixed).

Measured against a discrete-event simulation (tests/model/queue_sim.py; Poisson arrivals,
utilization 0.3, 0.5, 0.7, 0.85, 0.9 x 1, 2, 4, 8 servers, 10^6 requests per case; every cell
in benchmarks/results/queueing_accuracy.md), as (model - simulation) / simulation:
- constant service (cv2 = 0, the planner's case): mean wait within 2 % (where it is at least
  1 % of S); p99 response -3.5 .. +3.8 %, p95 -4.9 .. +2.4 %, p50 -3 .. +1 %. (With s = 1,
  the plain exponential tail, the p99 was -2 .. +18 %: +18 % at c = 1, rho = 0.3.)
- cv2 = 0.5 (gamma): mean wait within 2.5 %, p50 within 1 %, p95 -0.5 .. +3 %, p99 0 .. +6 %;
- cv2 = 1 (M/M/c, where every formula above is exact): within 2 %, the simulation's noise.
The simulation's own standard error (batch means) of the p99 is under 1 % at rho <= 0.7 and
1-3 % at 0.85-0.9, so part of each range above is the simulation's noise; tests/model/test_queueing.py checks every cell against these bounds
plus three standard errors of its shorter runs.

Along a path the planner adds the per-model percentiles. That is conservative: a request
is rarely slow at every stage at once. In five simulated two-stage tandems the sum of the stage p99s
was 9-75 % above the simulated end-to-end p99 (75 % for two equally busy constant-service
stages: the first spaces its departures at least S apart, so the second hardly queues).

Pure math (no planner imports, no numpy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

# A wait this unlikely moves no percentile of the response below 99.9999999 (it changes the
# distribution by at most this much), so the response is the service's alone; this also
# spares the series of _gamma_exp_tail, which grows with t / theta, on many servers.
_NEGLIGIBLE_WAIT = 1e-12


@dataclass(frozen=True)
class Queue:
    rate_rps: float  # lambda, requests per second into the queue
    service_ms: float  # S, the mean service time of one request
    servers: int  # c = replicas * instances
    service_cv2: float = 0.0  # squared coefficient of variation of the service time
    arrival_cv2: float = 1.0  # of the gaps between arrivals (1: Poisson)

    def __post_init__(self):
        if not (self.rate_rps >= 0 and math.isfinite(self.rate_rps)):
            raise ValueError(f"rate_rps must be finite and >= 0, got {self.rate_rps!r}")
        if not (self.service_ms > 0 and math.isfinite(self.service_ms)):
            raise ValueError(f"service_ms must be finite and > 0, got {self.service_ms!r}")
        if isinstance(self.servers, bool) or not isinstance(self.servers, int) or self.servers < 1:
            raise ValueError(f"servers must be an integer >= 1, got {self.servers!r}")
        for name in ("service_cv2", "arrival_cv2"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")

    @property
    def offered_load(self) -> float:
        """a = lambda * S in erlangs: how many servers the load keeps busy on average."""
        return self.rate_rps * self.service_ms / 1000

    @property
    def utilization(self) -> float:
        return self.offered_load / self.servers

    @property
    def stable(self) -> bool:
        return self.utilization < 1

    @cached_property
    def p_wait(self) -> float:
        """Erlang C: the probability that a request finds every server busy (1 when unstable)."""
        if not self.stable:
            return 1.0
        return erlang_c(self.offered_load, self.servers, erlang_b(self.offered_load, self.servers))

    @cached_property
    def mean_wait_ms(self) -> float:
        if not self.stable:
            return math.inf
        return _mean_wait(self.p_wait, self.service_ms, self.servers, self.utilization,
                          self.service_cv2, self.arrival_cv2)

    def wait_ms(self, percentile: float) -> float:
        """The `percentile`-th percentile of the time in the queue (0 < percentile < 100)."""
        _check_percentile(percentile)
        if not self.stable:
            return math.inf
        return _wait_quantile(self.p_wait, self.mean_wait_ms, self.conditional_wait_cv, percentile)

    @property
    def conditional_wait_cv(self) -> float:
        """s, the coefficient of variation of the wait of a request that waits (module docstring)."""
        return _conditional_wait_cv(self.servers, self.utilization, self.service_cv2)

    def response_ms(self, percentile: float) -> float:
        """The `percentile`-th percentile of the time from arrival to answer (module docstring):
        S + the wait's percentile for a fixed service time (cv2 = 0), else the percentile of
        the sum of a gamma service and the wait, computed from its distribution."""
        wait = self.wait_ms(percentile)
        if self.service_cv2 == 0 or math.isinf(wait):
            return self.service_ms + wait
        if self.p_wait < _NEGLIGIBLE_WAIT or self.mean_wait_ms == 0:
            return service_quantile_ms(self.service_ms, self.service_cv2, percentile)
        theta = self.mean_wait_ms / self.p_wait
        response = _response_cdf(self.service_ms, self.service_cv2, self.p_wait, theta, self.conditional_wait_cv)
        return _invert(response, percentile / 100, self.service_ms + self.mean_wait_ms)


def erlang_b(load: float, servers: int, known: tuple[int, float] = (0, 1.0)) -> float:
    """The Erlang B blocking probability of `servers` servers at `load` erlangs, by the
    recurrence, continued from a `known` (servers, B) of the same load (B(0) = 1)."""
    done, b = known
    for k in range(done + 1, servers + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(load: float, servers: int, b: float) -> float:
    """Erlang C from Erlang B of the same servers and load (load < servers)."""
    rho = load / servers
    return b / (1 - rho * (1 - b))


def _mean_wait(c_prob: float, service_ms: float, servers: int, rho: float, service_cv2: float,
               arrival_cv2: float) -> float:
    """The mean wait of the module docstring: M/M/c's times the service variability factor."""
    mmc = c_prob * service_ms / (servers * (1 - rho))
    if service_cv2 >= 1:
        factor = (1 + service_cv2) / 2
    else:
        deterministic = 0.5
        if rho > 0:
            deterministic *= 1 + (1 - rho) * (servers - 1) * (math.sqrt(4 + 5 * servers) - 2) / (16 * rho * servers)
        factor = service_cv2 + (1 - service_cv2) * deterministic
    return mmc * factor * (arrival_cv2 + service_cv2) / (1 + service_cv2)


def _conditional_wait_cv(servers: int, rho: float, service_cv2: float) -> float:
    """s = sqrt(1 - (1 - rho) 2 / (c + 2) (1 - cv2) / (1 + cv2)), 1 from cv2 = 1 on."""
    if service_cv2 >= 1:
        return 1.0
    return math.sqrt(1 - (1 - rho) * 2 / (servers + 2) * (1 - service_cv2) / (1 + service_cv2))


def _wait_quantile(c_prob: float, mean_wait: float, spread: float, percentile: float) -> float:
    tail = 1 - percentile / 100
    if c_prob <= tail or mean_wait == 0:
        return 0.0
    return mean_wait / c_prob * (1 + spread * (math.log(c_prob / tail) - 1))


def _check_percentile(percentile: float) -> None:
    if not (0 < percentile < 100):
        raise ValueError(f"percentile must be in (0, 100), got {percentile!r}")


def service_quantile_ms(service_ms: float, cv2: float, percentile: float) -> float:
    """The `percentile`-th percentile of a service time of mean `service_ms` and squared
    coefficient of variation cv2: the mean itself when cv2 = 0, else a gamma distribution's."""
    _check_percentile(percentile)
    if cv2 == 0:
        return service_ms
    service = _gamma_cdf(service_ms, cv2)
    return _invert(service, percentile / 100, service_ms)


def _gamma_cdf(mean: float, cv2: float):
    """The CDF of a gamma distribution of that mean and cv2 (shape 1 / cv2)."""
    shape, scale = 1 / cv2, mean * cv2
    return lambda t: math.exp(_log_lower_gamma(shape, t / scale))


def _response_cdf(service_ms: float, cv2: float, p_wait: float, theta: float, spread: float):
    """P(S + W <= t) = (1 - C) G(t) + C (G(t - d) - J(t - d)), d = (1 - s) theta, J's
    exponential of mean s theta (module docstring)."""
    service = _gamma_cdf(service_ms, cv2)
    shape, scale = 1 / cv2, service_ms * cv2
    shift, tail_mean = (1 - spread) * theta, spread * theta

    def cdf(t: float) -> float:
        if t <= 0:
            return 0.0
        after = t - shift  # what is left for S + the exponential part of the wait
        waited = service(after) - _gamma_exp_tail(shape, scale, tail_mean, after) if after > 0 else 0.0
        return max(0.0, (1 - p_wait) * service(t) + p_wait * waited)

    return cdf


def _gamma_exp_tail(k: float, beta: float, theta: float, t: float) -> float:
    """J(t) = E[exp(-(t - S) / theta); S <= t] for S ~ gamma(shape k, scale beta), t > 0: the
    integral of s^(k-1) exp(s / theta - s / beta) over [0, t], in closed form through P(k, x)
    when beta < theta, else by the series of exp(s (1 / theta - 1 / beta)), which makes
    exp(-t / beta) (t / beta)^k / Gamma(k) E[1 / (k + N)], N Poisson of mean
    (1 / theta - 1 / beta) t. In logs throughout: nothing overflows."""
    u = 1 / beta - 1 / theta
    if u > 0:
        return math.exp(-t / theta - k * math.log(beta * u) + _log_lower_gamma(k, u * t))
    log_front = -t / beta + k * math.log(t / beta) - math.lgamma(k)
    x = -u * t
    if x == 0:
        return math.exp(log_front) / k
    log_x = math.log(x)
    total, n, log_p = 0.0, 0, -x
    while True:
        total += math.exp(log_p) / (k + n)
        n += 1
        log_p += log_x - math.log(n)
        if n > x and math.exp(log_p) < 1e-17 * total:
            return math.exp(log_front) * total


def _invert(cdf, q: float, start: float) -> float:
    """The least t with cdf(t) >= q (cdf increasing), to 1e-4 relative, by doubling from
    `start` and bisection."""
    lo, hi = 0.0, start
    for _ in range(200):
        if cdf(hi) >= q:
            break
        lo, hi = hi, hi * 2
    while hi - lo > 1e-4 * hi:
        mid = (lo + hi) / 2
        if cdf(mid) < q:
            lo = mid
        else:
            hi = mid
    return hi


def _log_lower_gamma(a: float, x: float) -> float:
    """ln P(a, x), P the regularized lower incomplete gamma function (-inf for x <= 0): its
    power series below x = a + 1, one minus the continued fraction of Q(a, x) above, the two
    regions where each converges fast (Numerical Recipes' gammp)."""
    if x <= 0:
        return -math.inf
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1 / a
        n = a
        while term > total * 1e-16:
            n += 1
            term *= x / n
            total += term
        return min(0.0, log_prefix + math.log(total))
    tiny = 1e-300  # Lentz's method
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    q = math.exp(log_prefix) * h
    return math.log1p(-q) if q < 1 else -math.inf


def least_servers(rate_rps: float, service_ms: float, max_utilization: float | None = None) -> int:
    """The fewest servers (at least 1) whose utilization is < 1, and <= max_utilization when
    given (0 < max_utilization <= 1)."""
    if max_utilization is not None and not (0 < max_utilization <= 1):
        raise ValueError(f"max_utilization must be in (0, 1], got {max_utilization!r}")
    load = Queue(rate_rps, service_ms, 1).offered_load
    c = max(1, math.floor(load) + 1)  # the fewest with load / c < 1
    if max_utilization is not None:
        c = max(c, math.ceil(load / max_utilization))
        while load / c > max_utilization:  # the ceiling of a rounded quotient can be one short
            c += 1
    return c


def wait_table_ms(rate_rps: float, service_ms: float, instances: int, max_replicas: int, percentile: float,
                  service_cv2: float = 0.0, max_utilization: float | None = None) -> dict[int, float]:
    """replicas r -> the `percentile`-th percentile of the wait (ms) with r * instances servers,
    from the fewest admissible replicas up to the first r whose wait is 0 (included; more
    replicas only wait 0 too) or max_replicas, whichever comes first. Empty when even
    max_replicas is not admissible. One Erlang B recurrence over the servers: O(r * instances)."""
    _check_percentile(percentile)
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise ValueError(f"instances must be an integer >= 1, got {instances!r}")
    first = -(-least_servers(rate_rps, service_ms, max_utilization) // instances)
    probe = Queue(rate_rps, service_ms, 1, service_cv2)  # checks the arguments once
    load = probe.offered_load
    table: dict[int, float] = {}
    known = (0, 1.0)
    for r in range(first, max_replicas + 1):
        servers = r * instances
        b = erlang_b(load, servers, known)
        known = (servers, b)
        c_prob = erlang_c(load, servers, b)
        rho = load / servers
        mean = _mean_wait(c_prob, service_ms, servers, rho, service_cv2, probe.arrival_cv2)
        table[r] = _wait_quantile(c_prob, mean, _conditional_wait_cv(servers, rho, service_cv2), percentile)
        if table[r] == 0:
            break
    return table
