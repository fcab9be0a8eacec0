"""Errors a user can act on. The CLI prints each as one line and exits with its code."""

from __future__ import annotations

from collections.abc import Sequence

KeyPath = Sequence[str | int]


def format_key(path: KeyPath) -> str:
    """`("models", "det", "sites", 0)` -> `models.det.sites[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
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
