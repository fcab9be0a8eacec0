"""Writing a compiled executable as the library a site loads: a `.so` for this host's arch or,
with a cross linker, for aarch64; otherwise a `.tar` of objects to link on the device."""

from __future__ import annotations

import shutil
from pathlib import Path

from planner.app.targets import Target


def export_artifact(ex, target: Target, dest_dir: Path, stem: str) -> tuple[Path, str | None]:
    """Write the compiled library for the target's CPU side; returns (path, note or None).
    TVM's per-constant `Scope Saving:` warnings are dropped (planner_runtime.tvm_noise)."""
    from planner_runtime.tvm_noise import without_scope_warnings

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
