"""Errors a user can act on. The CLI prints each as one line and exits with its code."""

from __future__ import annotations

import reprlib
from collections.abc import Sequence

KeyPath = Sequence[str | int]

# How much of a user's value an error message quotes: a 50 MB scalar or a 100,000-item list is
# cut, not echoed whole.
ECHO_CHARS = 80


def _echo_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxstring = r.maxother = ECHO_CHARS
    r.maxlist = r.maxtuple = r.maxset = r.maxdict = 8
    r.maxlevel = 3
    return r


_ECHO = _echo_repr()


def shown(value: object) -> str:
    """A user's value as an error message quotes it: its repr, cut to about ECHO_CHARS
    characters (reprlib never builds the whole repr of a huge value first)."""
    text = _ECHO.repr(value)
    return text if len(text) <= ECHO_CHARS + 8 else text[:ECHO_CHARS] + "..."


def clipped(text: str, limit: int = ECHO_CHARS) -> str:
    """Text from the user's input (a key, a name, a parser's message about it), cut to `limit`."""
    return text if len(text) <= limit else text[:limit] + "..."


def shown_name(name: object) -> str:
    """A key or a name as a message prints it (unquoted), cut like `shown`."""
    return clipped(str(name)) if isinstance(name, (str, int)) else shown(name)


def format_key(path: KeyPath) -> str:
    """`("models", "det", "sites", 0)` -> `models.det.sites[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = shown_name(part)
            out += f".{part}" if out else part
    return out


class PlannerError(Exception):
    exit_code = 1


class InputError(PlannerError):
    """Invalid input: names the file, the key path and the line where one is known."""

    exit_code = 2

    def __init__(
        self, message: str, *, file: str | None = None, key: KeyPath | None = None, line: int | None = None
    ):
        super().__init__(message)
        self.message = message
        self.file = file
        self.key = tuple(key) if key else ()
        self.line = line

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        if self.key:
            where += f": {format_key(self.key)}" if where else format_key(self.key)
        return f"{where}: {self.message}" if where else self.message


class InfeasibleError(PlannerError):
    """No placement meets the constraints; `explanation` says why in words a person can act on."""

    exit_code = 3

    def __init__(self, message: str, explanation: list[str] | None = None):
        super().__init__(message)
        self.explanation = explanation or []
