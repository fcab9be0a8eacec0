"""The profile cache: one JSON file per key under profiles/cache/ (or PLANNER_CACHE_DIR, or
the cache_dir option). A key is the sha256 of everything the numbers depend on: the ONNX
file's (or python step file's) sha256, the input shapes, the target's JSON, the TVM version
and the tuning state. A warm run reads these files and compiles and measures nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

PROFILES_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"
FORMAT = 5  # bump when the meaning of a cached entry changes (3: untuned CPU code got a default schedule;
#            4: estimates use all-core peaks; 5: `tuned:<K>/<N>` counts this model's tuned kernels)


def default_cache_dir() -> Path:
    env = os.environ.get("PLANNER_CACHE_DIR")
    return Path(env) if env else PROFILES_DIR / "cache"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_key(**parts: Any) -> str:
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ProfileCache:
    """get/put JSON entries by key; counts hits and misses (the tests read them)."""

    def __init__(self, directory: Path | None = None, refresh: bool = False):
        self.dir = Path(directory) if directory else default_cache_dir()
        self.refresh = refresh
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        if self.refresh or not path.is_file():
            self.misses += 1
            return None
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, key: str, entry: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.part")
        tmp.write_text(json.dumps(entry, indent=1, sort_keys=True))
        tmp.replace(path)
