"""Compiled libraries kept between runs: an ONNX model compiled by TVM for one target is
reused as long as the file, its input shapes, the target, TVM and the tuning database are
the same (`planner run`, bundles and `--host-targets` fallbacks all compile the same way).
Within one run, the executables the profiler compiled travel in its result
(AppProfiles.executables) and are exported from there instead of compiled again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from planner.app.targets import Target
from planner.profiling import cache
from planner.profiling.locations import default_cache_dir
from planner_runtime.digest import sha256_file

# artifact key -> tvm.relax.Executable compiled in this process
Executables = dict[str, Any]


def artifact_dir() -> Path:
    return default_cache_dir() / "artifacts"  # beside the profile cache


def artifact_key(onnx_path: Path, shapes: dict[str, list[int]], target: Target, tuning_dir: Path) -> str:
    import tvm

    from planner.profiling.compile import tvm_target_dict

    shapes = {k: list(v) for k, v in shapes.items()}
    records = Path(tuning_dir) / "database_tuning_record.json"
    parts = {
        "format": cache.FORMAT,  # bumped when the compile pipeline changes
        "onnx": sha256_file(onnx_path),
        "shapes": shapes,
        "target": tvm_target_dict(target),
        "tvm": tvm.__version__,
        "tuning": sha256_file(records) if records.is_file() else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def compiled_library(onnx_path: Path, shapes: dict[str, list[int]], target: Target,
                     executables: Mapping[str, Any] | None = None) -> tuple[Path, str | None]:
    """The library of the model for the target: from the artifact cache, else exported from
    an executable this run already compiled (`executables`), else compiled now."""
    from planner.profiling.compile import compile_onnx_for
    from planner.profiling.export import export_artifact
    from planner.profiling.tune import tuning_dir as tuning_dir_of

    tuning_dir = tuning_dir_of(target)
    key = artifact_key(onnx_path, shapes, target, tuning_dir)
    directory = artifact_dir() / target.name
    for suffix in (".so", ".tar"):
        hit = directory / f"{key}{suffix}"
        if hit.is_file():
            return hit, None if suffix == ".so" else f"{hit.name} holds objects to link on the device"
    ex = (executables or {}).get(key) or compile_onnx_for(onnx_path, shapes, target, tuning_dir=tuning_dir)
    staging = directory / f".{key}.{os.getpid()}"
    path, note = export_artifact(ex, target, staging, key)
    final = directory / path.name
    os.replace(path, final)  # atomic: concurrent runs never see half a library
    shutil.rmtree(staging, ignore_errors=True)
    return final, note


def copy_library(onnx_path: Path, shapes: dict[str, list[int]], target: Target, dest_dir: Path, stem: str,
                 executables: Mapping[str, Any] | None = None) -> tuple[Path, str | None]:
    """The cached library copied into a bundle as `<stem>.so` (or `.tar`)."""
    src, note = compiled_library(onnx_path, shapes, target, executables)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{stem}{src.suffix}"
    shutil.copy2(src, dest)
    return dest, note
