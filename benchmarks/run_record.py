"""What the benchmarks of ONNX Runtime sessions on this machine (ort_spinning, core_sharing) record
beside their numbers, and where they write them: benchmarks/results/<name>.{json,md}, or
/tmp/<name>_quick.{json,md} for a --quick run. The scripts put the project on sys.path first."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ort_machine() -> dict:
    """CPU, cores, kernel, onnxruntime, commit, the UTC time and the 1-minute load average now."""
    import onnxruntime

    from planner.app.targets import cpu_model

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "kernel": platform.release(),
            "onnxruntime": onnxruntime.__version__, "commit": commit,
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "loadavg_start": round(os.getloadavg()[0], 2)}


def ended(machine: dict) -> dict:
    """The machine record with the load average at the end of the run."""
    return {**machine, "loadavg_end": round(os.getloadavg()[0], 2)}


def write(name: str, quick: bool, record: dict, markdown: str) -> None:
    prefix = f"/tmp/{name}_quick" if quick else str(ROOT / "benchmarks" / "results" / name)
    Path(prefix + ".json").write_text(json.dumps(record, indent=2))
    Path(prefix + ".md").write_text(markdown)
    print(markdown)
    print(f"wrote {prefix}.json and {prefix}.md")
