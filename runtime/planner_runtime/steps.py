"""Python steps: `function(**inputs)` in a file, loaded and called in this process, and the
main loop of a worker process that runs one (runtime.step_workers starts those).

A worker imports its step once, says it is ready, then answers calls one at a time on two
pipes: the runtime's calls on one, its replies on the other. It ends when the call pipe
closes (the runtime stopped or died) or when the process that started it is gone (a step
still running then would otherwise leave an orphan). It ignores Ctrl-C: a terminal sends it
to the whole process group, and the runtime stops its workers itself.

Messages on a pipe (`Channel`): an 8-byte length, a pickle (protocol 5) of the message with
its arrays' memory left out of band, then each array's bytes, read straight into a fresh
buffer that the received array uses (one copy each way, besides the pipe's own).

Only the standard library and numpy here: a worker imports nothing else before its step.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from planner_runtime.gc_freeze import freeze_loaded

_LENGTH = struct.Struct("<Q")


class StepLoadError(Exception):
    """Importing a step's file failed, or it lacks the function (the message says which)."""


class StepFailed(RuntimeError):
    """A call that failed in a worker process: the message is the whole description (the step's
    exception type and message, or what happened to the worker), as the runtime reports it."""


def step_failure(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it exited (SystemExit({exc.code!r})); a step must return its outputs or raise an exception"
    return f"{type(exc).__name__}: {exc}"


def load_step(name: str, path: Path, function: str) -> Callable:
    """The step's function, its file imported as a module of its own (a step may import its siblings)."""
    path = Path(path)
    if not path.is_file():
        raise StepLoadError(f"python file {path} not found")
    spec = importlib.util.spec_from_file_location(f"_planner_step_{name}_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # sys.exit() in a step's import must not end the site
        raise StepLoadError(f"importing {path} failed: {step_failure(exc)}") from exc
    finally:
        sys.path.remove(str(path.parent))
    fn = getattr(module, function, None)
    if not callable(fn):
        raise StepLoadError(f"{path} has no function {function!r}")
    return fn


def call_step(fn: Callable, path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # arrays decoded from the wire are read-only views: a step may write into its inputs
    kwargs = {k: (v if v.flags.writeable else v.copy()) for k, v in feeds.items()}
    try:
        result = fn(**kwargs)
    except (SystemExit, GeneratorExit) as exc:  # a step's sys.exit() fails this request, not the site
        raise RuntimeError(f"{path}: {fn.__name__}: {step_failure(exc)}") from None
    if not isinstance(result, dict):
        raise TypeError(f"{fn.__name__} returned {type(result).__name__}, expected a dict")
    return result


class Channel:
    """One direction of a pipe between the runtime and a worker, carrying pickled messages whose
    arrays travel as raw bytes. `receive` raises EOFError when the other end has closed."""

    def __init__(self, fd: int, mode: str):
        self._file = io.FileIO(fd, mode)

    def send(self, message) -> None:
        buffers: list[pickle.PickleBuffer] = []
        head = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
        raws = [b.raw() for b in buffers]
        meta = pickle.dumps((head, [r.nbytes for r in raws]), protocol=5)
        self._write(memoryview(_LENGTH.pack(len(meta)) + meta))
        for raw in raws:
            self._write(raw)

    def receive(self):
        (length,) = _LENGTH.unpack(self._read(_LENGTH.size))
        head, sizes = pickle.loads(self._read(length))
        buffers = [self._read(n) for n in sizes]
        return pickle.loads(head, buffers=buffers)

    def close(self) -> None:
        self._file.close()

    def _write(self, view: memoryview) -> None:
        view = view.cast("B")
        while view:
            view = view[self._file.write(view):]

    def _read(self, n: int) -> np.ndarray:
        buf = np.empty(n, dtype=np.uint8)  # not zero-filled: read straight into it
        view, got = memoryview(buf), 0
        while got < n:
            k = self._file.readinto(view[got:])
            if not k:
                raise EOFError("the other end of the pipe closed")
            got += k
        return buf


def serve(path: str, function: str, name: str, calls_fd: int, replies_fd: int) -> None:
    """A worker's life: import the step, then answer calls until the call pipe closes."""
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent", daemon=True).start()
    calls, replies = Channel(calls_fd, "rb"), Channel(replies_fd, "wb")
    try:
        fn = load_step(name, Path(path), function)
    except StepLoadError as exc:
        replies.send(("failed", str(exc)))
        return
    freeze_loaded()  # the step is imported: a full collection need not walk it per call
    replies.send(("ready", os.getpid()))
    while True:
        try:
            feeds = calls.receive()
        except EOFError:
            return
        try:
            result = call_step(fn, Path(path), feeds)
            replies.send(("ok", result))  # pickled whole before anything is written
        except Exception as exc:
            replies.send(("error", f"{type(exc).__name__}: {exc}"))


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:  # re-parented: the runtime died (even by SIGKILL)
        time.sleep(0.5)
    os._exit(1)


def worker_main(argv: list[str]) -> None:
    """`PATH FUNCTION NAME CALLS_FD REPLIES_FD`: the arguments runtime.step_workers starts a worker with."""
    from planner_runtime.malloc import tune_malloc

    tune_malloc()  # as in the runtime: a tensor-sized buffer per call, not faulted in afresh each time
    path, function, name, calls_fd, replies_fd = argv
    try:
        serve(path, function, name, int(calls_fd), int(replies_fd))
    except BrokenPipeError:  # the runtime went away while we answered
        pass
