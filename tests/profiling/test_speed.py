"""The machine's own slow spells (planner.profiling.speed): the fastest probe kept beside the
cache, a measurement whose probe after it ran slow counted busy, and the profiler's
warning for it, through a real profile run."""

from __future__ import annotations

import json

import pytest

from planner.profiling import load, speed
from planner.profiling.speed import FILE, PROBE, SpeedReference
from tests.profiling.onnx_models import mlp
from tests.profiling.test_builds import one_model_app
from tests.profiling.tiny_app import run


def test_the_fastest_probe_is_the_reference_and_it_is_kept_beside_the_cache(tmp_path):
    ref = SpeedReference(tmp_path)
    assert ref.slow_factor(2.0) == 1.0  # the first probe is the reference
    assert ref.slow_factor(3.0) == pytest.approx(1.5) and ref.fastest_ms == 2.0
    assert ref.slow_factor(1.0) == 1.0 and ref.fastest_ms == 1.0  # a faster one replaces it
    saved = json.loads((tmp_path / FILE).read_text())
    assert saved["fastest_ms"] == 1.0 and saved["probe"] == PROBE
    again = SpeedReference(tmp_path)  # the next run starts from it
    assert again.fastest_ms == 1.0 and again.slow_factor(2.5) == pytest.approx(2.5)


@pytest.mark.parametrize("saved", [{"probe": "another probe", "machine": None, "fastest_ms": 0.001},
                                   {"probe": PROBE, "machine": "another machine", "fastest_ms": 0.001}, "not json"])
def test_a_reference_of_another_probe_or_machine_or_unreadable_is_not_used(tmp_path, saved):
    if isinstance(saved, dict) and saved["machine"] is None:
        saved["machine"] = SpeedReference(None).machine
    (tmp_path / FILE).write_text(saved if isinstance(saved, str) else json.dumps(saved))
    ref = SpeedReference(tmp_path)
    assert ref.fastest_ms is None and ref.slow_factor(4.0) == 1.0


def test_slow_probes_make_a_measurement_busy_and_the_faster_one_is_kept(monkeypatch):
    assert load.Load(0.1, 0.0, 1.0, slow_factor=1.4).busy_reason(2) is None
    assert "1.6x slower" in load.Load(0.1, 0.0, 1.0, slow_factor=1.6).busy_reason(2)
    probes = iter([2.0, 4.2, 2.1])  # quiet; then a spell; then over again
    monkeypatch.setattr(load, "probe_ms", lambda: next(probes))
    # nothing else busy, whatever this machine is doing now: only the probe tells
    monkeypatch.setattr(load, "_load_per_core", lambda cores: 0.1)
    monkeypatch.setattr(load, "machine_cpu_times", lambda: None)
    slept = []
    monkeypatch.setattr(load.time, "sleep", slept.append)
    ref = SpeedReference(None)
    value, kept, reason = load.quietest(lambda: "first", cores=2, wait_s=0, speed=ref)
    assert kept.slow_factor == 1.0 and reason is None
    runs = iter(["in the spell", "after it"])
    value, kept, reason = load.quietest(lambda: next(runs), cores=2, wait_s=9, speed=ref)
    assert slept == [9] and value == "after it" and kept.slow_factor == pytest.approx(1.05) and reason is None


def test_a_real_probe_follows_a_real_measurement(tmp_path):
    ref = SpeedReference(tmp_path)
    _, got = load.measure_with_load(lambda: sum(range(10_000)), 2, ref)
    assert got.slow_factor >= 1.0 and ref.fastest_ms > 0 and (tmp_path / FILE).is_file()
    assert speed.probe_ms() > 0


def test_the_profiler_warns_of_a_build_timed_in_a_slow_spell(tmp_path):
    """A reference no probe can reach (as if this machine had once run 1000x faster): every host
    measurement of the profile run counts as taken in a slow spell, is recorded so and warned
    about, naming the model."""
    cache = tmp_path / "cache"
    cache.mkdir()
    machine = SpeedReference(None).machine
    (cache / FILE).write_text(json.dumps({"probe": PROBE, "machine": machine, "fastest_ms": speed.probe_ms() / 1000}))
    path = one_model_app(tmp_path, mlp(tmp_path / "mlp.onnx"), [1, 16])
    table, _ = run(path, cache)
    warned = [w for w in table.warnings if "slow spell" in w]
    assert warned and all("'m'" in w for w in warned), table.warnings
    assert table.get("m", "here").slow_factor > 100
