"""YAML loading that remembers where every key came from, so errors can name the line.

Bounded, since app.yaml may come from anyone: a file of at most MAX_FILE_BYTES, nested at most
MAX_DEPTH levels, of at most MAX_NODES nodes once aliases are expanded (a "billion laughs" of
nested aliases is refused before anything expands it), and no alias that contains itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from planner.errors import InputError, KeyPath, clipped, shown

MAX_FILE_BYTES = 2 << 20  # 2 MiB: a 1,000-model, 16-site app is about 1 MB
MAX_DEPTH = 64  # app.yaml nests 7 levels at most (an inline target's TVM dict)
MAX_NODES = 150_000  # keys, items and values, aliases expanded (1,000 models on 16 sites: 114,000): ~60 MB, ~8 s


class LineMap:
    """Key path -> 1-based line of that key (or item) in the source file."""

    def __init__(self) -> None:
        self._lines: dict[tuple, int] = {}

    def add(self, path: tuple, line: int) -> None:
        self._lines.setdefault(path, line)

    def line(self, path: KeyPath) -> int | None:
        """The line of the deepest prefix of `path` that the file has."""
        path = tuple(path)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return self._lines.get(())


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that stops composing at MAX_DEPTH levels and MAX_NODES nodes (its composer
    recurses once per level and keeps every node), and reports a value its constructor cannot
    read (a date like 2001-02-30, an int of 5,000 digits) as a YAML error at that value."""

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self._file = file
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        self._nodes += 1
        self._depth += 1
        try:
            if self._nodes > MAX_NODES or self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                what = (f"more than {MAX_NODES:,} values" if self._nodes > MAX_NODES
                        else f"nested deeper than {MAX_DEPTH} levels")
                raise InputError(f"{what}: an app file holds far less", file=self._file, line=line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            value = f" {shown(node.value)}" if isinstance(node, yaml.ScalarNode) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read{value} as {node.tag.rsplit(':', 1)[-1]}: {exc}", node.start_mark
            ) from None


class _Walk:
    """Records each key's line and checks the document as aliases expand it: duplicate keys,
    keys that are not plain scalars, depth, size, and aliases that contain themselves."""

    def __init__(self, lines: LineMap, file: str):
        self.lines = lines
        self.file = file
        self.nodes = 0
        self.open: set[int] = set()  # the nodes on the current path (an alias to one of them recurses)
        self.seen: set[int] = set()
        self.aliased = False  # some node is reached twice: the data shares objects

    def error(self, message: str, line: int, path: tuple) -> InputError:
        return InputError(message, file=self.file, key=path, line=line)

    def __call__(self, node: yaml.Node, path: tuple = ()) -> None:
        line = node.start_mark.line + 1
        if id(node) in self.open:
            raise self.error("an alias here refers to a node that contains it (a recursive alias)", line, path)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.error(f"aliases expand the file to more than {MAX_NODES:,} values", line, path)
        if len(path) >= MAX_DEPTH:
            raise self.error(f"aliases nest the file deeper than {MAX_DEPTH} levels", line, path)
        self.aliased = self.aliased or id(node) in self.seen
        self.seen.add(id(node))
        self.lines.add(path, line)
        if isinstance(node, yaml.ScalarNode):
            return
        self.open.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, path)
        else:
            for i, item in enumerate(node.value):
                self(item, path + (i,))
        self.open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> None:
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error("a key must be a plain name, not a list or a mapping", line, path)
            key = key_node.value
            if key in seen:
                raise self.error(f"duplicate key '{clipped(key)}' (first at line {seen[key]})", line, path + (key,))
            seen[key] = line
            self.lines.add(path + (key,), line)
            self(value_node, path + (key,))


def _unshared(value: Any) -> Any:
    """The data as a tree: an alias (or a merge key) gives the same object at several places,
    and a --set on one of them must not change the others."""
    if isinstance(value, dict):
        return {k: _unshared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshared(v) for v in value]
    return value


def load_text(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse YAML text; a syntax error becomes an InputError at its line."""
    lines = LineMap()
    try:
        loader = _BoundedLoader(text, file)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, lines
            walk = _Walk(lines, file)
            walk(node)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = clipped(" ".join((exc.problem or "invalid YAML").split()), 300)
        kind = "value" if isinstance(exc, yaml.constructor.ConstructorError) else "syntax"
        raise InputError(f"YAML {kind} error: {problem}", file=file, line=line) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        raise InputError(f"YAML error: {exc.reason} (character #x{exc.character:04x})", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"YAML error: {clipped(' '.join(str(exc).split()), 300)}", file=file) from None
    return (_unshared(data) if walk.aliased else data), lines


def load_file(path: Path) -> tuple[Any, LineMap]:
    """Read and parse a YAML file of at most MAX_FILE_BYTES (read no further: a device or a
    pipe given as the file cannot make it read forever)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError("file not found", file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"larger than {MAX_FILE_BYTES >> 20} MiB, the most an app file may be", file=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read file: not UTF-8 (byte {exc.start})", file=str(path)) from None
    return load_text(text, str(path))
