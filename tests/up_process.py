"""`planner up OUT ...` as a subprocess for a test: started, awaited until it prints `ready:`,
and stopped with Ctrl-C (SIGINT) at the end, its remaining output kept for the test to check."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests import ROOT


@dataclass
class Up:
    proc: subprocess.Popen
    started: list[str] = field(default_factory=list)  # its lines up to `ready:`, that one included
    stdout: str = ""  # what it printed after `ready:`, once stopped
    stderr: str = ""


@contextmanager
def planner_up(out, *args: str, env: dict) -> Iterator[Up]:
    up = Up(subprocess.Popen([sys.executable, "-m", "planner", "up", str(out), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env))
    try:
        for line in up.proc.stdout:
            up.started.append(line)
            if line.startswith("ready:"):
                break
        yield up
    finally:
        up.proc.send_signal(signal.SIGINT)
        try:
            up.stdout, up.stderr = up.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            up.proc.kill()
            raise
