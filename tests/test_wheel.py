"""The wheel is what a user installs: built from this checkout, it holds the hardware catalog
and the runtime, and the installed `planner` runs from another directory with no checkout
on its path (`planner targets`, `planner solve` on an example)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests import CAMERA, ROOT

CATALOG = sorted(p.name for p in (ROOT / "profiles" / "targets").glob("*.yaml"))
CALIBRATIONS = sorted(p.name for p in (ROOT / "profiles" / "calibration").glob("*.yaml"))
VERIFICATIONS = sorted(p.name for p in (ROOT / "profiles" / "verification").glob("*.yaml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy of what the wheel is made of, so that its build/ and egg-info stay out of
    # the checkout (the catalog link, planner/app/catalog -> profiles/targets, copied as a link; the
    # shipped calibrations and verification records likewise)
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in ("planner", "runtime", "profiles/targets", "profiles/calibration", "profiles/verification"):
        shutil.copytree(ROOT / folder, src / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                        "-w", str(out), str(src)], capture_output=True, text=True, timeout=300, cwd=src)
    assert r.returncode == 0, r.stderr[-2000:]
    [found] = out.glob("ensemble_planner-*.whl")
    return found


def test_the_wheel_holds_the_catalog_and_the_runtime(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert CATALOG and sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("planner/app/catalog/")) == CATALOG
    assert CALIBRATIONS and CALIBRATIONS == sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("planner/profiling/calibrations/"))
    assert VERIFICATIONS and VERIFICATIONS == sorted(n.rsplit("/", 1)[1] for n in names
                                                     if n.startswith("planner/profiling/verifications/"))
    assert "planner_runtime/server.py" in names and "planner_runtime/proto/grpc_predict_v2_pb2.py" in names
    assert "planner/cli/main.py" in names
    # only the two packages: no tests, no checkout folders, no top-level `runtime`
    assert {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")} == \
        {"planner", "planner_runtime"}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "planner = planner.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_planner_runs_from_another_directory(wheel, tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "PLANNER_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    planner = [sys.executable, str(site / "bin" / "planner")]

    def run(*args):
        return subprocess.run([*planner, *args], capture_output=True, text=True, cwd=work, env=env, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import planner, planner_runtime; print(planner.__file__); "
                            "print(planner_runtime.__file__)"], capture_output=True, text=True, cwd=work, env=env)
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout  # not the checkout
    r = run("targets", "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(f"{name}.yaml" for name in json.loads(r.stdout)) == CATALOG
    r = run("solve", str(CAMERA), "-o", "out", "--json", "--time-limit", "20")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["status"] == "OPTIMAL" and set(plan["placement"]) == {"detector", "plate-reader", "reid", "fusion"}
    assert (work / "out" / "plan.json").is_file() and (work / "out" / "report.html").is_file()
