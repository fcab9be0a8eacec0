"""A build recorded as failing verification on real hardware (profiles/verification/) is excluded
on sites of that target kind, with the record's reason; not on other kinds, not for other files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.profiling.hardware_checks import all_records
from planner_runtime.digest import sha256_file
from tests.profiling.onnx_models import mlp
from tests.profiling.tiny_app import chain_app, run

REC_SHA = "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"  # examples/ocr rec


def gpu_app(tmp: Path) -> Path:
    """source -> m -> sink; m may run here (this host), on a Pi and on a g6-xlarge (CUDA, an L4)."""
    onnx = mlp(tmp / "mlp.onnx")
    return chain_app(tmp, {"onnx": onnx.name, "inputs": {"x": [1, 16]}},
                     {"here": {"tier": "edge", "target": "host"}, "pi": {"tier": "base-station", "target": "rpi5"},
                      "gpu": {"tier": "cloud", "target": "g6-xlarge"}},
                     [("here", "pi", 100, 2), ("pi", "gpu", 1000, 10)], name="gpu")


def record(folder: Path, sha256: str, kind: str = "cuda", build: str = "tvm/fp32") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mine.yaml"
    path.write_text(yaml.safe_dump({"format": 1, "failures": [{
        "onnx_sha256": sha256, "model": "mlp.onnx", "build": build, "target_kind": kind,
        "result": "every output NaN", "measured_on": "a test GPU", "measured_at": "2026-11-29",
        "cause": "a test's", "source": "this test"}]}))
    return path


def test_a_recorded_failure_excludes_the_build_on_that_kind_only(tmp_path):
    app = gpu_app(tmp_path)
    path = record(tmp_path / "env-verification", sha256_file(tmp_path / "mlp.onnx"))
    table, _ = run(app, tmp_path / "cache")
    assert [e.build for e in table.builds("m", "gpu")] == ["onnxruntime/fp32"]  # ONNX Runtime is not recorded
    [ex] = table.excluded
    assert (ex.site, ex.build) == ("gpu", "tvm/fp32")
    assert ex.reason.startswith("verification failed on real hardware (a test GPU, 2026-11-29): every output NaN")
    assert "cause: a test's" in ex.reason and f"recorded in {path}" in ex.reason
    assert ex.profile.provenance == "estimated" and ex.profile.verified is False  # its numbers shown, never used
    assert any("tvm/fp32 excluded from site gpu (g6-xlarge)" in w for w in table.warnings)
    for site in ("here", "pi"):  # CPU targets: the record is about CUDA
        assert table.get("m", site, "tvm/fp32") is not None
    assert table.get("m", "here", "tvm/fp32").verified is True

    result = CliRunner().invoke(cli, ["profile", str(app), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "gpu" in line and "tvm/fp32" in line)
    assert "FAILED" in row and "no: verification failed on real" in row
    assert "'m' tvm/fp32 excluded from site gpu (g6-xlarge): verification failed on real hardware (a test GPU" \
        in " ".join(result.output.split())

    # the solver never gets it: the plan's warnings carry the exclusion into the report
    result = CliRunner().invoke(cli, ["solve", str(app), "--cache-dir", str(tmp_path / "cache"), "--json",
                                      "--no-bundles", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output[result.output.index("{"):])
    assert not any(p["site"] == "gpu" and p["engine"] == "tvm" for p in plan["profiles"])
    assert any("excluded from site gpu" in w and "real hardware" in w for w in plan["warnings"])


@pytest.mark.parametrize("sha256, kind, build", [
    (REC_SHA, "cuda", "tvm/fp32"),  # another file's record
    (None, "rocm", "tvm/fp32"),  # this file, another kind
    (None, "cuda", "onnxruntime/int8"),  # this file and kind, another build
])
def test_a_record_for_another_file_kind_or_build_excludes_nothing(tmp_path, sha256, kind, build):
    app = gpu_app(tmp_path)
    record(tmp_path / "env-verification", sha256 or sha256_file(tmp_path / "mlp.onnx"), kind, build)
    table, _ = run(app, tmp_path / "cache")
    assert not table.excluded
    assert table.get("m", "gpu", "tvm/fp32").verified is None  # estimated: unverified, as before


def test_a_cpu_kind_record_excludes_estimates_not_what_this_host_ran_and_verified(tmp_path):
    app = gpu_app(tmp_path)
    record(tmp_path / "env-verification", sha256_file(tmp_path / "mlp.onnx"), "llvm")
    table, _ = run(app, tmp_path / "cache")
    assert [(x.site, x.build) for x in table.excluded] == [("pi", "tvm/fp32")]
    assert table.get("m", "here", "tvm/fp32").verified is True  # checked here: this host's own run decides


def test_the_shipped_record_is_rec_on_cuda_and_a_bad_record_file_is_named(tmp_path):
    [rec] = [r for r in all_records() if r.path == "profiles/verification/nvidia-h200.yaml"]
    assert (rec.failure.onnx_sha256, rec.failure.build, rec.failure.target_kind) == (REC_SHA, "tvm/fp32", "cuda")
    assert "NaN" in rec.reason and "gpu_math" in rec.reason
    bad = tmp_path / "env-verification" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("format: 1\nfailures:\n- onnx_sha256: abc\n")
    app = gpu_app(tmp_path)
    result = CliRunner().invoke(cli, ["profile", str(app), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2
    assert str(bad) in result.output and "not a verification record file: failures.0" in " ".join(result.output.split())
