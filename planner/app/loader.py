"""Read app.yaml into a schema-valid `App` that remembers where each key came from: one clear
InputError naming file, key and line. The cross-reference checks come after
(planner.app.checks), the graph checks after those (planner.model.open_app)."""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError

from planner.app.overrides import apply_override
from planner.app.spec import App
from planner.app.yaml_lines import LineMap, load_file
from planner.errors import InputError, KeyPath, clipped, shown, shown_name


@dataclass
class LoadedApp:
    """The app as the schema accepts it, with the file's lines and the --set options that
    changed it: every later error names the key, and the line or the option to fix."""

    app: App
    path: Path
    lines: LineMap
    overrides: dict[tuple, str] = field(default_factory=dict)  # key path -> the --set that changed it

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def error(self, message: str, key: KeyPath = ()) -> InputError:
        return located_error(message, self.path, key, self.lines, self.overrides)

    def resolve(self, relative: str) -> Path:
        """A path written in app.yaml, relative to the file."""
        return (self.base_dir / relative).resolve()

    def beside(self, relative: str) -> str | None:
        """Where a path written in app.yaml lies under app.yaml's folder (`a/../b.py` -> `b.py`), or
        None when it leads out of it. Lexical: a linked folder inside stays inside (the bundle
        keeps the app's layout)."""
        base = Path(os.path.normpath(self.base_dir.absolute()))
        path = Path(os.path.normpath(base / relative))
        return path.relative_to(base).as_posix() if base in path.parents else None


def located_error(message: str, path: Path, key: KeyPath, lines: LineMap, overrides: dict[tuple, str]) -> InputError:
    """An error at a key; a value that came from --set says so instead of naming a line."""
    key = tuple(key)
    for set_path, text in overrides.items():
        if key[: len(set_path)] == set_path:
            return InputError(f"{message} (from --set {clipped(text)})", file=str(path), key=key)
    return InputError(message, file=str(path), key=key, line=lines.line(key))


def _field(cls: type[BaseModel], key: str | int):
    return cls.model_fields.get(str(key)) or next((f for f in cls.model_fields.values() if f.alias == key), None)


def _model_at(path: Sequence[str | int]) -> type[BaseModel] | None:
    """The spec model that a key path points into (to list its valid keys)."""
    cls: Any = App
    i = 0
    while i < len(path) and isinstance(cls, type) and issubclass(cls, BaseModel):
        field = _field(cls, path[i])
        if field is None:
            return None
        ann = field.annotation
        i += 1
        # unwrap Optional, dict[str, X], list[X], Annotated[X, ...]
        while True:
            origin = typing.get_origin(ann)
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if origin is typing.Annotated:
                ann = args[0]
            elif origin in (dict, list) and args:
                ann = args[-1]
                i += 1
            elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
                ann = args[0]
            else:
                break
        cls = ann
    return cls if i >= len(path) and isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _number(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


_BOUNDS = {annotated_types.Gt: ">", annotated_types.Ge: ">=", annotated_types.Lt: "<", annotated_types.Le: "<="}


def _allowed_range(path: Sequence[str | int]) -> str | None:
    """`> 0 and <= 1e+07`: the range the schema gives the number at `path` (None: it gives none)."""
    parent = _model_at(path[:-1]) if path else None
    field = _field(parent, path[-1]) if parent else None
    if field is None:
        return None
    parts = []
    for bound in field.metadata:
        for kind, op in _BOUNDS.items():
            if isinstance(bound, kind):
                parts.append(f"{op} {_number(getattr(bound, kind.__name__.lower()))}")
    return " and ".join(parts) or None


def _valid_keys(cls: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in cls.model_fields.items()]


def _locate(data: Any, loc: tuple) -> tuple[list[str | int], bool]:
    """Keep the parts of a pydantic `loc` that exist in the data (drop union member tags).
    Returns the path and whether every part was found."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return path + [part] if part != "[key]" else path, False
        path.append(part)
    return path, True


def _message(err: dict, path: list, data: Any) -> str:
    kind, msg, value = err["type"], err["msg"], err.get("input")
    key = path[-1] if path else ""
    if kind == "missing":
        return f"missing required key '{shown_name(key)}'"
    if kind == "extra_forbidden":
        parent = _model_at(path[:-1])
        valid = _valid_keys(parent) if parent else []
        close = difflib.get_close_matches(shown_name(key), valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key '{shown_name(key)}'{hint}" + (f"; valid keys: {', '.join(valid)}" if valid else "")
    if kind == "string_pattern_mismatch":
        if key == "onnx" or path[-2:-1] == ["files"]:
            return f"expected a file path (no NUL character), got {shown(value)}"
        if "[key]" in err["loc"] or str(key) in {"name", "between", "sites"} or isinstance(key, int):
            return f"invalid name {shown(value)}: use letters, digits, '_' or '-', starting with a letter or '_'"
        if key == "python":
            return f"expected `file.py:function`, got {shown(value)}"
        if key == "tracker":
            return f"expected HOST:PORT, got {shown(value)}"
    allowed = _allowed_range(path)
    if kind == "int_parsing_size" and allowed:  # an integer past int64, 1e30 say
        return f"must be {allowed}, got {shown(value)}"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(err.get("ctx", {}).values()), "?")
        return f"must be {allowed or f'{op} {_number(bound)}'}, got {shown(value)}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    msg = msg.replace("Input should be", "expected")
    if value is not None and not isinstance(value, (dict, list)):
        msg += f", got {shown(value)}"
    return msg + (f" (allowed: {allowed})" if allowed and kind.startswith(("int", "float", "finite")) else "")


def _validation_error(exc: ValidationError, data: Any, file: Path, lines: LineMap,
                      overrides: dict[tuple, str]) -> InputError:
    found = []
    seen = set()
    for err in exc.errors():
        path, _ = _locate(data, tuple(err["loc"]))
        if tuple(path) in seen:
            continue  # one message per place (a union reports each member)
        seen.add(tuple(path))
        found.append((lines.line(path) or 0, path, _message(err, path, data), err["type"]))
    # a misspelt key is also a missing one: the unknown key, with its "did you mean", says more
    rank = {"extra_forbidden": 0, "missing": 2}
    found.sort(key=lambda item: (item[0], rank.get(item[3], 1)))
    _, path, message, _ = found[0]
    if len(found) > 1:
        message += f" (and {len(found) - 1} more error{'s' if len(found) > 2 else ''})"
    return located_error(message, file, path, lines, overrides)


def parse_app(data: Any, path: Path, lines: LineMap, overrides: Sequence[str] = ()) -> LoadedApp:
    if not isinstance(data, dict):
        raise InputError("expected a mapping of app keys (name, sites, models, ...)", file=str(path), line=1)
    changed = {}
    for text in overrides:
        changed[apply_override(data, text)] = text
    try:
        app = App.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, data, path, lines, changed) from None
    return LoadedApp(app=app, path=path, lines=lines, overrides=changed)


def load_app(path: str | Path, overrides: Sequence[str] = ()) -> LoadedApp:
    """Read and validate app.yaml against the schema, with --set overrides applied."""
    path = Path(path)
    data, lines = load_file(path)
    return parse_app(data, path, lines, overrides)
