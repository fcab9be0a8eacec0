"""Where profiling keeps what it learns between runs: the profile cache (numbers and compiled
libraries, recomputable) in the user's cache directory, the tuning databases (hours of
measurement, not recomputed lightly) in the user's data directory. Both are per machine and
per user, never inside the installed package."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value else Path.home() / fallback


def default_cache_dir() -> Path:
    """$PLANNER_CACHE_DIR, else $XDG_CACHE_HOME/planner (~/.cache/planner)."""
    env = os.environ.get("PLANNER_CACHE_DIR")
    return Path(env) if env else _xdg("XDG_CACHE_HOME", ".cache") / "planner"


def default_tuning_root() -> Path:
    """$PLANNER_TUNING_DIR, else $XDG_DATA_HOME/planner/tuning (~/.local/share/planner/tuning)."""
    env = os.environ.get("PLANNER_TUNING_DIR")
    return Path(env) if env else _xdg("XDG_DATA_HOME", ".local/share") / "planner" / "tuning"


def default_calibration_dir() -> Path:
    """$PLANNER_CALIBRATION_DIR, else $XDG_DATA_HOME/planner/calibration (~/.local/share/planner/calibration):
    the user's calibrations (`planner calibrate`), read before the shipped ones."""
    env = os.environ.get("PLANNER_CALIBRATION_DIR")
    return Path(env) if env else _xdg("XDG_DATA_HOME", ".local/share") / "planner" / "calibration"


def default_verification_dir() -> Path:
    """$PLANNER_VERIFICATION_DIR, else $XDG_DATA_HOME/planner/verification (~/.local/share/planner/verification):
    the user's records of builds checked on real hardware, read before the shipped ones."""
    env = os.environ.get("PLANNER_VERIFICATION_DIR")
    return Path(env) if env else _xdg("XDG_DATA_HOME", ".local/share") / "planner" / "verification"
