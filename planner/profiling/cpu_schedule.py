"""The planner's default CPU schedule for kernels MetaSchedule has no record for: parallel outer
spatial loops and a vectorized, contiguous inner spatial loop, block by block, where a block
fits; TVM's plain loops where it does not. Applied by compile_analyzed (planner.profiling.compile)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tvm

# Below this many iterations (spatial x reduction) a loop nest stays serial: a parallel launch
# costs more than a small nest gains (about 0.1 ms each on a 2-core x86 machine, where the OCR
# cls model ran 7.7 ms with its small nests serial and 13 ms with every nest parallel).
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
