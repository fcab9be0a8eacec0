"""Targets, compiling for x86 / aarch64 / CUDA, exported artifacts, and the roofline estimator."""

from __future__ import annotations

import platform
import shutil
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest

from planner.profiling.compile import Kernel, compile_analyzed, tvm_target
from planner.profiling.export import export_artifact
from planner.profiling.estimate import cpu_scale, estimate_ms, roofline_s, scale_factor
from planner.profiling.onnx_import import import_onnx
from planner.app.targets import get_target, target_from_inline
from tests.conftest import require_system
from tests.profiling.onnx_models import mlp

CROSS_LINKER = shutil.which("aarch64-linux-gnu-gcc")
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}  # e_machine of the ELF header


def elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", data[:4]
    return int.from_bytes(data[18:20], "little")


def test_tvm_target_fills_host_cpu_and_gpu_host_part():
    host = tvm_target(get_target("host"))
    assert host.kind.name == "llvm" and str(host.attrs["mcpu"])
    pi = tvm_target(get_target("rpi5"))
    assert str(pi.attrs["mtriple"]).startswith("aarch64")
    orin = tvm_target(get_target("jetson-orin-nano"))
    assert orin.kind.name == "cuda" and str(orin.host.attrs["mtriple"]).startswith("aarch64")


@pytest.mark.parametrize("name", ["host", "rpi5", "jetson-orin-nano"])
def test_compile_and_export_for_each_arch(tmp_path, name):
    mod = import_onnx(mlp(tmp_path / "m.onnx"), {"x": [2, 16]})
    target = get_target(name)
    c = compile_analyzed(mod, target)
    assert [k.name for k in c.kernels] and sum(k.flops for k in c.kernels) >= 2 * 2 * 16 * 32
    assert c.params_bytes == (16 * 32 + 32 + 32 * 8) * 4
    assert c.activation_bytes >= 2 * 8 * 4  # at least the output
    if target.cpu_arch != platform.machine():  # a `.tar` of objects without it: see the test below
        require_system("the aarch64 cross linker (aarch64-linux-gnu-gcc)", CROSS_LINKER is not None,
                       "`make system` as root or `apt-get install gcc-aarch64-linux-gnu`")
    path, note = export_artifact(c.executable, target, tmp_path / "out", "m")
    assert (path.suffix, note) == (".so", None)
    assert elf_machine(path.read_bytes()) == ELF_MACHINE[target.cpu_arch]


def test_export_without_cross_linker_writes_aarch64_objects_and_says_so(tmp_path, monkeypatch):
    import planner.profiling.export as export

    monkeypatch.setattr(export, "shutil", SimpleNamespace(which=lambda name: None))  # no linker on PATH
    target = get_target("rpi5")
    c = compile_analyzed(import_onnx(mlp(tmp_path / "m.onnx"), {"x": [2, 16]}), target)
    path, note = export_artifact(c.executable, target, tmp_path / "out", "m")
    assert path.suffix == ".tar" and "no cross linker for aarch64" in note
    with tarfile.open(path) as tar:
        objects = [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".o")]
    assert objects and {elf_machine(o) for o in objects} == {ELF_MACHINE["aarch64"]}


def _fake(peak, bw, name="t"):
    return target_from_inline({"name": name, "tvm_target": {"kind": "llvm"}, "peak_gflops": peak,
                               "mem_bandwidth_gbs": bw, "memory_mb": 1000})


def test_roofline_scaling_is_consistent():
    kernels = [Kernel("conv", flops=2e9, nbytes=1e6), Kernel("add", flops=1e6, nbytes=4e7, calls=2)]
    host = _fake(100, 10, "host")
    assert scale_factor(kernels, host, host) == pytest.approx(1.0)
    assert estimate_ms(50.0, kernels, host, _fake(50, 5)) == pytest.approx(100.0)  # both halved: 2x
    # half the compute, same bandwidth: only the compute-bound part doubles
    conv, add = 2e9 / 100e9, 2 * 4e7 / 10e9
    assert scale_factor(kernels, host, _fake(50, 10)) == pytest.approx((2 * conv + add) / (conv + add))
    assert roofline_s(kernels, host) == pytest.approx(conv + add)
    assert cpu_scale(host, _fake(200, 10)) == pytest.approx(0.5)


def test_measurement_is_the_median_of_its_repeats(tmp_path):
    from planner.profiling.measure import measure_tvm

    c = compile_analyzed(import_onnx(mlp(tmp_path / "m.onnx"), {"x": [2, 16]}), get_target("host"))
    t = measure_tvm(c.executable, [np.ones((2, 16), np.float32)])
    assert len(t.repeats_ms) == 5 and min(t.repeats_ms) > 0
    assert t.median_ms == sorted(t.repeats_ms)[2]  # the middle one of five


def test_untuned_code_scales_by_one_cores_share():
    kernels = [Kernel("conv", flops=2e9, nbytes=1e3)]
    host = target_from_inline({"name": "host", "tvm_target": {"kind": "llvm", "num-cores": 2}, "peak_gflops": 100,
                               "mem_bandwidth_gbs": 10, "memory_mb": 1000})
    quad = target_from_inline({"name": "quad", "tvm_target": {"kind": "llvm", "num-cores": 4}, "peak_gflops": 100,
                               "mem_bandwidth_gbs": 10, "memory_mb": 1000})
    assert scale_factor(kernels, host, quad) == pytest.approx(1.0)  # parallel code: same peak
    assert scale_factor(kernels, host, quad, single_thread=True) == pytest.approx(2.0)  # one core of 4 vs of 2


def test_cpu_default_schedule_vectorizes_and_stays_correct(tmp_path):
    """Untuned CPU kernels get the default schedule (vectorized inner loops; parallel outer
    loops for big ones) and give the same numbers as TVM's plain loops and ONNX Runtime."""
    from tvm import tirx

    from planner.profiling.compile import fused_module
    from planner.profiling.cpu_schedule import cpu_default_schedule
    from planner.profiling.measure import ort_session, run_ort, run_tvm

    path = mlp(tmp_path / "m.onnx", n_in=64, n_hidden=64, n_out=32)
    mod = import_onnx(path, {"x": [16, 64]})
    host = get_target("host")
    with tvm_target(host):
        scheduled = cpu_default_schedule(fused_module(mod, host))
    text = "\n".join(str(f) for _, f in scheduled.functions_items() if isinstance(f, tirx.PrimFunc))
    assert "T.vectorized" in text
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    want = run_ort(ort_session(path.read_bytes()), {"x": x})[0]
    for mode in ("default", "none"):
        [got] = run_tvm(compile_analyzed(mod, host, untuned_schedule=mode).executable, [x])
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
