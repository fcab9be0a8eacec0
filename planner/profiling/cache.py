"""The profile cache: one JSON file per key under the cache directory (planner.profiling.locations,
or the cache_dir option). A key is the sha256 of everything the numbers depend on: the ONNX
file's (or python step file's) sha256, the input shapes, the target's JSON, the TVM version
and the tuning state. An entry is one of the typed records of planner.profiling.entries; a
warm run reads them and compiles and measures nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from planner.profiling.locations import default_cache_dir

FORMAT = 8  # bump when the meaning of a cached entry changes (3: untuned CPU code got a default schedule;
#            4: estimates use all-core peaks; 5: `tuned:<K>/<N>` counts this model's tuned kernels;
#            6: one entry per build (engine, precision), verified, timed on a recorded thread count;
#            7: ONNX Runtime timed without spinning, as served: planner_runtime.ort_options;
#            8: TVM timed with its pool's workers not spinning, as served: planner_runtime.tvm_options)

Entry = TypeVar("Entry", bound=BaseModel)


def make_key(**parts: Any) -> str:
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ProfileCache:
    """get/put typed entries by key; counts hits and misses (the tests read them)."""

    def __init__(self, directory: Path | None = None, refresh: bool = False):
        self.dir = Path(directory) if directory else default_cache_dir()
        self.refresh = refresh
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str, kind: type[Entry]) -> Entry | None:
        """The entry under `key`, or None (a miss) when there is none, `refresh` is set, or the
        file does not hold a valid `kind` (written by another version: computed again)."""
        path = self._path(key)
        if self.refresh or not path.is_file():
            self.misses += 1
            return None
        try:
            entry = kind.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, key: str, entry: BaseModel) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.part")
        tmp.write_text(json.dumps(entry.model_dump(mode="json", exclude_none=True), indent=1, sort_keys=True))
        tmp.replace(path)
