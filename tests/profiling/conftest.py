"""Every profiling test runs with its own cache and tuning databases."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _own_profiling_dirs(isolated_dirs):
    return isolated_dirs
