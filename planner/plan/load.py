"""Reading a plan.json back: the Plan model, or one InputError that says what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from planner.errors import InputError
from planner.plan.schema import Plan


def load_plan(path: Path) -> Plan:
    """A plan.json, or one InputError that says what is wrong with the file."""
    path = Path(path)
    if path.is_dir() and (path / "plan.json").is_file():
        path = path / "plan.json"
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected a plan.json written by `planner solve`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a plan.json: invalid JSON ({exc})") from None
    if not isinstance(data, dict) or "placement" not in data or "app" not in data:
        raise InputError(f"{path}: not a plan.json: it has no 'app' and 'placement' (write one with `planner solve`)")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: not a plan.json this planner reads: {where}: {first['msg']}") from None
