"""Compile a Relax IRModule for a catalog target, and read what the estimator needs from it.

The pipeline is TVM's own per-target one (`relax.pipeline.*_passes(target)`), run in two
halves so the fused module can be inspected in between:
  1. library dispatch + legalize + fuse (LegalizeOps, FoldConstant, FuseOps, FuseTIR);
     here each fused PrimFunc's FLOPs and bytes are counted (the roofline estimator's input);
     a MetaSchedule database for this target, when there is one, replaces the fused kernels it
     has records for (MetaScheduleApplyDatabase), GPUs get DLight's default schedules, CPU
     kernels without a record get cpu_default_schedule (parallel outer spatial loops,
     vectorized contiguous inner spatial loop; untuned_schedule="none" keeps TVM's plain loops);
  2. dataflow lowering + finalize (StaticPlanBlockMemory ...); the planned activation memory
     is the sum of the `alloc_storage` sizes this leaves in `main`;
then `relax.build(..., relax_pipeline=None)` generates code. TVM is imported lazily.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.profiling.errors import CompileError
from planner.targets import Target

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
            fused = _fuse(mod, tgt, rp)
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


def _fuse(mod, tgt, rp):
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
        return _fuse(mod, tgt, _backend(target))


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


def export_artifact(ex, target: Target, dest_dir: Path, stem: str) -> tuple[Path, str | None]:
    """Write the compiled library for the target's CPU side; returns (path, note or None).
    TVM's per-constant `Scope Saving:` warnings are dropped (runtime/tvm_noise.py)."""
    from runtime.tvm_noise import without_scope_warnings

    with without_scope_warnings():
        return _export(ex, target, dest_dir, stem)


def _export(ex, target: Target, dest_dir: Path, stem: str) -> tuple[Path, str | None]:
    """x86_64 (this host's arch): `.so` with the system compiler. aarch64: `.so` linked with
    aarch64-linux-gnu-gcc when it is installed, else a `.tar` of objects (link on the device)
    and a note saying so. CUDA targets follow their host part's arch."""
    import platform

    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    arch = target.cpu_arch
    if arch == platform.machine():
        path = dest_dir / f"{stem}.so"
        ex.export_library(str(path))
        return path, None
    if arch == "aarch64":
        cc = shutil.which("aarch64-linux-gnu-gcc")
        if cc:
            from tvm.support import cc as tvm_cc

            path = dest_dir / f"{stem}.so"
            # without the aarch64 libc (crti.o, libc.so) installed, link without the C library:
            # the process that loads the library (python with libtvm) provides libc's symbols
            for options in ([], ["-nostdlib", "-lgcc"], ["-nostdlib"]):
                try:
                    ex.export_library(str(path), fcompile=tvm_cc.cross_compiler(cc, options=options))
                    return path, None
                except RuntimeError:
                    continue
    path = dest_dir / f"{stem}.tar"
    ex.export_library(str(path))
    return path, (f"no cross linker for {arch} here: {path.name} holds the objects; link them on the device "
                  f"(e.g. tvm.runtime.load_module after `tar x` and `gcc -shared`)")


# ---------------------------------------------------------------------------- CPU default schedule

# Below this many iterations (spatial x reduction) a loop nest stays serial: on this loaded
# 2-core host a parallel launch cost ~0.1 ms, more than small kernels gain (cls: 7.7 ms serial, 13 ms
# with every nest parallel).
PARALLEL_MIN_ITERS = 1 << 20


def _vector_bits(tgt) -> int:
    """SIMD width the default schedule vectorizes for: 128 bits on Arm (NEON), 512 on x86
    (AVX-512; LLVM splits the vectors into two on AVX2-only CPUs, still correct)."""
    triple = str(tgt.attrs.get("mtriple", "")) if "mtriple" in tgt.attrs else ""
    return 128 if triple.startswith(("aarch64", "arm")) else 512


def _known_cpu(tgt) -> bool:
    """x86 (the host: no mtriple) or Arm; on a triple LLVM does not know, vectorized code made
    TVM's codegen crash (segfault) where plain loops fail with an error."""
    triple = str(tgt.attrs["mtriple"]) if "mtriple" in tgt.attrs else ""
    return not triple or triple.startswith(("x86_64", "i386", "i686", "aarch64", "arm"))


def _schedule_block(sch, block, vector_bits: int) -> None:
    """Parallel + vectorized loop nest for one block whose loops bind its iterators one to one:
    the spatial loops go outside (their outer part fused and parallel), the reduction loops
    inside them, and the innermost spatial loop, when it indexes the last (contiguous)
    dimension of what the block writes, is split and its inner part vectorized below the
    reduction loops (a register accumulator for convolutions and matmuls). Raises when the
    block does not fit (the caller keeps the module as it was for this block)."""
    from tvm import tirx
    from tvm.s_tir.stmt import SBlockRealize

    loops = sch.get_loops(block)
    if not loops:
        raise ValueError("no loops")
    realize = sch.get(loops[-1]).body
    if not isinstance(realize, SBlockRealize):
        raise ValueError("not a perfect nest")
    stmt = realize.block
    loop_vars = [sch.get(lp).loop_var for lp in loops]
    if len(stmt.iter_vars) != len(loops) or any(
            not v.same_as(lv) for v, lv in zip(realize.iter_values, loop_vars)):
        raise ValueError("non-trivial binding")
    if not (isinstance(realize.predicate, tirx.IntImm) and int(realize.predicate) == 1):
        raise ValueError("predicated")
    kinds = []
    for iv in stmt.iter_vars:
        kinds.append({tirx.IterVar.DataPar: "S", tirx.IterVar.CommReduce: "R"}.get(iv.iter_type, "O"))
    if "O" in kinds or len(stmt.writes) != 1:
        raise ValueError("unsupported iterators")
    extents = [int(sch.get(lp).extent) for lp in loops]
    spatial = [i for i, k in enumerate(kinds) if k == "S"]
    reduce = [i for i, k in enumerate(kinds) if k == "R"]
    # the vector loop: innermost spatial loop indexing the written buffer's last dimension
    vec, factor = None, 0
    write = stmt.writes[0]
    lanes = vector_bits // max(8, write.source.dtype.bits)
    if spatial and write.region:
        last = spatial[-1]
        idx = write.region[-1].min
        if isinstance(idx, tirx.Var) and idx.same_as(stmt.iter_vars[last].var) and \
                _contiguous_in(stmt, stmt.iter_vars[last].var):
            for f in (lanes, lanes // 2, lanes // 4):
                if f >= 4 and extents[last] % f == 0:
                    vec, factor = last, f
                    break
    work = 1
    for e in extents:
        work *= e
    outer, inner = None, None
    if vec is not None:
        outer, inner = sch.split(loops[vec], factors=[None, factor])
    par = [loops[i] for i in spatial if i != vec] + ([outer] if outer is not None else [])
    order = par + [loops[i] for i in reduce] + ([inner] if inner is not None else [])
    sch.reorder(*order)
    # vectorize and parallelize while the block is still one reduction block (the primitives
    # check that), then split off its initialization
    if inner is not None:
        sch.vectorize(inner)
    if par and work >= PARALLEL_MIN_ITERS:
        fused = sch.fuse(*par) if len(par) > 1 else par[0]
        if int(sch.get(fused).extent) > 1:
            sch.parallel(fused)
    if reduce:
        sch.decompose_reduction(block, loops[reduce[0]])


def _contiguous_in(stmt, var) -> bool:
    """Every buffer the block reads is either constant in `var` or walks its last dimension
    with stride 1 in it: vectorizing `var` then needs no gathers (strided or computed indices
    make LLVM scalarize, slowly to compile and to run)."""
    from tvm.sym import pattern as arith

    for region in stmt.reads:
        for d, rng in enumerate(region.region):
            if int(getattr(rng.extent, "value", 0)) != 1:
                return False
            coef = arith.detect_linear_equation(rng.min, [var])
            if len(coef) != 2:
                return False
            c = int(getattr(coef[0], "value", -1))
            if c not in (0, 1) or (c == 1 and d != len(region.region) - 1):
                return False
    return True


def _cpu_fallback_rule():
    """A dlight rule for every CPU kernel no other rule took: each block gets _schedule_block's
    parallel, vectorized loop nest where it fits, and stays as it is where it does not."""
    from tvm import s_tir
    from tvm.s_tir import dlight as dl

    @dl.ScheduleRule.from_callable("PlannerCPUParallelVectorize")
    def rule(func, target, _tunable):
        if target.kind.name != "llvm" or not _known_cpu(target):
            return None
        sch = s_tir.Schedule(func)
        bits = _vector_bits(target)
        root = sch.get_sblock("root")
        names = [sch.get(b).name_hint for b in sch.get_child_blocks(root)]
        if len(set(names)) != len(names):
            return None
        done = 0
        for name in names:
            trial = sch.copy()
            try:
                _schedule_block(trial, trial.get_sblock(name), bits)
            except Exception:  # this block keeps its plain loops
                continue
            sch, done = trial, done + 1
        return sch if done else None

    return rule


def cpu_default_schedule(mod: "tvm.IRModule") -> "tvm.IRModule":
    """The untuned CPU schedule for every kernel without one (MetaSchedule's tuned kernels are
    marked scheduled and left alone): the planner's parallel + vectorize rule. DLight's CPU
    GEMV and Reduction rules are not used: with them (and an earlier version of this rule that
    also vectorized strided reads) det's LLVM codegen ran for over 10 minutes; which of the two
    was at fault is not isolated. Needs the target in context."""
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(_cpu_fallback_rule())(mod)
