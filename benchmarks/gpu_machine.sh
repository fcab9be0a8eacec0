#!/bin/sh
# Run benchmarks/cuda_bisect.py on the project's GPU machine (the `device` tool), which has Python
# 3.12, numpy, onnx, onnxruntime and pyyaml but no TVM and no pydantic, and takes at most 64 MiB
# a call (shared/NOTES.md, "Using the GPU machine"). TVM's compiler library alone is 248 MB, 60 MB
# with `xz -9e`: one call carries it and starts unpacking it, the next (made at once: the machine
# stays warm 30 s) carries the rest and runs the check. benchmarks/README.md, "CUDA NaN bisection".
#
#   sh benchmarks/gpu_machine.sh pack         here: fills .gpu/ (git-ignored); xz -9e is ~10 min on 2 cores
#   sh benchmarks/gpu_machine.sh unpack-lib   device call 1, carry [".gpu/lib"]
#   sh benchmarks/gpu_machine.sh bisect [cuda_bisect.py options]
#                                             device call 2, carry [".gpu/rest",
#                                             "examples/ocr/models/ch_PP-OCRv4_rec_infer.onnx"]
# PYTHON (pack: the venv whose TVM is packed; device: the interpreter), PY_VERSION (3.12) and
# XZ_LEVEL (-9e) change the defaults; UNPACK (/tmp/gpu) is where the device side unpacks.
set -eu
cd "$(dirname "$0")/.."
UNPACK=${UNPACK:-/tmp/gpu}

pack() {
    py=${PYTHON:-/work/main/.venv/bin/python}
    site=$($py -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    rm -rf .gpu && mkdir -p .gpu/lib .gpu/rest .gpu/stage/py .gpu/stage/fallback
    # apache-tvm is one build for every Python (py3-none): this venv's, its compiler library apart
    (cd "$site" && tar --exclude=__pycache__ --exclude=tvm/lib/libtvm_compiler.so -cf - tvm) | tar -xf - -C .gpu/stage/py
    xz -T2 ${XZ_LEVEL:--9e} -c "$site/tvm/lib/libtvm_compiler.so" >.gpu/lib/libtvm_compiler.so.xz
    # the rest is built per Python: the device's, at this venv's versions
    v() { $py -c "from importlib.metadata import version; print(version('$1'))"; }
    get() {
        $py -m pip install --quiet --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --target "$@"
    }
    get .gpu/stage/py "apache-tvm-ffi==$(v apache-tvm-ffi)" "pydantic==$(v pydantic)" \
        "pydantic-core==$(v pydantic-core)" "annotated-types==$(v annotated-types)" \
        "typing-inspection==$(v typing-inspection)" "typing-extensions==$(v typing-extensions)"
    # behind the device's own (onnx brings it there): used only where it has none
    get .gpu/stage/fallback "ml-dtypes==$(v ml-dtypes)"
    tar -C .gpu/stage -cJf .gpu/rest/python.tar.xz py fallback
    rm -rf .gpu/stage
    du -sh .gpu/lib .gpu/rest
}

unpack_lib() {
    mkdir -p "$UNPACK"
    cp .gpu/lib/libtvm_compiler.so.xz "$UNPACK/"
    # in its own session: it outlives this call, and the next call waits for it
    setsid sh -c "xz -dc '$UNPACK/libtvm_compiler.so.xz' >'$UNPACK/libtvm_compiler.so.part' \
        && mv '$UNPACK/libtvm_compiler.so.part' '$UNPACK/libtvm_compiler.so'" </dev/null >/dev/null 2>&1 &
    echo "unpacking TVM's compiler library into $UNPACK"
}

bisect() {
    py=${PYTHON:-python3}
    tar -C "$UNPACK" -xJf .gpu/rest/python.tar.xz
    waited=0
    until [ -f "$UNPACK/libtvm_compiler.so" ]; do
        [ "$waited" -lt 300 ] || { echo "no $UNPACK/libtvm_compiler.so after 300 s: run unpack-lib first" >&2; exit 1; }
        sleep 2; waited=$((waited + 2))
    done
    mv "$UNPACK/libtvm_compiler.so" "$UNPACK/py/tvm/lib/"
    export PYTHONPATH="$UNPACK/py:$PWD:$PWD/runtime:$UNPACK/fallback" PYTHONUNBUFFERED=1
    # TVM compiles CUDA C with NVRTC when cuda-bindings is there, else it needs TVM_CUDA_COMPILE_MODE=nvcc
    if ! $py -c 'import cuda.bindings' 2>/dev/null && command -v nvcc >/dev/null; then
        export TVM_CUDA_COMPILE_MODE=${TVM_CUDA_COMPILE_MODE:-nvcc}
    fi
    nvidia-smi -L 2>/dev/null || true
    $py benchmarks/cuda_bisect.py "$@"
}

case "${1:-}" in
    pack) pack ;;
    unpack-lib) unpack_lib ;;
    bisect) shift; bisect "$@" ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
