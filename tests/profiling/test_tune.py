"""MetaSchedule tuning on a tiny model: the database lands in <tuning root>/<target>/, later
compiles apply it, and the profile says `tuned:<K>/<N>` (K of its N kernels tuned)."""

from __future__ import annotations

import numpy as np
import pytest

from planner.profiling.compile import compile_analyzed
from planner.profiling.measure import ort_session, run_ort, run_tvm
from planner.profiling.onnx_import import import_onnx
from planner.profiling.tune import record_count, tune, tuning_dir, tuning_state
from planner.app.targets import get_target
from tests.profiling.onnx_models import mlp
from tests.profiling.tiny_app import run, write_app


@pytest.mark.slow
@pytest.mark.timeout(600)  # a hang guard, not a speed check
def test_tune_then_compile_applies_the_database(tmp_path):
    host = get_target("host")
    path = mlp(tmp_path / "m.onnx", n_in=64, n_hidden=64, n_out=32)
    mod = import_onnx(path, {"x": [4, 64]})
    d = tuning_dir(host, tmp_path / "tuning")
    assert tuning_state(d) == "untuned"
    added = tune(mod, host, d, trials=4, cost_model="random")  # ~30 s on an idle 2-core machine
    assert added > 0 and record_count(d) == added
    assert tuning_state(d) == f"tuned:{added}"
    assert (d / "database_workload.json").is_file()

    c = compile_analyzed(mod, host, d)
    assert c.tuned
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    [got] = run_tvm(c.executable, [x])
    [want] = run_ort(ort_session(path.read_bytes()), {"x": x})
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_profile_with_tune_trials_reports_tuned_state(tmp_path):
    path = write_app(tmp_path)
    table, stats = run(path, tmp_path / "cache", tune_trials=2)
    here = table.get("mlp", "here")
    assert stats["counters"].tunes == 1
    assert here.provenance == "measured" and here.tuning.startswith("tuned:")
    tuned, kernels = map(int, here.tuning.removeprefix("tuned:").split("/"))
    assert 1 <= tuned <= kernels  # this model's kernels with a record, not the database's size
    assert table.get("mlp", "pi").tuning == here.tuning  # estimated from the tuned host number
    # the database is part of the key: the next run (no tuning) hits the cache
    _, stats2 = run(path, tmp_path / "cache")
    assert stats2["counters"].compiles == 0 and stats2["counters"].measures == 0
