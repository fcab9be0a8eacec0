"""Which kernel of a TVM build first computes NaN or Inf? One short run on a GPU machine.

The model is built as the planner builds it (planner.profiling.compile.compile_analyzed, DLight
default schedules on a GPU) in two variants:
  - `planner`: with the planner's GPU rewrites (planner.profiling.gpu_math: integral powers
    as products);
  - `unfixed`: without them: the build that answered NaN on the H200 (shared/NOTES.md);
  - `unfixed-precise` (CUDA, where nvcc is on the PATH): the same compiled by nvcc without
    `--use_fast_math` (TVM_CUDA_COMPILE_MODE=nvcc, TVM_CUDA_NVCC_NO_FAST_MATH=1): finite here and
    NaN in `unfixed` says fast math is the cause.
Each runs on the profiler's own inputs (planner.profiling.measure.sample_inputs, seed 0) and is
compared with the fp32 ONNX Runtime reference (planner.profiling.verify). The Relax VM calls
every kernel through an instrument that copies its arguments back: the first kernel whose
result is not finite although its inputs are is the culprit, printed with its inputs' range and
the share of negative inputs beside the share of non-finite results.

A `planner` variant that matches the reference clears the recorded failure in
profiles/verification/ (delete the record, or set its `cleared`); one that does not names the
kernel to look at next.

    python benchmarks/cuda_bisect.py                       # rec, 8x3x48x320, CUDA sm_90, device 0
    python benchmarks/cuda_bisect.py --target llvm --emulate-fast-pow   # the same on this CPU

`--emulate-fast-pow` writes every remaining `R.power(x, y)` as exp(y * log(x)), which is what
CUDA's `__powf` computes (`--use_fast_math`): on a CPU this reproduces the GPU's NaN, so the
bisection is tested without a GPU (tests/profiling/test_gpu_math.py). Writes a JSON result
(--out, default $OUT/cuda_bisect.json where $OUT is set, else /tmp/cuda_bisect.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "runtime"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

REC = ROOT / "examples" / "ocr" / "models" / "ch_PP-OCRv4_rec_infer.onnx"


def emulate_fast_pow(mod):
    """Every `R.power(x, y)` as exp(y * log(x)): CUDA's `__powf`, NaN where x < 0."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    from planner.profiling.gpu_math import rewrite_functions

    power = tvm.ir.Op.get("relax.power")

    @mutator
    class FastPow(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if isinstance(call, relax.Call) and call.op.same_as(power):
                x, y = call.args
                return relax.op.exp(relax.op.multiply(y, relax.op.log(x)))
            return call

    return rewrite_functions(mod, FastPow(mod))


@contextlib.contextmanager
def no_gpu_rewrites():
    """compile_analyzed without its own GPU rewrites: each variant applies its own first."""
    from planner.profiling import compile as compile_mod

    saved = compile_mod.GPU_REWRITES
    compile_mod.GPU_REWRITES = ()
    try:
        yield saved
    finally:
        compile_mod.GPU_REWRITES = saved


def _stats(a: np.ndarray) -> dict:
    finite = np.isfinite(a)
    out = {"shape": list(a.shape), "nonfinite": float(1 - finite.mean()) if a.size else 0.0}
    if finite.any():
        out.update(min=float(a[finite].min()), max=float(a[finite].max()), negative=float((a[finite] < 0).mean()))
    return out


class KernelTrace:
    """A VM instrument: each kernel call's float tensor arguments, checked after the call. The
    last argument is the result (call_tir's destination-passing style), the others its inputs."""

    def __init__(self):
        self.calls: list[str] = []
        self.culprit: dict | None = None

    def __call__(self, func, symbol, before_run, ret_value, *args):
        if before_run or str(symbol).startswith("vm."):
            return 0
        tensors = [a for a in args if hasattr(a, "numpy") and str(getattr(a, "dtype", "")).startswith("float")]
        if not tensors:
            return 0
        self.calls.append(str(symbol))
        if self.culprit is not None:  # counted, not copied
            return 0
        arrays = [t.numpy() for t in tensors]
        *ins, out = arrays
        if not np.all(np.isfinite(out)) and all(np.all(np.isfinite(a)) for a in ins):
            self.culprit = {"kernel": str(symbol), "call": len(self.calls), "inputs": [_stats(a) for a in ins],
                            "result": _stats(out)}
        return 0


@contextlib.contextmanager
def environment(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cuda_source(executable) -> str | None:
    """The CUDA C of a build (TVM 0.27 compiles it when the module is loaded on a GPU)."""
    todo = list(executable.mod.imports)
    while todo:
        m = todo.pop()
        if m.kind == "cuda":
            return m.inspect_source("cuda")
        todo.extend(m.imports)
    return None


def powf_exponents(source: str) -> dict[str, int]:
    """How often each exponent is passed to powf in CUDA C (the second argument as written; a
    constant's value from TVM's comment, e.g. 2.000000e+00)."""
    found: dict[str, int] = {}
    at = source.find("powf(")
    while at >= 0:
        depth, i, comma = 1, at + len("powf("), None
        while depth and i < len(source):
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            if source[i] == "," and depth == 1:
                comma = i
            i += 1
        arg = source[comma + 1:i - 1].strip() if comma else "?"
        arg = arg[arg.index("/*") + 2:arg.rindex("*/")] if "/*" in arg else arg
        found[arg] = found.get(arg, 0) + 1
        at = source.find("powf(", i)
    return found


def run_variant(name: str, mod, target, dev, inputs: list[np.ndarray], reference, rewrites,
                env: dict[str, str] | None = None, compile_only: bool = False) -> dict:
    """Build `mod` after `rewrites`, run it and trace its kernels; `env` holds while the CUDA C is
    compiled, which happens when the VM loads the module."""
    import tvm
    from tvm import relax

    from planner.profiling.compile import compile_analyzed
    from planner.profiling.measure import _to_numpy
    from planner.profiling.verify import failure, max_rel_error

    for rewrite in rewrites:
        mod = rewrite(mod)
    result = {"variant": name, "rewrites": [r.__name__ for r in rewrites], "env": env or {}}
    with environment(env or {}):
        start = time.perf_counter()
        with no_gpu_rewrites():
            compiled = compile_analyzed(mod, target)
        result["compile_s"] = round(time.perf_counter() - start, 1)
        source = cuda_source(compiled.executable)
        if source is not None:  # each powf is __powf under fast math: NaN for a negative base
            result["powf_exponents"] = powf_exponents(source)
        if compile_only:
            print(f"[{name}] compiled in {result['compile_s']} s; powf calls by exponent: "
                  f"{result.get('powf_exponents')}")
            return result
        vm = relax.VirtualMachine(compiled.executable, dev)
        args = [tvm.runtime.tensor(a, dev) for a in inputs]
        outputs = _to_numpy(vm["main"](*args))
    error, nonfinite = max_rel_error(outputs, reference) if reference is not None else (None, False)
    trace = KernelTrace()
    vm.set_instrument(trace)
    vm["main"](*args)
    result.update(max_rel_error=error, nonfinite=nonfinite,
                  verdict=failure(error, nonfinite, None) or "matches the fp32 ONNX Runtime reference",
                  outputs=[_stats(o) for o in outputs], kernels_called=len(trace.calls),
                  first_nonfinite_kernel=trace.culprit)
    print(f"[{name}] {result['verdict']} (max rel error {error})")
    if trace.culprit:
        c = trace.culprit
        print(f"[{name}] first kernel with a non-finite result from finite inputs: {c['kernel']} "
              f"(call {c['call']} of {len(trace.calls)}); inputs {c['inputs']}; result {c['result']}")
    return result


def parse_shape(text: str) -> tuple[str, list[int]]:
    name, dims = text.split("=")
    return name, [int(d) for d in dims.split(",")]


def main(argv: list[str] | None = None) -> dict:
    import tvm

    from planner.app.targets import Target
    from planner.profiling.measure import ort_session, sample_inputs
    from planner.profiling.onnx_import import fold_static, import_folded, io_signature, load_checked

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REC)
    ap.add_argument("--shape", action="append", type=parse_shape, help="input=d0,d1,... (default x=8,3,48,320)")
    ap.add_argument("--target", choices=["cuda", "llvm"], default="cuda")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--emulate-fast-pow", action="store_true")
    ap.add_argument("--compile-only", action="store_true", help="build and count powf calls; run nothing")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")) / "cuda_bisect.json")
    args = ap.parse_args(argv)
    shapes = dict(args.shape or [("x", [8, 3, 48, 320])])

    if args.target == "cuda":
        spec = {"kind": "cuda", "arch": args.arch, "host": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}}
        target, dev = Target(name="bisect-cuda", memory_mb=1, peak_gflops=1, mem_bandwidth_gbs=1, tvm_target=spec), tvm.cuda(0)
        if not args.compile_only and not dev.exist:
            sys.exit("cuda_bisect: no CUDA device here (--compile-only builds without one)")
    else:
        target, dev = Target(name="bisect-llvm", memory_mb=1, peak_gflops=1, mem_bandwidth_gbs=1,
                                     tvm_target={"kind": "llvm"}), tvm.cpu()
    folded = fold_static(load_checked(args.model), shapes)
    mod = import_folded(folded)
    inputs = list(sample_inputs(io_signature(folded).inputs).values())
    feed = dict(zip([t.name for t in io_signature(folded).inputs], inputs))
    reference = ort_session(args.model.read_bytes(), optimize=False).run(None, feed)
    emulate = [emulate_fast_pow] if args.emulate_fast_pow else []
    from planner.profiling import compile as compile_mod

    # on a CPU too the planner's GPU rewrites: the build to check is the GPU's
    variants = [("planner", list(compile_mod.GPU_REWRITES) + emulate, None), ("unfixed", emulate, None)]
    if args.target == "cuda" and shutil.which("nvcc"):
        variants.append(("unfixed-precise", [], {"TVM_CUDA_COMPILE_MODE": "nvcc", "TVM_CUDA_NVCC_NO_FAST_MATH": "1"}))
    result = {"model": str(args.model), "shapes": shapes, "target": target.tvm_target, "device": str(dev),
              "tvm": tvm.__version__, "emulate_fast_pow": args.emulate_fast_pow,
              "cuda_compiler": os.environ.get("TVM_CUDA_COMPILE_MODE", "nvrtc"),
              "variants": [run_variant(n, mod, target, dev, inputs, reference, r, e, args.compile_only)
                           for n, r, e in variants]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"written: {args.out}")
    return result


if __name__ == "__main__":
    main()
