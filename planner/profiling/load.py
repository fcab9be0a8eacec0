"""What else ran while a measurement ran: the host's load, recorded with every host measurement,
and the retry when the machine was busy.

Recorded per measurement: the 1-minute load average per core when it started (`load_per_core`),
and from /proc/stat deltas over the measurement the CPU steal (`steal_pct`, where the kernel
reports it) and the share of the machine's CPU time used by other processes (`others_pct`:
all busy time minus this process's own CPU time, so the measured build's threads do not count).

Busy: other processes used more than BUSY_OTHERS_PCT % of the machine during the measurement, or
the load average, less the one core the profiler itself keeps busy, exceeds BUSY_LOAD_PER_CORE
per core, or steal exceeded BUSY_STEAL_PCT %, or (given a planner.profiling.speed reference) the
probe after it ran over speed.SLOW_FACTOR times slower than the machine's fastest
(`slow_factor`: a shared host's slow spell, which none of the others shows). A busy measurement
is warned about (naming the model), then the profiler waits up to `PLANNER_LOAD_WAIT_S` seconds
(default LOAD_WAIT_S) for the machine to quiet, measures again and keeps the quieter result (not
busy first, then fewer others' CPU, then the faster probe)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from planner.profiling.speed import SLOW_FACTOR, SpeedReference, probe_ms

BUSY_OTHERS_PCT = 25.0
BUSY_LOAD_PER_CORE = 0.5
BUSY_STEAL_PCT = 10.0
LOAD_WAIT_S = 30.0
_POLL_S = 1.0

T = TypeVar("T")


@dataclass
class Load:
    load_per_core: float | None
    steal_pct: float | None = None
    others_pct: float | None = None
    slow_factor: float | None = None  # the probe after it / the machine's fastest (planner.profiling.speed)

    def busy_reason(self, cores: int) -> str | None:
        """Why this measurement counts as taken on a busy machine (every reason), or None."""
        reasons = []
        if self.others_pct is not None and self.others_pct > BUSY_OTHERS_PCT:
            reasons.append(f"other processes used {self.others_pct:.0f} % of the CPUs while it was measured")
        if self.load_per_core is not None and (self.load_per_core * cores - 1) / cores > BUSY_LOAD_PER_CORE:
            reasons.append(f"load average {self.load_per_core:.2f} per core when it was measured")
        if self.steal_pct is not None and self.steal_pct > BUSY_STEAL_PCT:
            reasons.append(f"CPU steal {self.steal_pct:.0f} % while it was measured")
        if self.slow:
            reasons.append(f"the machine ran {self.slow_factor:.1f}x slower than its fastest right after it (a fixed "
                           "compute probe: a shared host's slow spell shows only there)")
        return "; ".join(reasons) or None

    @property
    def slow(self) -> bool:
        """The speed probe after it ran over SLOW_FACTOR times slower than the machine's fastest."""
        return self.slow_factor is not None and self.slow_factor > SLOW_FACTOR

    def noise(self, cores: int) -> tuple:
        """Sorts the quieter of two measurements first."""
        return self.busy_reason(cores) is not None, self.others_pct or 0.0, self.slow_factor or 1.0


def machine_cpu_times() -> tuple[float, float, float | None] | None:
    """(busy, total, steal) jiffies of the whole machine from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    values = [float(v) for v in fields[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is inside user
    total = sum(values[:8])
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    steal = values[7] if len(values) > 7 else None
    return total - idle - (steal or 0.0), total, steal


def _running_now() -> int | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _load_per_core(cores: int) -> float | None:
    try:
        return os.getloadavg()[0] / cores
    except OSError:
        return None


def measure_with_load(fn: Callable[[], T], cores: int, speed: SpeedReference | None = None) -> tuple[T, Load]:
    """fn(), and the machine's load around it (with `speed`, the speed probe after it)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    load = Load(load_per_core=_load_per_core(cores))
    before, own_before, wall_before = machine_cpu_times(), time.process_time(), time.perf_counter()
    value = fn()
    after, own = machine_cpu_times(), time.process_time() - own_before
    wall = time.perf_counter() - wall_before
    if speed is not None:  # after it: the probe's threads spin a while after it (planner.profiling.speed)
        load.slow_factor = round(speed.slow_factor(probe_ms()), 3)
    if before is not None and after is not None and after[1] > before[1]:
        total = after[1] - before[1]
        if before[2] is not None and after[2] is not None:
            load.steal_pct = round(100 * (after[2] - before[2]) / total, 2)
        others_s = max(0.0, (after[0] - before[0]) / tick - own)
        load.others_pct = round(100 * others_s / max(total / tick, wall * cores, 1e-9), 2)
    return value, load


def wait_until_quiet(cores: int, wait_s: float) -> None:
    """Wait up to `wait_s` for fewer runnable processes than half the cores besides this one."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        running = _running_now()
        if running is None or running - 1 <= cores / 2:
            return
        time.sleep(_POLL_S)


def load_wait_s() -> float:
    try:
        return max(0.0, float(os.environ.get("PLANNER_LOAD_WAIT_S", LOAD_WAIT_S)))
    except ValueError:
        return LOAD_WAIT_S


def quietest(fn: Callable[[], T], cores: int, wait_s: float | None = None,
             speed: SpeedReference | None = None) -> tuple[T, Load, str | None]:
    """Measure with fn(); when the machine was busy, wait (bounded) and measure again, keeping
    the quieter of the two. Returns the kept value, its load, and why it was busy (None: quiet).
    A slow spell has no process to wait for: the whole wait is slept (the spells seen here lasted
    about a minute and a half)."""
    value, load = measure_with_load(fn, cores, speed)
    reason = load.busy_reason(cores)
    wait_s = load_wait_s() if wait_s is None else wait_s
    if reason is None or wait_s <= 0:
        return value, load, reason
    if load.slow:
        time.sleep(wait_s)
    else:
        wait_until_quiet(cores, wait_s)
    value2, load2 = measure_with_load(fn, cores, speed)
    if load2.noise(cores) < load.noise(cores):
        value, load = value2, load2
    return value, load, load.busy_reason(cores)


def busy_core_ms(before: tuple | None, after: tuple | None) -> float | None:
    """Core-milliseconds the whole machine was busy between two machine_cpu_times() (None off Linux)."""
    if before is None or after is None:
        return None
    return (after[0] - before[0]) * 1000 / os.sysconf("SC_CLK_TCK")
