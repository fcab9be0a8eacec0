"""Fixtures shared by the test folders."""

from __future__ import annotations

import pytest


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """The profile cache and the tuning databases in this test's tmp_path, never the user's
    (a host tuning database there would change every `tuning` state a test checks)."""
    monkeypatch.setenv("PLANNER_TUNING_DIR", str(tmp_path / "env-tuning"))
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path / "env-cache"))
    return tmp_path
