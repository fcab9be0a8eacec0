"""A python step that calls sys.exit() (or raises another BaseException) while it is imported,
profiled, timed or run is one error naming the model and the step's file, never the planner
ending silently with the step's exit code."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli
from tests.step_app import write_step_app

HEAD = "import sys\nimport numpy as np\n"
OK = "    return {'y': (x * 2).astype(np.float32)}\n"
STEPS = {
    "exits when called": (HEAD + "def f(x):\n    sys.exit(3)\n", "SystemExit(3)"),
    "exits 0 on import": (HEAD + "sys.exit(0)\ndef f(x):\n" + OK, "SystemExit(0)"),
    "raises SystemExit": (HEAD + "def f(x):\n    raise SystemExit('bye')\n", "SystemExit('bye')"),
    "exits when timed": (HEAD + "calls = []\ndef f(x):\n    calls.append(1)\n    if len(calls) > 1:\n"
                         "        sys.exit(4)\n" + OK, "SystemExit(4)"),
    "raises a BaseException": (HEAD + "class Stop(BaseException):\n    pass\ndef f(x):\n    raise Stop('halt')\n",
                               "Stop: halt"),
}


@pytest.mark.parametrize("case", list(STEPS))
def test_a_step_that_exits_while_profiled_is_an_input_error(tmp_path, isolated_dirs, case):
    step, what = STEPS[case]
    app = write_step_app(tmp_path / "app", step)
    r = CliRunner().invoke(cli, ["solve", str(app), "-o", str(tmp_path / "out"), "--no-bundles"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2, (r.exit_code, text)
    assert "Traceback" not in text and text.count("error:") == 1
    assert "model 's'" in text and str(app.parent / "steps.py") in text and what in text, text
    assert not (tmp_path / "out").exists()


def test_a_step_that_exits_while_run_names_its_node(tmp_path, isolated_dirs):
    # fine on the profiler's inputs (uniform in [0, 1)), exits on the user's
    step = HEAD + "def f(x):\n    if x.max() > 10:\n        sys.exit(5)\n" + OK
    app = write_step_app(tmp_path / "app", step)
    np.save(tmp_path / "big.npy", np.full((1, 4), 100, np.float32))
    np.save(tmp_path / "small.npy", np.full((1, 4), 1, np.float32))
    ok = CliRunner().invoke(cli, ["run", str(app), "--engine", "onnxruntime", "--input", f"cam={tmp_path / 'small.npy'}"])
    assert ok.exit_code == 0 and "[[2. 2. 2. 2.]]" in ok.output, ok.output
    r = CliRunner().invoke(cli, ["run", str(app), "--engine", "onnxruntime", "--input", f"cam={tmp_path / 'big.npy'}"])
    text = " ".join(r.output.split())
    assert r.exit_code == 1, (r.exit_code, text)
    assert "Traceback" not in text and "node 's'" in text and "steps.py" in text and "SystemExit(5)" in text, text


def test_a_step_that_exits_on_import_only_when_run_names_its_file(tmp_path, isolated_dirs, monkeypatch):
    # profiled once (and cached) while it imports fine; the run imports it again and it exits
    step = HEAD + "import os\nif os.environ.get('STEP_EXIT'):\n    sys.exit(7)\ndef f(x):\n" + OK
    app = write_step_app(tmp_path / "app", step)
    np.save(tmp_path / "x.npy", np.full((1, 4), 1, np.float32))
    run = ["run", str(app), "--input", f"cam={tmp_path / 'x.npy'}"]
    assert CliRunner().invoke(cli, run).exit_code == 0
    monkeypatch.setenv("STEP_EXIT", "1")
    r = CliRunner().invoke(cli, run)
    text = " ".join(r.output.split())
    assert r.exit_code == 1, (r.exit_code, text)
    assert "Traceback" not in text and "steps.py" in text and "SystemExit(7)" in text, text
