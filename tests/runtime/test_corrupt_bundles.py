"""A damaged or hostile bundle is refused before anything is loaded, with one line naming the file:
invalid YAML, a format this runtime does not read, an artifact path leading out of the bundle,
an invalid field (named once, with its key) and a file whose sha256 is not the one written at
solve time (a library truncated to 1 KB would otherwise crash the site with SIGBUS)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from planner_runtime.bundle_format import Bundle, BundleError
from tests import ROOT
from tests.runtime import fanapp

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, timeout=60, cwd=ROOT, env=ENV)


def serve(bundle_dir: Path) -> subprocess.CompletedProcess:
    # port 1: never reached, every case is refused before listening
    return _run("planner_runtime", "serve", str(bundle_dir), "--host", "127.0.0.1", "--port", "1")


def _one_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    return errors[0]


@pytest.fixture
def echo(tmp_path) -> Path:
    """A one-site bundle (a python step), written as `planner solve` writes it."""
    return fanapp.echo_bundles(tmp_path / "out", {"entry": 1}, nbytes=16) / "sites" / "entry"


def _edit(site: Path, change) -> Path:
    path = site / "bundle.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_an_intact_bundle_reads_with_its_checksums(echo):
    b = Bundle.read(echo)
    assert b.checksums == {"echo.py": hashlib.sha256((echo / "echo.py").read_bytes()).hexdigest()}


def test_invalid_yaml_names_the_file_and_the_line(echo):
    (echo / "bundle.yaml").write_text("format: 4\napp: echo\nsites: {entry: [\n  - x\n")
    line = _one_error(serve(echo))
    assert f"{echo / 'bundle.yaml'}: not valid YAML:" in line and "line 4" in line, line
    assert "ScannerError" not in line and "ParserError" not in line


@pytest.mark.parametrize("fmt, words", [(99, "format 99 (not a format this runtime reads)"),
                                        (1, "format 1 (written by an older planner, without artifact checksums)"),
                                        (2, "format 2 (written by an older planner, without node instances and "
                                            "site replicas)"),
                                        (3, "format 3 (written by an older planner, without ONNX Runtime providers "
                                            "and threads)")])
def test_other_formats_are_refused_naming_the_one_read(echo, fmt, words):
    _edit(echo, lambda d: d.update(format=fmt))
    line = _one_error(serve(echo))
    assert words in line and "reads format 4" in line and "re-run `planner solve`" in line, line


@pytest.mark.parametrize("field, path", [("artifact", "../../etc/passwd"), ("artifact", "/etc/passwd"),
                                         ("checksums", "../outside.py")])
def test_paths_leading_out_of_the_bundle_are_refused(echo, field, path):
    def change(d):
        if field == "artifact":
            d["nodes"]["echo"]["artifact"] = path
            d["checksums"] = {path: "0" * 64}
        else:
            d["checksums"][path] = "0" * 64

    _edit(echo, change)
    with pytest.raises(BundleError, match="is outside the bundle") as exc:
        Bundle.read(echo)
    assert f"{path!r}" in str(exc.value)
    line = _one_error(serve(echo))
    assert "is outside the bundle" in line and ("nodes.echo.artifact" in line or "checksums." in line), line


def test_an_invalid_field_is_named_once_with_its_key(echo):
    _edit(echo, lambda d: d["runtime"].update(max_message_bytes=-1))
    for r in (serve(echo), _run("planner", "up", str(echo.parents[1]), "--for", "1")):
        line = _one_error(r)
        assert line.count("bundle.yaml") == 1, line
        assert "runtime.max_message_bytes: Input should be greater than 0" in line, line


def test_an_artifact_without_a_checksum_is_refused(echo):
    _edit(echo, lambda d: d.update(checksums={}))
    with pytest.raises(BundleError, match=r"nodes\.echo\.artifact: echo\.py has no entry in `checksums`"):
        Bundle.read(echo)


def test_a_truncated_library_is_refused_naming_it_not_a_crash(tmp_path_factory, tmp_path):
    _, libs = fanapp.cached_models(tmp_path_factory.getbasetemp().parent / "runtime-models")
    out = fanapp.write_bundles(tmp_path / "out", {"edge": 1, "mec": 2, "cloud": 3}, libs)
    lib = out / "sites" / "edge" / "a.so"
    lib.write_bytes(lib.read_bytes()[:1024])  # a copy cut short
    line = _one_error(serve(out / "sites" / "edge"))
    assert f"{lib}: its sha256 is not the one in" in line, line
    r = _run("planner", "up", str(out), "--for", "1")  # up refuses before starting any site
    assert r.returncode == 2 and f"{lib}: its sha256" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (out / "logs").exists()
