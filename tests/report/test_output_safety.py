"""Nothing of the user's is lost to an output directory: `-o` refuses what the planner did not
write, a failed re-solve keeps the last good OUT byte for byte, an interrupted write is cleaned
up (or put back) by the next run, and outputs get the umask's modes."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli
from tests import CAMERA
from tests.step_app import write_step_app


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under root, hidden ones too: its mode and, for a file, its bytes."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out


def planner(*args) -> tuple[int, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in r.output
    return r.exit_code, " ".join(r.output.split())  # the console may wrap long lines


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def project(tmp_path, monkeypatch, isolated_dirs):
    """A user's folder holding the smart-camera app and a file of theirs; the current directory."""
    proj = tmp_path / "work" / "proj"
    proj.mkdir(parents=True)
    (proj / "app.yaml").write_bytes(CAMERA.read_bytes())
    (proj / "notes.txt").write_text("mine\n")
    (proj / "data").mkdir()
    (proj / "data" / "table.csv").write_text("a,b\n")
    monkeypatch.chdir(proj)
    return proj


@pytest.mark.parametrize("out, why", [
    (".", "is the current directory"),
    ("{proj}", "is the current directory"),
    ("..", "holds the current directory"),
    ("notes.txt", "exists and is not a directory"),
    ("data", "is not empty and was not written by the planner"),
    ("app.yaml/out", "app.yaml is not a directory"),
])
def test_solve_refuses_an_output_that_holds_user_data(project, out, why):
    out = out.format(proj=project)
    before = tree(project.parent)
    code, text = planner("solve", "app.yaml", "-o", out)
    assert code == 2, text
    assert text.count("error:") == 1 and why in text
    assert os.path.abspath(project / out) in text
    assert tree(project.parent) == before  # nothing deleted, replaced or left behind


def test_outputs_never_hold_the_app_or_home(project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "work" / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = tree(tmp_path / "work")
    code, text = planner("solve", project / "app.yaml", "-o", project)
    assert code == 2 and f"holds the app's own file {project / 'app.yaml'}" in text, text
    home = tmp_path / "work" / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    code, text = planner("solve", project / "app.yaml", "-o", home)
    assert code == 2 and "is your home directory" in text, text
    home.rmdir()
    assert tree(tmp_path / "work") == before
    for command in (["pareto", project / "app.yaml"], ["sweep", project / "app.yaml", "--set", "sources.video.rate_rps=1,2"]):
        code, text = planner(*command, "-o", project / "data")
        assert code == 2 and "was not written by the planner" in text, text
    assert tree(tmp_path / "work") == before


def test_solve_replaces_its_own_output_but_not_files_put_in_it(project):
    out = project / "out"
    assert planner("solve", "app.yaml", "-o", out)[0] == 0
    assert planner("pareto", "app.yaml", "-o", out)[0] == 0  # adds its files to the planner's OUT
    assert planner("solve", "app.yaml", "-o", out)[0] == 0
    assert (out / "plan.json").is_file() and (out / ".planner-output").is_file()
    (out / "mine.txt").write_text("keep me")
    before = tree(project)
    code, text = planner("solve", "app.yaml", "-o", out)
    assert code == 2 and "holds files the planner did not write (mine.txt)" in text, text
    assert tree(project) == before
    # an OUT written before there was a marker is the planner's when it holds only the planner's files
    (out / "mine.txt").unlink()
    (out / ".planner-output").unlink()
    assert planner("solve", "app.yaml", "-o", out)[0] == 0


def test_sweep_and_pareto_write_only_into_new_or_planner_directories(project):
    theirs = project / "data" / "sweep.json"
    theirs.write_text("their own sweep.json")
    sweep = ["sweep", "app.yaml", "--set", "sources.video.rate_rps=1,2"]
    assert planner(*sweep, "-o", project / "data")[0] == 2
    assert theirs.read_text() == "their own sweep.json"
    out = project / "sweeps"
    assert planner(*sweep, "-o", out)[0] == 0
    assert planner(*sweep, "-o", out)[0] == 0  # its own directory: written again
    assert {p.name for p in out.iterdir()} == {".planner-output", "sweep.json", "sweep.md", "sweep.png", "sweep.svg"}


def test_a_failed_resolve_keeps_the_last_good_output(tmp_path, isolated_dirs, monkeypatch):
    from planner import pipeline

    app = write_step_app(tmp_path / "work" / "app")
    out = tmp_path / "work" / "out"
    code, text = planner("solve", app, "-o", out)
    assert code == 0, text
    assert (out / "sites" / "here" / "bundle.yaml").is_file() and (out / "deploy" / "compose.yaml").is_file()
    before = tree(tmp_path / "work")

    code, text = planner("solve", app, "-o", out, "--set", "constraints.latency_ms=1")  # infeasible: exit 3
    assert code == 3 and f"{out} kept as it was" in text and "wrote" not in text, text
    assert tree(tmp_path / "work") == before

    solve = pipeline.solve_prepared  # a run out of time: no plan, exit 1
    monkeypatch.setattr(pipeline, "solve_prepared", lambda prepared, config: solve(prepared, config).model_copy(
        update={"status": "UNKNOWN", "placement": {}}))
    code, text = planner("solve", app, "-o", out)
    assert code == 1 and "no plan found within --time-limit" in text, text
    assert tree(tmp_path / "work") == before
    monkeypatch.setattr(pipeline, "solve_prepared", solve)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "write_bundles", broken)  # any error while writing
    code, text = planner("solve", app, "-o", out)
    assert code == 1 and "disk full" in text, text
    assert tree(tmp_path / "work") == before


def test_a_failed_run_still_replaces_a_failed_output(tmp_path, isolated_dirs):
    app = write_step_app(tmp_path / "app")
    out = tmp_path / "out"
    assert planner("solve", app, "-o", out, "--set", "constraints.latency_ms=1")[0] == 3
    assert '"latency_ms": 1.0' in (out / "plan.json").read_text()
    assert planner("solve", app, "-o", out, "--set", "constraints.latency_ms=2")[0] == 3
    assert '"latency_ms": 2.0' in (out / "plan.json").read_text() and (out / "report.md").is_file()


def test_interrupted_writes_are_cleaned_up_or_put_back(tmp_path, isolated_dirs):
    app = write_step_app(tmp_path / "app")
    work = tmp_path / "work"
    out = work / "out"
    assert planner("solve", app, "-o", out)[0] == 0
    good = tree(out)
    gone, alive = dead_pid(), os.getpid()
    # killed between its two renames: OUT missing, the last good one in .out.old-PID
    os.replace(out, work / f".out.old-{gone}")
    stale = [f".out.staging-{gone}-abcd_123", f".out.staging-{dead_pid()}-efgh_456"]
    for name in stale:
        (work / name).mkdir()
        (work / name / "plan.json").write_text("{}")
    (out.parent / ".out.old-x").mkdir()  # not our naming: a user's
    kept = [".out.old-x", f".out.staging-{alive}-abcd_123", f".other.staging-{gone}-abcd_123"]
    for name in kept[1:]:
        (work / name).mkdir()
    # a run that finds no plan must keep the good OUT it puts back
    assert planner("solve", app, "-o", out, "--set", "constraints.latency_ms=1")[0] == 3
    assert tree(out) == good
    assert sorted(p.name for p in work.iterdir()) == sorted(["out", *kept])
    # leftovers inside OUT of an interrupted publish or atomic write are the planner's own
    (out / f".planner-publish-{gone}-abcd_123").mkdir()
    (out / f".report.md.tmp-{gone}-abcd_123").write_text("half")
    assert planner("pareto", app, "-o", out)[0] == 0
    assert not [p.name for p in out.iterdir() if f"-{gone}-" in p.name]


def test_outputs_get_the_umask_modes(tmp_path, isolated_dirs):
    app = write_step_app(tmp_path / "app")
    out = tmp_path / "out"
    old = os.umask(0o027)
    try:
        assert planner("solve", app, "-o", out)[0] == 0
        assert planner("pareto", app, "-o", out)[0] == 0
        assert planner("sweep", app, "--set", "sources.cam.rate_rps=1,2", "-o", tmp_path / "sweep")[0] == 0
    finally:
        os.umask(old)
    written = [out, *out.rglob("*"), tmp_path / "sweep", *(tmp_path / "sweep").iterdir()]
    for p in written:
        if p.name == "steps.py":  # copied with the user's file's own mode
            continue
        expected = 0o750 if p.is_dir() else 0o640
        assert stat.S_IMODE(p.stat().st_mode) == expected, (p, oct(p.stat().st_mode))
    assert {"report.md", "plan.json", "pareto.svg", "bundle.yaml"} <= {p.name for p in written}
