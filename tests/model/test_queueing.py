"""The queueing model (planner.model.queueing) against textbook values and against a discrete-event
simulation of the same queue (tests/model/queue_sim.py, which uses no queueing formula).

The simulation runs on fixed seeds, so every comparison is the same on every run and machine.
Each allows the error the module docstring states (measured in benchmarks/results/
queueing_accuracy.md on 10^6 requests per case) plus three standard errors of the simulated
number by batch means: the noise of the shorter runs here (~12 s of simulation in all).
"""

from __future__ import annotations

import math
import random
import statistics
from functools import partial

import pytest

from planner.model.queueing import Queue, erlang_b, least_servers, service_quantile_ms, wait_table_ms
from tests.model.queue_sim import quantile, simulate, standard_error, tandem


# -- textbook values ------------------------------------------------------------------------------
def test_mm1_mean_wait_is_rho_over_mu_minus_lambda():
    # lambda 50/s, S 10 ms (mu 100/s): rho / (mu - lambda) = 0.5 / 50 s = 10 ms
    q = Queue(50, 10, 1, service_cv2=1)
    assert q.utilization == pytest.approx(0.5)
    assert q.p_wait == pytest.approx(0.5)
    assert q.mean_wait_ms == pytest.approx(10.0)


def test_erlang_c_of_two_servers_at_one_erlang_is_a_third():
    q = Queue(100, 10, 2, service_cv2=1)  # a = 100/s * 10 ms = 1 erlang
    assert q.offered_load == pytest.approx(1.0)
    assert q.p_wait == pytest.approx(1 / 3)
    # M/M/2: Wq = C / (c mu - lambda) = (1/3) / (200 - 100)/s = 3.333 ms
    assert q.mean_wait_ms == pytest.approx(10 / 3)


def test_erlang_b_of_one_server_and_a_textbook_table_value():
    assert erlang_b(0.7, 1) == pytest.approx(0.7 / 1.7)
    # Erlang B table: 10 servers at 5 erlangs block 1.84 %
    assert erlang_b(5.0, 10) == pytest.approx(0.018385, abs=2e-6)


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99])
def test_md1_mean_wait_is_pollaczek_khinchine(rho):
    s = 20.0
    q = Queue(rho / s * 1000, s, 1)  # cv2 0: constant service
    assert q.mean_wait_ms == pytest.approx(rho * s / (2 * (1 - rho)))


@pytest.mark.parametrize("cv2", [0.25, 0.5, 2.0, 4.0])
def test_mg1_mean_wait_is_pollaczek_khinchine_for_any_service_variability(cv2):
    rho, s = 0.7, 8.0
    q = Queue(rho / s * 1000, s, 1, service_cv2=cv2)
    assert q.mean_wait_ms == pytest.approx(rho * s * (1 + cv2) / (2 * (1 - rho)))


@pytest.mark.parametrize("cv2", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("rho", [0.2, 0.6, 0.95])
def test_mg1_wait_has_takacs_second_moment(rho, cv2):
    """One server: the tail's shifted exponential (mean theta, cv s) gives E[W^2] =
    C theta^2 (1 + s^2); Takacs: E[W^2] = 2 Wq^2 + lambda E[S^3] / (3 (1 - rho)), with a gamma
    service's E[S^3] = S^3 (1 + cv2) (1 + 2 cv2)."""
    s = 12.0
    lam = rho / s  # per ms
    q = Queue(lam * 1000, s, 1, service_cv2=cv2)
    theta = q.mean_wait_ms / q.p_wait
    model = q.p_wait * theta**2 * (1 + q.conditional_wait_cv**2)
    takacs = 2 * q.mean_wait_ms**2 + lam * s**3 * (1 + cv2) * (1 + 2 * cv2) / (3 * (1 - rho))
    assert model == pytest.approx(takacs, rel=1e-12)


def test_constant_service_waits_spread_less_than_exponential_and_more_under_load():
    # a request that finds c busy servers waits for the first of c residuals: cv^2 c / (c + 2)
    assert Queue(1e-9, 10, 1).conditional_wait_cv ** 2 == pytest.approx(1 / 3)
    assert Queue(1e-9, 10, 4).conditional_wait_cv ** 2 == pytest.approx(4 / 6)
    spreads = [Queue(rho * 4 / 10 * 1000, 10, 4).conditional_wait_cv for rho in (0.1, 0.5, 0.9, 0.99)]
    assert spreads == sorted(spreads) and spreads[-1] < 1
    assert Queue(50, 10, 2, service_cv2=1).conditional_wait_cv == 1


@pytest.mark.parametrize("c,rho", [(1, 0.6), (3, 0.8), (16, 0.95)])
def test_mmc_wait_and_mm1_response_percentiles_are_exact(c, rho):
    s = 10.0
    lam = rho * c / s  # per ms
    q = Queue(lam * 1000, s, c, service_cv2=1)
    decay = c / s - lam  # M/M/c: P(W > t) = C exp(-(c mu - lambda) t)
    for p in (90, 99, 99.9):
        want = max(0.0, math.log(q.p_wait / (1 - p / 100)) / decay)
        assert q.wait_ms(p) == pytest.approx(want, rel=1e-12)
    if c == 1:  # M/M/1: the response is exponential of rate mu - lambda
        for p in (50, 95, 99):
            assert q.response_ms(p) == pytest.approx(-math.log(1 - p / 100) / decay, rel=2e-4)


def test_response_of_constant_service_is_service_plus_wait_percentile():
    q = Queue(80, 10, 1)
    assert q.response_ms(99) == 10 + q.wait_ms(99)
    assert q.wait_ms(50) > 0 and q.wait_ms(10) == 0.0  # C = 0.8: 20 % never wait


def test_service_percentiles_of_exponential_and_gamma():
    assert service_quantile_ms(10, 1, 99) == pytest.approx(10 * math.log(100), rel=2e-4)
    # gamma of shape 2 (cv2 0.5), mean 10: P(S <= t) = 1 - exp(-x) (1 + x), x = t / 5
    t = service_quantile_ms(10, 0.5, 95)
    assert 1 - math.exp(-t / 5) * (1 + t / 5) == pytest.approx(0.95, abs=1e-4)
    assert service_quantile_ms(10, 0, 99) == 10


def log_erlang_b(a: float, c: int) -> float:
    """Erlang B from its definition, (a^c / c!) / sum_k a^k / k!, in logs (an independent way)."""
    logs = [k * math.log(a) - math.lgamma(k + 1) for k in range(c + 1)]
    top = max(logs)
    return logs[-1] - (top + math.log(sum(math.exp(x - top) for x in logs)))


@pytest.mark.parametrize("c,a", [(50, 45.0), (1000, 980.0), (5000, 4950.0), (5000, 4000.0)])
def test_erlang_b_stays_exact_for_thousands_of_servers(c, a):
    b = erlang_b(a, c)
    assert 0 < b < 1
    assert math.log(b) == pytest.approx(log_erlang_b(a, c), rel=1e-9, abs=1e-9)
    q = Queue(a / 10 * 1000, 10, c)
    assert 0 < q.p_wait < 1 and math.isfinite(q.wait_ms(99)) and q.wait_ms(99) >= 0


def test_unstable_queue_waits_forever():
    q = Queue(100, 10, 1)  # exactly 1 erlang on one server
    assert not q.stable and q.p_wait == 1.0
    assert q.mean_wait_ms == math.inf and q.wait_ms(99) == math.inf and q.response_ms(50) == math.inf


def test_no_load_no_wait():
    q = Queue(0, 10, 1, service_cv2=1)
    assert q.p_wait == 0 and q.mean_wait_ms == 0 and q.wait_ms(99) == 0
    assert q.response_ms(50) == pytest.approx(10 * math.log(2), rel=2e-4)


@pytest.mark.parametrize("kwargs", [
    {"rate_rps": -1}, {"rate_rps": math.nan}, {"service_ms": 0}, {"service_ms": math.inf},
    {"servers": 0}, {"servers": 1.5}, {"servers": True}, {"service_cv2": -0.1}, {"arrival_cv2": math.nan},
])
def test_bad_arguments_are_refused(kwargs):
    args = {"rate_rps": 10, "service_ms": 10, "servers": 1, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Queue(**args)


@pytest.mark.parametrize("p", [0, 100, -1, 101, math.nan])
def test_percentile_must_be_strictly_between_0_and_100(p):
    with pytest.raises(ValueError, match="percentile"):
        Queue(10, 10, 1).wait_ms(p)
    with pytest.raises(ValueError, match="percentile"):
        wait_table_ms(10, 10, 1, 4, p)


# -- least_servers and wait_table_ms ------------------------------------------------------------
@pytest.mark.parametrize("rate,service,cap,want", [
    (0, 10, None, 1),  # nothing to serve: still one server
    (50, 10, None, 1),  # 0.5 erlang
    (100, 10, None, 2),  # exactly 1 erlang: one server would be 100 % busy
    (250, 10, None, 3),
    (200, 10, 0.5, 4),  # 2 erlangs at most 50 % busy: exactly 0.5 is allowed
    (201, 10, 0.5, 5),
    (70, 10, 0.7, 1),  # 0.7 on one server: at the cap
    (300, 10, 1.0, 4),  # a cap of 1 still needs utilization < 1
    (0.1, 100, 0.3, 1),
])
def test_least_servers(rate, service, cap, want):
    assert least_servers(rate, service, cap) == want


@pytest.mark.parametrize("cap", [0, -0.5, 1.01])
def test_max_utilization_out_of_range_is_refused(cap):
    with pytest.raises(ValueError, match="max_utilization"):
        least_servers(10, 10, cap)


@pytest.mark.parametrize("instances,cv2,cap", [(1, 0.0, None), (3, 0.0, None), (2, 1.0, 0.6), (1, 0.5, 0.9)])
def test_wait_table_matches_queue_per_replica_count(instances, cv2, cap):
    rate, service, p = 470.0, 20.0, 99  # 9.4 erlangs
    table = wait_table_ms(rate, service, instances, 40, p, service_cv2=cv2, max_utilization=cap)
    first = math.ceil(least_servers(rate, service, cap) / instances)
    assert min(table) == first
    assert list(table) == list(range(first, first + len(table)))  # consecutive
    for r, wait in table.items():
        assert wait == pytest.approx(Queue(rate, service, r * instances, service_cv2=cv2).wait_ms(p), rel=1e-12)
    values = list(table.values())
    assert values[-1] == 0 and all(v > 0 for v in values[:-1])  # stops at the first zero
    assert values == sorted(values, reverse=True)  # more replicas never wait longer
    last = max(table)
    assert Queue(rate, service, last * instances, service_cv2=cv2).wait_ms(p) == 0


def test_more_replicas_never_wait_longer_and_more_load_never_shorter():
    """What the solver may rely on, over 2,000 seeded draws of service time, load, instances,
    variability, percentile and cap."""
    rng = random.Random(2)
    for _ in range(2000):
        s, instances = 10 ** rng.uniform(-1, 3), rng.choice([1, 2, 3, 8])
        cv2, p = rng.choice([0.0, 0.3, 1.0, 2.0]), rng.choice([50, 95, 99, 99.9])
        rate = 10 ** rng.uniform(-2, 2.5) / s * 1000
        values = list(wait_table_ms(rate, s, instances, 300, p, service_cv2=cv2,
                                    max_utilization=rng.choice([None, 0.8])).values())
        assert values == sorted(values, reverse=True), (s, instances, cv2, p, rate)
        c = rng.choice([1, 2, 5, 20])
        low, high = sorted(rng.uniform(0.01, 0.99) for _ in range(2))
        assert Queue(low * c / s * 1000, s, c, cv2).wait_ms(p) <= Queue(high * c / s * 1000, s, c, cv2).wait_ms(p)


def test_wait_table_stops_at_max_replicas_and_is_empty_when_nothing_fits():
    # 9.4 erlangs, one instance per replica: at least 10 replicas
    assert list(wait_table_ms(470, 20, 1, 12, 99)) == [10, 11, 12]
    assert wait_table_ms(470, 20, 1, 12, 99)[12] > 0
    assert wait_table_ms(470, 20, 1, 9, 99) == {}
    assert wait_table_ms(470, 20, 1, 10, 99, max_utilization=0.9) == {}  # needs 11


def test_wait_table_over_thousands_of_servers_is_fast_and_finite():
    table = wait_table_ms(490_000, 10, 8, 700, 99)  # 4900 erlangs, 8 instances per replica
    assert min(table) == 613 and all(math.isfinite(v) for v in table.values())


# -- against the simulation ----------------------------------------------------------------------
SERVICE_MS = 10.0

# The module docstring's stated error per service variability: (low, high) bounds in % on
# (model - simulation) / simulation (benchmarks/results/queueing_accuracy.md: 1,000,000
# requests per cell). The mean wait is compared where the simulated one is >= 1 % of S.
STATED = {
    0.0: {"mean wait": (-2, 2), "p50": (-3.5, 1.5), "p95": (-5, 3), "p99": (-4, 4)},
    0.5: {"mean wait": (-2.5, 2.5), "p50": (-1, 1), "p95": (-0.5, 3), "p99": (-0.5, 6)},
    1.0: {"mean wait": (-2, 2), "p50": (-2, 2), "p95": (-2, 2), "p99": (-2, 2)},
}
# These tests simulate fewer requests than the benchmark (to stay fast), so each comparison
# allows three standard errors of the simulated number on top (batch means, queue_sim).
SIM_REQUESTS = {0.3: 60_000, 0.5: 60_000, 0.7: 80_000, 0.85: 150_000, 0.9: 200_000}
TANDEM_REQUESTS = 100_000

GRID = [(rho, c, cv2) for cv2 in (0.0, 0.5, 1.0) for c in (1, 2, 4, 8) for rho in (0.3, 0.5, 0.7, 0.85, 0.9)]


@pytest.mark.parametrize("rho,c,cv2", GRID, ids=[f"util{r}-c{c}-cv2_{v}" for r, c, v in GRID])
def test_model_agrees_with_simulation_within_stated_error(rho, c, cv2):
    rate = rho * c / SERVICE_MS * 1000
    q = Queue(rate, SERVICE_MS, c, service_cv2=cv2)
    run = simulate(rate, SERVICE_MS, c, cv2, n=SIM_REQUESTS[rho], seed=7 + c, warmup=2000)
    response = run.response
    checks = {f"p{p}": (q.response_ms(p), response, partial(quantile, p=p)) for p in (50, 95, 99)}
    if statistics.fmean(run.wait) >= 0.01 * SERVICE_MS:  # below, its relative error says little
        checks["mean wait"] = (q.mean_wait_ms, run.wait, statistics.fmean)
    for name, (model, values, stat) in checks.items():
        sim = stat(values)
        err = (model - sim) / sim * 100
        noise = 3 * standard_error(values, stat) / sim * 100
        lo, hi = STATED[cv2][name]
        assert lo - noise <= err <= hi + noise, (
            f"{name}: model {model:.3f} ms, simulation {sim:.3f} ms: {err:+.1f} % not in [{lo}, {hi}] "
            f"+- {noise:.1f} (3 standard errors)")


# -- a path of two queues ------------------------------------------------------------------------
TANDEMS = [  # (rate rps, [(service ms, servers, cv2) per stage])
    (70.0, [(10.0, 1, 0.0), (10.0, 1, 0.0)]),  # util 0.7 / 0.7
    (50.0, [(10.0, 1, 0.0), (17.0, 1, 0.0)]),  # 0.5 / 0.85
    (80.0, [(20.0, 2, 0.0), (40.0, 4, 0.0)]),  # 0.8 / 0.8
    (85.0, [(10.0, 1, 1.0), (14.1176, 2, 1.0)]),  # 0.85 / 0.6, exponential
    (30.0, [(66.6667, 4, 0.5), (10.0, 1, 0.5)]),  # 0.5 / 0.3, gamma
]


@pytest.mark.parametrize("rate,stages", TANDEMS)
def test_sum_of_stage_p99_bounds_the_end_to_end_p99(rate, stages):
    """The planner adds per-stage percentiles along a path: never below the simulated
    end-to-end percentile (a request is rarely slow at both stages at once)."""
    summed = sum(Queue(rate, s, c, service_cv2=cv2).response_ms(99) for s, c, cv2 in stages)
    e2e = quantile(tandem(rate, stages, n=TANDEM_REQUESTS, seed=11, warmup=2000), 99)
    assert summed >= e2e
    assert summed <= 1.8 * e2e  # conservative, not unbounded (the docstring's measured 9-75 %)


# -- the simulator itself, on cases worked by hand -----------------------------------------------
def test_simulator_queues_fifo_on_hand_worked_arrivals():
    from tests.model.queue_sim import serve

    # one server, 10 ms each, a request every 5 ms: each waits 5 ms more than the one before
    one = serve([0, 5, 10, 15], servers=1, service_ms=10, cv2=0, seed=0)
    assert one.wait == [0, 5, 10, 15] and one.departure == [10, 20, 30, 40]
    # two servers keep up exactly: nobody waits
    assert serve([0, 5, 10, 15], servers=2, service_ms=10, cv2=0, seed=0).wait == [0, 0, 0, 0]
    # a burst of three on two servers: the third starts when the first leaves
    burst = serve([0, 0, 0], servers=2, service_ms=10, cv2=0, seed=0)
    assert burst.wait == [0, 0, 10] and burst.response == [10, 10, 20]


def test_simulator_quantile_is_the_nearest_rank():
    values = list(range(1, 101))
    assert quantile(values, 50) == 50 and quantile(values, 99) == 99 and quantile(values, 99.5) == 100


def test_the_readme_worked_example():
    """README, What the numbers mean, Queueing: S = 440 ms at 2.2 requests/s."""
    one = Queue(2.2, 440, 1)
    assert one.utilization == pytest.approx(0.968) and one.p_wait == pytest.approx(0.968)
    assert one.mean_wait_ms == pytest.approx(6655) and one.wait_ms(99) == pytest.approx(31_174, abs=1)
    two = Queue(2.2, 440, 2)
    assert erlang_b(two.offered_load, 2) == pytest.approx(0.1923, abs=1e-4)
    assert two.p_wait == pytest.approx(0.3157, abs=1e-4)
    assert two.mean_wait_ms == pytest.approx(71.2, abs=0.05)
    assert two.conditional_wait_cv == pytest.approx(0.861, abs=5e-4)
    assert two.wait_ms(99) == pytest.approx(225.5 * (1 + 0.861 * (math.log(31.57) - 1)), rel=1e-3)
    assert two.wait_ms(99) == pytest.approx(702.0, abs=0.05) and two.response_ms(99) == pytest.approx(1142.0, abs=0.05)
    assert wait_table_ms(2.2, 440, 1, 4, 99)[2] == two.wait_ms(99)
