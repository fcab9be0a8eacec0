"""Compiled libraries kept between runs: an ONNX model compiled by TVM for one target is
reused as long as the file, its input shapes, the target, TVM and the tuning database are
the same (`planner run`, bundles and `--host-targets` fallbacks all compile the same way)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from planner.targets import Target

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "profiles" / "cache" / "artifacts"
TUNING_ROOT = Path(__file__).resolve().parents[2] / "profiles" / "tuning"


def artifact_dir() -> Path:
    env = os.environ.get("PLANNER_CACHE_DIR")
    return Path(env) / "artifacts" if env else DEFAULT_DIR


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _key(onnx_path: Path, shapes: dict[str, list[int]], target: Target, tuning_dir: Path) -> str:
    import tvm

    from planner.profiling.compile import tvm_target_dict

    records = tuning_dir / "database_tuning_record.json"
    parts = {
        "onnx": _file_digest(onnx_path),
        "shapes": shapes,
        "target": tvm_target_dict(target),
        "tvm": tvm.__version__,
        "tuning": _file_digest(records) if records.is_file() else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def compiled_library(onnx_path: Path, shapes: dict[str, list[int]], target: Target) -> tuple[Path, str | None]:
    """The library of the model for the target, compiled now or taken from the cache."""
    from planner.profiling.compile import compile_onnx_for, export_artifact

    tuning_dir = TUNING_ROOT / target.name
    key = _key(onnx_path, shapes, target, tuning_dir)
    cache = artifact_dir() / target.name
    for suffix in (".so", ".tar"):
        hit = cache / f"{key}{suffix}"
        if hit.is_file():
            return hit, None if suffix == ".so" else f"{hit.name} holds objects to link on the device"
    ex = compile_onnx_for(onnx_path, shapes, target, tuning_dir=tuning_dir)
    staging = cache / f".{key}.{os.getpid()}"
    path, note = export_artifact(ex, target, staging, key)
    final = cache / path.name
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
