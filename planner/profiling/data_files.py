"""The YAML data files profiling reads besides the app (calibrations, verification records):
each a pydantic model, read from the user's folder before the shipped one."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from planner.errors import PlannerError

M = TypeVar("M", bound=BaseModel)


class DataFileError(PlannerError):
    """A data file that cannot be used: bad input (exit 2), but not the app's, so that no model
    or key of app.yaml is blamed for it."""

    exit_code = 2

    def __init__(self, path: Path, message: str):
        super().__init__(f"{path}: {message}")


def read_yaml_model(path: Path, model: type[M], what: str) -> M:
    """One file of `model`; an unreadable or malformed one is an error naming it (`what`: e.g.
    "calibration file")."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return model.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise DataFileError(path, f"{what} cannot be read: {type(exc).__name__}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise DataFileError(path, f"not a {what}: {where}: {first['msg']}") from None


def yaml_files(folder) -> list:
    """The folder's *.yaml files by name (none when it does not exist)."""
    try:
        return sorted((p for p in folder.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
