"""Compile a Relax IRModule for a catalog target, and read what the estimator needs from it.

The pipeline is TVM's own per-target one (`relax.pipeline.*_passes(target)`), run in two
halves so the fused module can be inspected in between:
  1. library dispatch + legalize + fuse (LegalizeOps, FoldConstant, FuseOps, FuseTIR); on GPU
     targets small integral powers are first written as products (planner.profiling.gpu_math:
     CUDA's fast math makes `powf` of a negative base NaN);
     here each fused PrimFunc's FLOPs and bytes are counted (the roofline estimator's input);
     a MetaSchedule database for this target, when there is one, replaces the fused kernels it
     has records for (MetaScheduleApplyDatabase), GPUs get DLight's default schedules, CPU
     kernels without a record get the default CPU schedule (planner.profiling.cpu_schedule:
     parallel outer spatial loops, vectorized contiguous inner spatial loop;
     untuned_schedule="none" keeps TVM's plain loops);
  2. dataflow lowering + finalize (StaticPlanBlockMemory ...); the planned activation memory
     is the sum of the `alloc_storage` sizes this leaves in `main`;
then `relax.build(..., relax_pipeline=None)` generates code (exported by
planner.profiling.export). TVM is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.app.targets import Target
from planner.profiling.cpu_schedule import cpu_default_schedule
from planner.profiling.errors import CompileError
from planner.profiling.gpu_math import integral_powers_as_products

if TYPE_CHECKING:
    import tvm


@dataclass
class Kernel:
    """One fused PrimFunc: FLOPs and bytes moved per call, and how often `main` calls it."""

    name: str
    flops: float
    nbytes: int
    calls: int = 1


@dataclass
class Compiled:
    executable: Any  # tvm.relax.Executable
    kernels: list[Kernel] = field(default_factory=list)
    params_bytes: int = 0
    activation_bytes: int = 0
    tuned: bool = False  # a tuning database was applied
    tuned_kernels: int = 0  # kernels the database had a record for

    @property
    def tuning(self) -> str | None:
        """None when no database record applied to this module's kernels (then it is untuned)."""
        return None if not self.tuned_kernels else f"{self.tuned_kernels}/{len(self.kernels)} kernels"

    @property
    def memory_mb(self) -> float:
        return (self.params_bytes + self.activation_bytes) / 1e6


def tvm_target_dict(target: Target) -> tuple[dict, dict | None]:
    """(device part, host part) of the target as JSON dicts; the host's mcpu filled in."""
    spec = dict(target.tvm_target)
    host = spec.pop("host", None)
    if target.is_host and spec.get("kind") == "llvm" and "mcpu" not in spec:
        from tvm.target import codegen

        spec["mcpu"] = codegen.llvm_get_system_cpu()
    return spec, (dict(host) if host else None)


def tvm_target(target: Target) -> "tvm.target.Target":
    """The TVM target of a catalog target: host mcpu filled; a GPU with its host part."""
    import tvm

    spec, host = tvm_target_dict(target)
    return tvm.target.Target(spec, host=host) if host else tvm.target.Target(spec)


def has_tuning(tuning_dir: Path | None) -> bool:
    if tuning_dir is None:
        return False
    rec = Path(tuning_dir) / "database_tuning_record.json"
    return rec.is_file() and rec.stat().st_size > 0


def _dtype_bytes(dtype) -> int:
    import tvm

    dt = tvm.DataType(str(dtype))
    return (dt.bits * dt.lanes + 7) // 8


def _sinfo_bytes(sinfo) -> int:
    from tvm import relax

    if isinstance(sinfo, relax.TupleType):
        return sum(_sinfo_bytes(f) for f in sinfo.fields)
    if isinstance(sinfo, relax.TensorType) and sinfo.shape is not None:
        n = 1
        for d in sinfo.shape.values:
            n *= int(d) if hasattr(d, "value") else 1
        return n * _dtype_bytes(sinfo.dtype)
    return 0


def _kernels(fused: "tvm.IRModule") -> list[Kernel]:
    """Each call of a fused PrimFunc from a Relax function: its FLOPs (TVM's TIR estimate) and
    the bytes of its arguments and results (the least traffic it can do)."""
    import tvm
    from tvm import relax, tirx
    from tvm.s_tir.analysis import estimate_tir_flops

    flops: dict[str, float] = {}
    for gv, func in fused.functions_items():
        if isinstance(func, tirx.PrimFunc):
            try:
                flops[gv.name_hint] = float(estimate_tir_flops(tvm.IRModule({gv: func})))
            except Exception:
                flops[gv.name_hint] = 0.0
    found: dict[str, Kernel] = {}
    call_tir = tvm.ir.Op.get("relax.call_tir")

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op == call_tir and isinstance(expr.args[0], tvm.ir.GlobalVar):
            name = expr.args[0].name_hint
            if name in found:
                found[name].calls += 1
                return
            nbytes = sum(_sinfo_bytes(a.ty) for a in expr.args[1].fields) if \
                isinstance(expr.args[1], relax.Tuple) else _sinfo_bytes(expr.args[1].ty)
            nbytes += sum(_sinfo_bytes(s) for s in expr.ty_args)
            found[name] = Kernel(name=name, flops=flops.get(name, 0.0), nbytes=nbytes)

    for _, func in fused.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return list(found.values())


def _handle(obj) -> int:
    handle = getattr(obj, "__chandle__", None)
    return handle() if callable(handle) else id(obj)


def _backend(target: Target):
    """TVM's per-target pass lists (relax/backend/<kind>/pipeline.py)."""
    import importlib

    return importlib.import_module(f"tvm.relax.backend.{'cuda' if target.is_gpu else 'cpu_generic'}.pipeline")


def _params_bytes(mod: "tvm.IRModule") -> int:
    import tvm
    from tvm import relax

    seen: dict[int, int] = {}

    def visit(expr):
        if isinstance(expr, tvm.ir.expr.Constant):
            value = getattr(expr, "value", None)
            if hasattr(value, "shape") and hasattr(value, "dtype"):
                n = 1
                for d in value.shape:
                    n *= int(d)
                seen[_handle(expr)] = n * _dtype_bytes(value.dtype)

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return sum(seen.values())


def _planned_bytes(lowered: "tvm.IRModule") -> int:
    import tvm
    from tvm import relax

    storage = (tvm.ir.Op.get("relax.memory.alloc_storage"), tvm.ir.Op.get("relax.vm.alloc_storage"))
    builtin = tvm.ir.Op.get("relax.builtin.alloc_tensor")
    total = [0]

    def visit(expr):
        if not isinstance(expr, relax.Call):
            return
        if any(expr.op.same_as(op) for op in storage) and isinstance(expr.args[0], relax.ShapeExpr):
            total[0] += int(expr.args[0].values[0])
        elif expr.op == builtin and isinstance(expr.args[0], relax.ShapeExpr):
            n = 1
            for d in expr.args[0].values:
                n *= int(d)
            total[0] += n * _dtype_bytes(expr.args[1].value)

    for _, func in lowered.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return total[0]


def compile_analyzed(mod: "tvm.IRModule", target: Target, tuning_dir: Path | None = None,
                     untuned_schedule: str = "default") -> Compiled:
    """Compile and count: the executable with its kernels, params and planned memory.
    Raises CompileError when TVM cannot compile the module for this target."""
    import tvm
    from tvm import relax
    from tvm import tirx

    rp = _backend(target)
    tuned = has_tuning(tuning_dir)
    tuned_kernels = 0
    try:
        tgt = tvm_target(target)
        with tgt, tvm.transform.PassContext(opt_level=3):
            fused = _fuse(mod, tgt, rp, target.is_gpu)
            kernels = _kernels(fused)
            params = _params_bytes(fused)
            scheduled = fused
            if tuned:
                from tvm.s_tir import meta_schedule as ms

                db = ms.database.JSONDatabase(work_dir=str(tuning_dir), allow_missing=False)
                with db:
                    scheduled = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(scheduled)
                # a kernel with a record is replaced; the others stay the very same object
                tuned_kernels = sum(1 for gv, f in scheduled.functions_items()
                                    if isinstance(f, tirx.PrimFunc) and not f.same_as(fused[gv]))
            if target.is_gpu:
                scheduled = _gpu_schedule(scheduled)
            elif untuned_schedule == "default":
                scheduled = cpu_default_schedule(scheduled)
            lowered = tvm.transform.Sequential([*rp.dataflow_lower_passes(tgt), *rp.finalize_passes(tgt)])(scheduled)
            activations = _planned_bytes(lowered)
            ex = relax.build(lowered, target=tgt, relax_pipeline=None)
    except Exception as exc:  # TVMError, ValueError, InternalError ...: this target only
        text = str(exc).strip().splitlines()
        raise CompileError(f"{type(exc).__name__}: {text[-1] if text else ''}"[:400]) from None
    return Compiled(executable=ex, kernels=kernels, params_bytes=params, activation_bytes=activations, tuned=tuned,
                    tuned_kernels=tuned_kernels)


def _gpu_schedule(mod: "tvm.IRModule") -> "tvm.IRModule":
    """DLight's default GPU schedules; when its Matmul rule fails on a fused kernel (seen in
    TVM 0.27: "consumers of the cache-write stage that are not properly inlined"), the same
    without that rule (such matmuls get the generic fallback schedule: slower, but correct)."""
    from tvm.s_tir import dlight as dl

    rest = [dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback()]
    try:
        return dl.ApplyDefaultSchedule(dl.gpu.Matmul(), *rest)(mod)
    except Exception:
        return dl.ApplyDefaultSchedule(*rest)(mod)


# Relax rewrites before a GPU build (benchmarks/cuda_bisect.py empties it to build as before)
GPU_REWRITES = (integral_powers_as_products,)


def _fuse(mod, tgt, rp, gpu: bool):
    for rewrite in GPU_REWRITES if gpu else ():
        mod = rewrite(mod)
    return tvm_sequential([*rp.library_dispatch_passes(tgt), *_fuse_passes()])(mod)


def tvm_sequential(passes):
    import tvm

    return tvm.transform.Sequential(passes)


def fused_module(mod: "tvm.IRModule", target: Target) -> "tvm.IRModule":
    """The module after legalize + fuse: its PrimFuncs are the kernels MetaSchedule tunes and
    MetaScheduleApplyDatabase looks up (the same passes as compile_analyzed's first half)."""
    import tvm

    tgt = tvm_target(target)
    with tgt, tvm.transform.PassContext(opt_level=3):
        return _fuse(mod, tgt, _backend(target), target.is_gpu)


def _fuse_passes() -> list:
    from tvm import relax

    return [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR()]


def compile_module(mod: "tvm.IRModule", target: Target, tuning_dir: Path | None = None) -> "tvm.relax.Executable":
    """The executable of `mod` for `target`, with the tuning database in `tuning_dir` applied."""
    return compile_analyzed(mod, target, tuning_dir).executable


def compile_onnx_for(path: Path, input_shapes, target: Target, tuning_dir: Path | None = None):
    from planner.profiling.onnx_import import import_onnx

    return compile_module(import_onnx(Path(path), input_shapes), target, tuning_dir)


def count_kernels(mod: "tvm.IRModule", target: Target) -> list[Kernel]:
    """The kernels `compile_analyzed` counts for `mod` on `target`, without building it."""
    return _kernels(fused_module(mod, target))
