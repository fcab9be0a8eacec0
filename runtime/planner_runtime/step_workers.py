"""A python step run by worker processes, one per instance (bundle.yaml `nodes.<n>.instances` > 1).

Why processes: a step's Python code holds the GIL while it runs, so N instances in threads of
one process take turns on it. That is one server with N times the service time, where the
latency model (M/G/c, c = replicas x instances) counts N servers; the runtime's own gRPC
threads wait for the GIL too. Each worker is a fresh interpreter (not a fork: the runtime has
gRPC's threads) that imports the step once and runs one call at a time (runtime.steps). A
caller takes a free worker; the executor's gate already admits at most `instances` callers, in
FIFO order.

A worker that dies during a call fails that call with an error saying how it ended, and a new
one is started in its place (the next caller waits for its import). `close()` ends every
worker (SIGTERM, then SIGKILL); a worker also ends by itself when its call pipe closes or its
parent is gone, so none outlives the runtime, however the runtime ends.
"""

from __future__ import annotations

import fcntl
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from planner_runtime.steps import Channel, StepFailed, StepLoadError

# the package's root first, so that the worker runs this very runtime whatever sys.path says
_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
         f"import sys; sys.path.insert(0, {_ROOT!r})\n"
         "from planner_runtime.steps import worker_main; worker_main(sys.argv[1:])")
PIPE_BYTES = 1 << 20
STOP_S = 2.0  # a worker's time to exit after SIGTERM before it is killed


def _widen(pipe_fd: int) -> None:
    """A pipe of 1 MiB instead of 64 KiB (Linux): a large tensor crosses in fewer turns of the
    writer and the reader (each a wake-up of the other process)."""
    try:
        fcntl.fcntl(pipe_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:  # over /proc/sys/fs/pipe-max-size, or not Linux: the default size works too
        pass


class WorkerLost(Exception):
    """The worker's pipe broke during a call: the process is gone (how, the message says)."""


class Worker:
    """One worker process and its two pipes."""

    def __init__(self, name: str, path: Path, function: str):
        calls_r, calls_w = os.pipe()
        replies_r, replies_w = os.pipe()
        for fd in (calls_w, replies_w):
            _widen(fd)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(path), function, name, str(calls_r), str(replies_w)],
                pass_fds=(calls_r, replies_w), stdin=subprocess.DEVNULL)
        except OSError:
            os.close(calls_w)
            os.close(replies_r)
            raise
        finally:
            os.close(calls_r)
            os.close(replies_w)
        self._calls = Channel(calls_w, "wb")
        self._replies = Channel(replies_r, "rb")
        self.ready = False

    def wait_ready(self) -> None:
        """Wait for the step's import; StepLoadError when it failed."""
        try:
            kind, value = self._replies.receive()
        except EOFError:
            raise StepLoadError(f"its worker process {self.exit()} while importing it") from None
        if kind == "failed":
            raise StepLoadError(value)
        self.ready = True

    def call(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.ready:
            try:
                self.wait_ready()
            except StepLoadError as exc:
                raise WorkerLost(f"a new worker process could not load the step: {exc}") from None
        try:
            self._calls.send(feeds)
            kind, value = self._replies.receive()
        except (EOFError, OSError, ValueError):  # the pipe broke (or was closed: stopping): the process is gone
            raise WorkerLost(f"its worker process (pid {self.proc.pid}) {self.exit()} during this request") from None
        if kind == "error":
            raise StepFailed(value)
        return value

    def exit(self) -> str:
        """How the process ended, once it has (killed if it lingers with its pipes closed)."""
        try:
            code = self.proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def close_pipes(self) -> None:
        self._calls.close()
        self._replies.close()


class StepWorkers:
    """`runner(feeds) -> outputs` running a python step in `instances` worker processes."""

    def __init__(self, name: str, path: Path, function: str, instances: int):
        self.name, self.path, self.function = name, Path(path), function
        self._lock = threading.Lock()
        self._closed = False
        self._workers: list[Worker] = []
        try:
            for _ in range(instances):  # all started first: they import the step side by side
                self._workers.append(Worker(name, self.path, function))
            for worker in self._workers:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise
        self._free: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        for worker in self._workers:
            self._free.put(worker)

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._workers]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        worker = self._free.get()
        try:
            return worker.call(feeds)
        except WorkerLost as exc:
            worker = self._replace(worker)
            again = "a new one is started" if worker.proc.poll() is None else "the runtime is stopping"
            raise StepFailed(f"python step {self.path.name}:{self.function}: {exc}; {again}") from None
        finally:
            self._free.put(worker)

    def _replace(self, lost: Worker) -> Worker:
        with self._lock:
            if self._closed:
                return lost
            try:
                worker = Worker(self.name, self.path, self.function)
            except OSError:  # no new process now: the next call tries again
                return lost
            self._workers[self._workers.index(lost)] = worker
        lost.stop()
        lost.close_pipes()
        return worker

    def close(self) -> None:
        """Stop every worker, waiting for each to exit (idle ones' pipes closed too)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.exit()
        idle = getattr(self, "_free", None)
        while idle is not None and not idle.empty():
            idle.get().close_pipes()
