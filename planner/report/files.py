"""Writing outputs atomically: a failed run never leaves a half-written OUT over a good one,
nor a half-written file. Outputs get the modes of any file the user makes (the umask), and
what an interrupted run of ours left behind is removed by the next one."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from planner.errors import InputError
from planner.report.output_dir import MARKER, MARKER_TEXT, OWN_NAMES, check_output_dir

# named with the writer's pid, so that a later run can tell whether its writer is gone
_INSIDE = re.compile(r"(?:\.planner-publish-|\.(?:%s)\.tmp-)(?P<pid>\d+)-[a-z0-9_]{8}"
                     % "|".join(map(re.escape, sorted(OWN_NAMES))))


@contextlib.contextmanager
def staged_dir(out: Path, inputs: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield an empty staging directory beside `out`; on success it replaces `out` whole.
    `out` must pass check_output_dir, also at the swap (a user may have put files there meanwhile)."""
    inputs = list(inputs)
    out = check_output_dir(out, inputs, replace=True)
    _make_dir(out.parent)
    recover_interrupted(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-{os.getpid()}-", dir=out.parent))
    try:
        os.chmod(stage, 0o777 & ~_umask())
        yield stage
        (stage / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
        check_output_dir(out, inputs, replace=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_interrupted(out: Path) -> None:
    """Remove the staging and old copies an interrupted staged_dir left beside `out`. A run
    killed between its two renames left OUT missing and its last good copy in `.OUT.old-PID`:
    that copy is put back instead."""
    out = Path(os.path.abspath(out))
    if out.parent.is_dir():
        beside = re.compile(rf"\.{re.escape(out.name)}\.(?:staging-(?P<pid>\d+)-[a-z0-9_]{{8}}|old-(?P<old>\d+))")
        _remove_stale(out.parent, beside, restore=out)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def publish(out_dir: Path, files: dict[str, str | Callable[[Path], None]], inputs: Iterable[Path] = ()) -> list[Path]:
    """Write files into out_dir (kept, not replaced), each one atomically: text as is, or a
    callable that writes the file at the path it is given (plots). out_dir must pass
    check_output_dir: new, empty, or the planner's."""
    out_dir = check_output_dir(out_dir, inputs, replace=False)
    _make_dir(out_dir)
    _remove_stale(out_dir, _INSIDE)
    stage = Path(tempfile.mkdtemp(prefix=f".planner-publish-{os.getpid()}-", dir=out_dir))
    try:
        for name, content in files.items():
            if callable(content):
                content(stage / name)
            else:
                (stage / name).write_text(content, encoding="utf-8")
        for name in files:
            os.replace(stage / name, out_dir / name)
        if not (out_dir / MARKER).exists():
            write_text_atomic(out_dir / MARKER, MARKER_TEXT)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [out_dir / n for n in files]


def _remove_stale(parent: Path, pattern: re.Pattern, restore: Path | None = None) -> None:
    """Entries of `parent` named by `pattern` whose writer (the pid in the name) is gone."""
    for entry in sorted(parent.iterdir()):
        m = pattern.fullmatch(entry.name)
        if m is None or entry.is_symlink() or _alive(int(m["pid"] or m.groupdict().get("old"))):
            continue
        if restore is not None and m.groupdict().get("old") and not os.path.lexists(restore):
            os.replace(entry, restore)
        elif entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no process could have such a pid
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the directory: {exc.strerror}", file=str(path)) from None
