"""TVM 0.27 writes one `Scope Loaded:` warning per constant when it loads a Relax VM executable
whose memory scopes were recorded, and one `Scope Saving:` when it exports one (they are
recorded once a VirtualMachine has run the executable, as the profiler does before a bundle
exports it). Both are LOG(WARNING)s in src/runtime/vm/executable.cc, written straight to
std::cerr, which no setting turns off: hundreds of lines per model, burying what matters.
While a library loads or exports, fd 2 goes to a file; afterwards every other line is
written back."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from contextlib import contextmanager

NOISE = ("Scope Loaded:", "Scope Saving:")
_lock = threading.RLock()  # fd 2 is process-wide: one redirection at a time (nesting is fine)


@contextmanager
def redirect_fd(fd: int, file):
    """File descriptor `fd` (1 or 2) points at `file` for the block: what C++ writes there too."""
    stream = {1: sys.stdout, 2: sys.stderr}[fd]
    stream.flush()
    saved = os.dup(fd)
    os.dup2(file.fileno(), fd)
    try:
        yield
    finally:
        stream.flush()
        os.dup2(saved, fd)
        os.close(saved)


@contextmanager
def without_scope_warnings():
    with _lock, tempfile.TemporaryFile() as captured:
        with redirect_fd(2, captured):
            yield
        captured.seek(0)
        kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not any(n in line for n in NOISE)]
        if kept:  # anything else written meanwhile (by TVM or another thread) is not lost
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
