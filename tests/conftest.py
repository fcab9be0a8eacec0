"""Fixtures shared by the test folders."""

from __future__ import annotations

import os

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


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """The profile cache and the tuning databases in this test's tmp_path, never the user's
    (a host tuning database there would change every `tuning` state a test checks)."""
    monkeypatch.setenv("PLANNER_TUNING_DIR", str(tmp_path / "env-tuning"))
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path / "env-cache"))
    return tmp_path
