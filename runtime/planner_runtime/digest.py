"""The sha256 of a file: one hasher for the planner (cache keys, app checksums, bundle checksums)
and the runtime (which verifies a bundle's files before loading them)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
