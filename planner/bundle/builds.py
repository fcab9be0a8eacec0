"""What a bundle ships for an ONNX model: the build the plan chose for it (plan.json
`models.<m>.engine` and `precision`). `tvm/fp32` (and a model whose site has given numbers): the
library TVM compiles for the site's target. `onnxruntime/fp32`: the ONNX file, run by ONNX Runtime;
`onnxruntime/int8`: that file dynamically quantized, `onnxruntime/fp16` (GPU targets): that file
converted to fp16 (planner.quantize, the files the profiler checked). An ONNX Runtime node names
its execution provider (CUDA on GPU targets, else the CPU) and the threads its build was profiled
with, so that it runs as it was measured."""

from __future__ import annotations

import shutil
from pathlib import Path

from planner.errors import PlannerError
from planner.model.checked_app import CheckedApp
from planner.plan.schema import Plan
from planner.profiling.table import ProfileTable
from planner.quantize import QuantizationError, float16, quantized_int8

SHIPPED = ("tvm/fp32", "onnxruntime/fp32", "onnxruntime/int8", "onnxruntime/fp16")
CPU_PROVIDER = "CPUExecutionProvider"
GPU_PROVIDER = "CUDAExecutionProvider"  # onnxruntime-gpu; the runtime falls back to the CPU, loudly, without it


def chosen_build(plan: Plan, name: str) -> str:
    """`engine/precision` of the model's build in the plan; given numbers ship the TVM build, as they always did."""
    report = plan.models.get(name)
    if report is None or report.engine == "given":
        return "tvm/fp32"
    build = f"{report.engine}/{report.precision}"
    if build not in SHIPPED:
        raise PlannerError(f"plan.json: models.{name}: build {build} cannot be shipped in a bundle "
                           f"(bundles ship {', '.join(SHIPPED)})")
    return build


def ort_artifact(onnx: Path, precision: str, dest: Path, stem: str) -> Path:
    """The file ONNX Runtime runs for this precision, written as dest/<stem>.onnx (fp32),
    <stem>.int8.onnx or <stem>.fp16.onnx."""
    dest.mkdir(parents=True, exist_ok=True)
    if precision == "fp32":
        return Path(shutil.copy2(onnx, dest / f"{stem}.onnx"))
    try:
        data = {"int8": quantized_int8, "fp16": float16}[precision](onnx)
    except QuantizationError as exc:
        raise PlannerError(f"{onnx}: {exc}") from None
    path = dest / f"{stem}.{precision}.onnx"
    path.write_bytes(data)
    return path


def ort_node(checked: CheckedApp, table: ProfileTable, name: str, site: str, build: str, is_gpu: bool,
             site_dir: Path) -> dict:
    """The NodeSpec fields of an ONNX Runtime build of `name` on `site`, its file written under
    site_dir/models (`artifact` is relative to site_dir)."""
    profile = table.get(name, site, build)
    onnx = checked.resolve(checked.app.models[name].onnx)
    artifact = ort_artifact(onnx, build.split("/")[1], site_dir / "models", name)
    return {"kind": "onnx", "artifact": artifact.relative_to(site_dir).as_posix(),
            "provider": GPU_PROVIDER if is_gpu else CPU_PROVIDER, "threads": profile.threads if profile else None}
