"""Fixtures and helpers shared by the test folders: `require_system` for tests that need something
outside the Python environment, `refused_ports` for addresses nobody serves."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import Phase, settings

# Property tests draw the same examples on every run under HYPOTHESIS_PROFILE=ci (`make test`,
# .ci/run): a green run means the same thing twice, and a planted bug is caught or not the
# same way every time. Without it (a developer's run) they draw new examples each time and
# replay the failures saved in .hypothesis/. Each test's own @settings (max_examples, deadline)
# apply on top.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
# `make mutation`: the same examples, and a failure is only counted, never shrunk
settings.register_profile("mutation", settings.get_profile("ci"), phases=[Phase.explicit, Phase.generate])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or settings.get_current_profile_name())

# A measurement on a busy machine is taken again after a bounded wait (planner.profiling.load):
# tests run on busy machines by design and must not wait; tests of the retry pass their own wait.
os.environ.setdefault("PLANNER_LOAD_WAIT_S", "0")
# TVM sizes its thread pool once per process, at the first parallel loop, from this variable
# (planner.profiling.measure.set_tvm_threads): whichever test runs TVM first, the pool can then
# give every measurement the host's cores, as in a `planner profile` process.
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))

# CI sets it (.ci/run): there a missing system part is a failure, not a skip, so that a green
# run cannot hide tests that never ran.
REQUIRE_SYSTEM = "PLANNER_REQUIRE_SYSTEM"


def require_system(what: str, available: bool, how_to_get: str) -> None:
    """Skip the calling test (call it from the test or an autouse fixture) when `what` is
    missing, saying how to get it; with PLANNER_REQUIRE_SYSTEM=1 in the environment, fail it."""
    if available:
        return
    message = f"{what} is not installed ({how_to_get})"
    if os.environ.get(REQUIRE_SYSTEM) == "1":
        pytest.fail(f"{message}; {REQUIRE_SYSTEM}=1 makes this a failure, not a skip", pytrace=False)
    pytest.skip(message)


@contextmanager
def refused_ports(n: int, servable: bool = False) -> Iterator[list[int]]:
    """n loopback ports held bound but not listening while the context lasts: connecting to one is
    refused, and no other process can take it (bundle addresses nobody serves). servable: held with
    SO_REUSEADDR, so that a server setting it too (gRPC's) may still listen there: fixed ports for
    the servers a test starts, taken by nothing else meanwhile."""
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.socket())
            if servable:
                socks[-1].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            socks[-1].bind(("127.0.0.1", 0))
        yield [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """The profile cache, the tuning databases, the calibrations and the verification records in
    this test's tmp_path, never the user's (a host tuning database there would change every
    `tuning` state a test checks, a calibration every estimate, a record what is excluded)."""
    monkeypatch.setenv("PLANNER_TUNING_DIR", str(tmp_path / "env-tuning"))
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("PLANNER_CALIBRATION_DIR", str(tmp_path / "env-calibration"))
    monkeypatch.setenv("PLANNER_VERIFICATION_DIR", str(tmp_path / "env-verification"))
    return tmp_path
