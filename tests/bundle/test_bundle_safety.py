"""What `planner solve` writes into OUT/sites stays inside it: a python step named by a path
outside the app's directory (`../..` or absolute) is read from there but bundled inside, and
bundle.yaml records the sha256 of every file it ships (the runtime checks them before loading)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from planner_runtime.bundle_format import FORMAT_VERSION, Bundle
from planner_runtime.nodes import make_runner
from tests import ROOT

STEP = "import numpy as np\n\n\ndef f(y):\n    return {'z': (y * 2).astype(np.float32)}\n"


def _app(step: str) -> str:
    return yaml.safe_dump({
        "name": "py", "sites": {"here": {"tier": "edge", "target": "host"}},
        "models": {"step": {"python": step, "inputs": {"y": [4]}}},
        "sources": {"cam": {"site": "here", "rate_rps": 1}}, "sinks": {"out": {"site": "here"}},
        "flows": [{"from": "cam", "to": "step"}, {"from": "step", "to": "out"}]})


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_step_outside_the_app_dir_is_bundled_inside_out(isolated_dirs, how):
    tmp = isolated_dirs
    (tmp / "pkg").mkdir()
    (tmp / "pkg" / "step.py").write_text(STEP)
    app_dir = tmp / "a" / "b" / "c" / "d"
    app_dir.mkdir(parents=True)
    step = "../../../../pkg/step.py:f" if how == "relative" else f"{tmp / 'pkg' / 'step.py'}:f"
    (app_dir / "app.yaml").write_text(_app(step))
    before = _tree(tmp)
    r = subprocess.run([sys.executable, "-m", "planner", "solve", "app.yaml", "-o", "o1/out"], cwd=app_dir,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtime")])})
    assert r.returncode == 0, r.stdout + r.stderr
    out = app_dir / "o1" / "out"
    # nothing new anywhere but under OUT (and the profile cache of this test)
    new = {p for p in _tree(tmp) - before if not p.startswith(("a/b/c/d/o1/out", "env-cache", "env-tuning"))}
    assert new == {"a/b/c/d/o1"}, new
    site = out / "sites" / "here"
    bundle = Bundle.read(site)
    spec = bundle.nodes["step"]
    assert spec.artifact == "steps/_outside/step/step.py"
    assert (site / spec.artifact).read_text() == STEP
    z = make_runner("step", spec, site)({"y": np.arange(4, dtype=np.float32)})["z"]
    np.testing.assert_array_equal(z, np.arange(4, dtype=np.float32) * 2)


def test_solve_writes_the_checksum_of_every_file_of_a_bundle(isolated_dirs):
    tmp = isolated_dirs
    (tmp / "shared").mkdir()
    (tmp / "shared" / "step.py").write_text(STEP)
    (tmp / "shared" / "table.txt").write_text("1 2 3\n")
    (tmp / "app" / "sub").mkdir(parents=True)
    (tmp / "app" / "lib").symlink_to(tmp / "shared")  # a linked folder inside the app dir: inside, same layout
    app = yaml.safe_load(_app("sub/../lib/step.py:f"))  # a path with `..` that stays inside the app dir
    app["models"]["step"]["files"] = ["lib/table.txt"]
    (tmp / "app" / "app.yaml").write_text(yaml.safe_dump(app))
    r = subprocess.run([sys.executable, "-m", "planner", "solve", str(tmp / "app" / "app.yaml"), "-o",
                        str(tmp / "out")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    site = tmp / "out" / "sites" / "here"
    data = yaml.safe_load((site / "bundle.yaml").read_text())
    assert data["format"] == FORMAT_VERSION == 4
    assert data["nodes"]["step"]["artifact"] == "steps/lib/step.py"  # its place beside app.yaml, `..` resolved
    files = {p.relative_to(site).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in site.rglob("*") if p.is_file() and p.name != "bundle.yaml"}
    assert set(files) == {"steps/lib/step.py", "steps/lib/table.txt"}
    assert data["checksums"] == files
