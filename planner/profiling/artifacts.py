"""Compiled libraries kept between runs: an ONNX model compiled by TVM for one target is
reused as long as the file, its input shapes, the target, TVM and the tuning database are
the same (`planner run`, bundles and `--host-targets` fallbacks all compile the same way)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from planner.profiling import cache
from planner.profiling.cache import default_cache_dir, sha256_file
from planner.targets import Target

# executables compiled earlier in this process (by the profiler), by key: `planner solve`
# profiles and then bundles, and must not compile the same model for the same target twice
_COMPILED: dict[str, object] = {}


def artifact_dir() -> Path:
    return default_cache_dir() / "artifacts"  # beside the profile cache


def _key(onnx_path: Path, shapes: dict[str, list[int]], target: Target, tuning_dir: Path) -> str:
    import tvm

    from planner.profiling.compile import tvm_target_dict

    shapes = {k: list(v) for k, v in shapes.items()}
    records = tuning_dir / "database_tuning_record.json"
    parts = {
        "format": cache.FORMAT,  # bumped when the compile pipeline changes
        "onnx": sha256_file(onnx_path),
        "shapes": shapes,
        "target": tvm_target_dict(target),
        "tvm": tvm.__version__,
        "tuning": sha256_file(records) if records.is_file() else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def remember(onnx_path: Path, shapes: dict[str, list[int]], target: Target, executable, tuning_dir: Path) -> None:
    """Keep an executable the profiler compiled, for a bundle of this process to export."""
    _COMPILED[_key(onnx_path, shapes, target, Path(tuning_dir))] = executable


def compiled_library(onnx_path: Path, shapes: dict[str, list[int]], target: Target) -> tuple[Path, str | None]:
    """The library of the model for the target, compiled now or taken from the cache."""
    from planner.profiling.compile import compile_onnx_for, export_artifact
    from planner.profiling.tune import tuning_dir as tuning_dir_of

    tuning_dir = tuning_dir_of(target)
    key = _key(onnx_path, shapes, target, tuning_dir)
    directory = artifact_dir() / target.name
    for suffix in (".so", ".tar"):
        hit = directory / f"{key}{suffix}"
        if hit.is_file():
            return hit, None if suffix == ".so" else f"{hit.name} holds objects to link on the device"
    ex = _COMPILED.pop(key, None) or compile_onnx_for(onnx_path, shapes, target, tuning_dir=tuning_dir)
    staging = directory / f".{key}.{os.getpid()}"
    path, note = export_artifact(ex, target, staging, key)
    final = directory / path.name
    os.replace(path, final)  # atomic: concurrent runs never see half a library
    shutil.rmtree(staging, ignore_errors=True)
    return final, note


def copy_library(onnx_path: Path, shapes: dict[str, list[int]], target: Target, dest_dir: Path,
                 stem: str) -> tuple[Path, str | None]:
    """The cached library copied into a bundle as `<stem>.so` (or `.tar`)."""
    src, note = compiled_library(onnx_path, shapes, target)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{stem}{src.suffix}"
    shutil.copy2(src, dest)
    return dest, note
