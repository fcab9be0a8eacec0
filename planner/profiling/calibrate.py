"""`planner calibrate`: measure the fixed model set (planner.profiling.calibration_models) on a
target, this host or a device behind a TVM RPC tracker, and write the calibration file that
estimates for that target use (planner.profiling.calibration, calibrated).

Per model and engine: the measured time (median, measure.py's protocol), the roofline time on
the target (estimate.roofline_s over the kernels compiled for it) and their ratio, the
efficiency; per engine the fit (median) and its residuals (calibration_fit). TVM is measured
untuned (no tuning database applied: the state estimates of untuned models need); ONNX Runtime
only on this host (it does not run over TVM RPC). Threads: on this host, one per core for both
engines (TVM_NUM_THREADS set before the runtime starts its pool; the count it really used is
recorded); over RPC whatever the device's runtime uses, as it reports."""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from planner.app.targets import Target, cpu_model
from planner.errors import InputError, PlannerError
from planner.profiling import calibration_fit as fitmath
from planner.profiling.calibration import (FORMAT, Calibration, EngineFit, ModelFigures, identity)
from planner.profiling.calibration_models import MODELS, SET_VERSION, CalibrationModel
from planner_runtime.tvm_options import quiet_pool

METHOD = {
    "efficiency": "roofline_ms / measured_ms; roofline = sum over the compiled kernels of "
                  "calls x max(FLOPs / peak, bytes / bandwidth) at the target's figures (estimate.roofline_s)",
    "fit": "median of the models' efficiencies",
    "residual_pct": "error of the model's time predicted from the fit, as a symmetric factor in percent",
    "expected_error_pct": "largest leave-one-out residual (each model predicted from the median of the others)",
}


@dataclass(frozen=True)
class Rpc:
    tracker: str
    key: str


def _versions() -> dict[str, str]:
    out = {}
    for name, dist in (("tvm", "apache-tvm"), ("onnxruntime", "onnxruntime"), ("planner", "ensemble-planner")):
        try:
            out[name] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _load_per_core() -> float:
    return round(os.getloadavg()[0] / (os.cpu_count() or 1), 3)


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


def engine_fit(engine: str, tuning: str, threads: int | None, models: list[ModelFigures]) -> EngineFit:
    """The fit of one engine from its measured models, each given its residuals."""
    effs = [m.efficiency for m in models]
    res, loo = fitmath.residuals_pct(effs), fitmath.leave_one_out_pct(effs) or [None] * len(models)
    models = [m.model_copy(update={"residual_pct": _sig(r), "loo_residual_pct": None if lo is None else _sig(lo)})
              for m, r, lo in zip(models, res, loo)]
    err = fitmath.expected_error_pct(effs)
    return EngineFit(engine=engine, tuning=tuning, threads=threads, efficiency=_sig(fitmath.fitted(effs)),
                     expected_error_pct=None if err is None else _sig(err), models=models)


def figures(name: str, what: str, measured_ms: float, kernels, target: Target, load: float | None) -> ModelFigures:
    from planner.profiling.estimate import roofline_s

    roof = roofline_s(kernels, target) * 1e3
    gflop = sum(k.calls * k.flops for k in kernels) / 1e9
    return ModelFigures(name=name, what=what, measured_ms=_sig(measured_ms), roofline_ms=_sig(roof),
                        efficiency=_sig(fitmath.efficiency(roof, measured_ms)), gflop=_sig(gflop),
                        mbytes=_sig(sum(k.calls * k.nbytes for k in kernels) / 1e6),
                        achieved_gflops=_sig(gflop / measured_ms * 1e3), load_per_core=load)


class _Run:
    """One model at a time: compiled for the target, timed there with TVM (and with ONNX Runtime
    on this host)."""

    def __init__(self, target: Target, rpc: Rpc | None, threads: int):
        self.target, self.rpc, self.threads = target, rpc, threads
        self.remote = None
        if rpc is not None:
            from planner.profiling.rpc import RpcUnavailable, connect

            try:
                self.remote = connect(rpc.tracker, rpc.key)
            except RpcUnavailable as exc:
                raise PlannerError(f"cannot calibrate {target.name}: {exc}") from None

    def tvm_ms(self, name: str, ex, inputs) -> float:
        if self.remote is not None:
            from planner.profiling.rpc import measure_remote

            try:
                return measure_remote(self.remote, ex, self.target, inputs, stem=name).median_ms
            except Exception as exc:  # the device, the link or the server failed: say which run
                raise PlannerError(f"RPC {self.rpc.tracker} key {self.rpc.key}: measuring {name} failed: "
                                   f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1]}") from None
        from planner.profiling.measure import measure_tvm

        return measure_tvm(ex, inputs).median_ms

    def ort_ms(self, model, feed) -> float:
        from planner.profiling.measure import measure_ort, ort_session

        return measure_ort(ort_session(model.SerializeToString(), self.threads), feed).median_ms

    def tvm_threads(self) -> int | None:
        if self.remote is not None:
            from planner.profiling.rpc import remote_threads

            return remote_threads(self.remote)
        import tvm

        return int(tvm.runtime.num_threads())


def measure_set(target: Target, rpc: Rpc | None, threads: int, models: tuple[CalibrationModel, ...] = MODELS,
                step: Callable[[str], None] = lambda _: None) -> tuple[list[EngineFit], list[float]]:
    """Every model of the set on the target: the fits, and the load per core seen before each."""
    from planner.profiling.compile import compile_analyzed
    from planner.profiling.measure import sample_inputs
    from planner.profiling.onnx_import import fold_static, import_folded, io_signature

    run = _Run(target, rpc, threads)
    tvm_models, ort_models, loads = [], [], []
    for m in models:
        step(m.name)
        folded = fold_static(m.build(), m.shapes)
        compiled = compile_analyzed(import_folded(folded, file=m.name), target)
        feed = sample_inputs(io_signature(folded).inputs)
        loads.append(_load_per_core())
        tvm_models.append(figures(m.name, m.what, run.tvm_ms(m.name, compiled.executable, list(feed.values())),
                                  compiled.kernels, target, loads[-1]))
        if rpc is None:
            ort_models.append(figures(m.name, m.what, run.ort_ms(folded, feed), compiled.kernels, target,
                                      _load_per_core()))
    fits = [engine_fit("tvm", "untuned", run.tvm_threads(), tvm_models)]
    if ort_models:
        fits.append(engine_fit("onnxruntime", "untuned", threads, ort_models))
    return fits, loads


def _machine(target: Target, rpc: Rpc | None, threads: int | None) -> dict:
    here = {"cpu_model": cpu_model(), "cores": os.cpu_count()}
    if rpc is None:
        return {**here, "threads": threads, "where": "this host"}
    return {"where": f"TVM RPC tracker {rpc.tracker}, key {rpc.key}", "threads": threads,
            "cpu_model": None, "measured_from": here,
            "note": "the device's CPU model is not readable over TVM RPC"}


def calibrate(target: Target, out_dir: Path, *, rpc: Rpc | None = None, force: bool = False,
              step: Callable[[str], None] = lambda _: None) -> tuple[Path, Calibration]:
    """Measure the set on `target` and write `<out_dir>/<target name>.yaml`; an existing file
    is replaced only with `force` (a calibration is a measurement: never lost silently)."""
    if rpc is None and not target.is_host:  # measured here, it would be this host's figures under its name
        raise InputError(f"target {target.name!r} is not this host: measure it on the device, "
                         "with --rpc HOST:PORT --key KEY")
    path = Path(out_dir) / f"{target.name}.yaml"
    if path.exists() and not force:
        raise InputError("a calibration is already there; --force replaces it", file=str(path))
    threads = int(target.tvm_target.get("num-cores") or os.cpu_count() or 1)
    if rpc is None:  # read by TVM's runtime when it starts its thread pool (a fresh process)
        os.environ["TVM_NUM_THREADS"] = str(threads)
        quiet_pool()
    started, load_before = datetime.datetime.now(datetime.timezone.utc), _load_per_core()
    fits, loads = measure_set(target, rpc, threads, step=step)
    cal = Calibration(
        format=FORMAT, name=target.name, identity=identity(target),
        figures={"description": target.description, "tvm_target": target.tvm_target,
                 "peak_gflops": target.peak_gflops, "mem_bandwidth_gbs": target.mem_bandwidth_gbs,
                 "sources": target.sources},
        machine=_machine(target, rpc, fits[0].threads), measured_at=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        versions=_versions(), model_set=SET_VERSION, method=METHOD, fits=fits,
        load_per_core={"before": load_before, "max": max([load_before, *loads]), "after": _load_per_core()},
    )
    write(cal, path)
    return path, cal


def write(cal: Calibration, path: Path, header: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = header or (f"# Calibration of {cal.name}: written by `planner calibrate` ({cal.measured_at}).\n"
                        "# Estimates for this target divide its roofline time by the efficiency of their engine\n"
                        "# (README, Profiling). `method` says how each figure is computed.\n")
    body = yaml.safe_dump(cal.model_dump(mode="json", exclude_none=True), sort_keys=False, width=110)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(header + body, encoding="utf-8")
    tmp.replace(path)


def parse_rpc(address: str | None, key: str | None) -> Rpc | None:
    """--rpc HOST:PORT --key KEY, checked (both or neither)."""
    if address is None and key is None:
        return None
    if not address or not key:
        raise InputError("--rpc HOST:PORT and --key KEY go together")
    if not re.fullmatch(r"[^:\s]+:\d{1,5}", address) or not 0 < int(address.rpartition(":")[2]) < 65536:
        raise InputError(f"--rpc must be HOST:PORT, got {address!r}")
    return Rpc(address, key)
