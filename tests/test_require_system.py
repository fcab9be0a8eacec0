"""`require_system`: a missing system part skips its tests, except under PLANNER_REQUIRE_SYSTEM=1
(CI), where it fails them: a green CI run has run every test."""

from __future__ import annotations

import pytest

from tests.conftest import require_system


def test_missing_part_skips_by_default_and_fails_under_the_switch(monkeypatch):
    monkeypatch.delenv("PLANNER_REQUIRE_SYSTEM", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"the widget is not installed \(`make widget`\)"):
        require_system("the widget", False, "`make widget`")
    monkeypatch.setenv("PLANNER_REQUIRE_SYSTEM", "1")
    with pytest.raises(pytest.fail.Exception, match="the widget is not installed .*PLANNER_REQUIRE_SYSTEM=1"):
        require_system("the widget", False, "`make widget`")
    require_system("the widget", True, "`make widget`")  # present: the test goes on
