"""Which directories a command may write its output into, so that no run deletes or overwrites
what the user keeps: OUT is a new path, an empty directory, or one the planner wrote before
(it holds the marker file, or, written before there was one, only the planner's own files)."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from planner.errors import InputError

MARKER = ".planner-output"
MARKER_TEXT = ("Written by `planner`. `planner solve -o` replaces this directory whole, so keep\n"
               "nothing else in it; `planner pareto` and `planner sweep` add their files.\n")

# every name a command writes at the top of OUT
OWN_NAMES = frozenset({
    MARKER, "plan.json", "report.md", "report.html", "graph.svg", "latency.svg", "cost.svg", "load.svg", "sites", "deploy", "logs",
    *(f"{stem}.{ext}" for stem in ("pareto", "sweep") for ext in ("json", "md", "png", "svg")),
})
# what an interrupted write of ours leaves inside OUT (publish stages, atomic-write temporaries)
_OWN_LEFTOVER = re.compile(r"\.(?:review-|planner-publish-|(?:%s)\.)" % "|".join(map(re.escape, sorted(OWN_NAMES))))
# a directory without the marker is ours when it holds one of these (and nothing else of anyone's)
_OWN_RESULTS = ("plan.json", "pareto.json", "sweep.json")

FOUND = ("OPTIMAL", "FEASIBLE")


def check_output_dir(out: Path, inputs: Iterable[Path] = (), *, replace: bool) -> Path:
    """`out` as an absolute path when a command may write there, or one InputError naming it and
    saying why not. `replace`: the command swaps OUT whole (`solve`), rather than adding its
    files to it (`pareto`, `sweep`). `inputs`: the app's own files, which OUT must not hold."""
    out = Path(os.path.abspath(out))

    def refuse(why: str) -> InputError:
        return InputError(f"{why}; choose a new directory, an empty one, or one the planner wrote (e.g. -o out)",
                          file=str(out))

    _check_parents(out, refuse)
    if out.exists() and not out.is_dir():
        raise refuse("exists and is not a directory")
    real = out.resolve()
    if replace:
        if out.is_symlink():
            raise refuse("is a symbolic link (`planner solve` replaces OUT whole): give the directory it points to")
        places = [(Path(real.anchor), "the filesystem root"), (Path.cwd().resolve(), "the current directory")]
        with contextlib.suppress(RuntimeError, KeyError):  # no home directory known
            places.append((Path.home().resolve(), "your home directory"))
        for place, what in places:
            if real == place or real in place.parents:
                raise refuse(f"{'is' if real == place else 'holds'} {what}, and `planner solve` replaces OUT whole")
    for path in inputs:
        path = Path(path).resolve()
        if real == path or real in path.parents:
            raise refuse(f"holds the app's own file {path}")
    if not out.is_dir():
        return out
    names = {p.name for p in out.iterdir()}
    if names and not (MARKER in names or (names.intersection(_OWN_RESULTS) and not _foreign(names))):
        raise refuse(f"is not empty and was not written by the planner (it has no {MARKER})")
    foreign = _foreign(names)
    if replace and foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise refuse(f"holds files the planner did not write ({shown}), and `planner solve` replaces OUT whole: "
                     "move them away")
    return out


def holds_found_plan(out: Path) -> bool:
    """Whether OUT holds a plan.json with a placement, which a run that finds none must keep."""
    try:
        return json.loads((Path(out) / "plan.json").read_text(encoding="utf-8")).get("status") in FOUND
    except (OSError, ValueError, AttributeError):
        return False


def _foreign(names: set[str]) -> list[str]:
    return sorted(n for n in names if n not in OWN_NAMES and not _OWN_LEFTOVER.match(n))


def _check_parents(out: Path, refuse) -> None:
    """The nearest existing ancestor must be a directory, or OUT cannot be made."""
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise refuse(f"cannot be made: {parent} is not a directory")
            return
