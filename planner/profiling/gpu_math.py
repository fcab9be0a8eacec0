"""Integral powers as products before a GPU build: CUDA's fast math turns them into NaN.

TVM compiles CUDA kernels with `--use_fast_math` (NVRTC always, nvcc unless
TVM_CUDA_NVCC_NO_FAST_MATH is set: tvm/support/nvcc.py), and under it `powf(x, y)` is
`__powf`: `ex2.approx(y * lg2.approx(x))` in the PTX, NaN for every x < 0 even where y is an
integer. ONNX exports of LayerNorm compute the variance as `Pow(x - mean, 2)`, whose base is
negative for about half the elements, so every row's variance, and everything after it, is NaN.
That is how PP-OCRv4 rec's CUDA build answered NaN on an H200 (profiles/verification/) while det
and cls, which have no Pow, matched ONNX Runtime.

`R.power(x, c)` with c a scalar constant equal to 1, 2, 3 or 4 is rewritten as products of x:
exact on every target, and no `powf` is left for the fast-math path (TVM did the same in topi's
gelu_tanh for ROCm's pow, apache/tvm#16518; PaddlePaddle's own pow op met this NaN, #13807). Other exponents keep
`R.power` (a non-integral power of a negative base is NaN in the reference too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tvm

SMALL_POWERS = (1, 2, 3, 4)


def _small_integral_exponent(expr) -> int | None:
    import tvm

    if not isinstance(expr, tvm.ir.expr.Constant):
        return None
    value = expr.value.numpy()
    if value.size != 1 or value.dtype.kind != "f":
        return None
    v = float(value.reshape(()))
    return int(v) if v in SMALL_POWERS else None


def integral_powers_as_products(mod: "tvm.IRModule") -> "tvm.IRModule":
    """`mod` with every `R.power(x, c)`, c in SMALL_POWERS (a float scalar constant), written as
    products of x, where the result has x's type (a broadcasting exponent is left alone)."""
    import tvm
    import tvm_ffi
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    power = tvm.ir.Op.get("relax.power")

    @mutator
    class Products(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if not (isinstance(call, relax.Call) and call.op.same_as(power)):
                return call
            n = _small_integral_exponent(call.args[1])
            x = call.args[0]
            if n is None or not tvm_ffi.structural_equal(call.ty, x.ty):
                return call
            out = x
            for _ in range(n - 1):
                out = relax.op.multiply(out, x)
            return out

    return rewrite_functions(mod, Products(mod))


def rewrite_functions(mod: "tvm.IRModule", rewriter) -> "tvm.IRModule":
    """`mod` with every Relax function visited by `rewriter` (a PyExprMutator made on `mod`)."""
    from tvm import relax

    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    return rewriter.builder_.get()
