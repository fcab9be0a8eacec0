"""Fill in the computed figures of a calibration whose measurements were taken elsewhere
(profiles/calibration/nvidia-h200.yaml: the H200 times of shared/NOTES.md).

For each model of each fit: its roofline time at the calibration's own figures (`identity`:
peak and bandwidth), over the kernels the planner compiles it into (compile.py, the same
count the estimator uses), then the efficiency (roofline / measured), and per fit the median,
the residuals and the expected error, with the same code as `planner calibrate`. The measured
figures themselves are read from the file and never changed.

    python benchmarks/gpu_calibration.py [--file profiles/calibration/nvidia-h200.yaml]
                                         [--models examples/ocr/models]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    from planner.app.targets import Target
    from planner.profiling.calibrate import METHOD, engine_fit, figures, write
    from planner.profiling.calibration import read_file
    from planner.profiling.compile import count_kernels
    from planner.profiling.onnx_import import fold_static, import_folded, load_checked

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=ROOT / "profiles" / "calibration" / "nvidia-h200.yaml")
    ap.add_argument("--models", type=Path, default=ROOT / "examples" / "ocr" / "models")
    args = ap.parse_args()
    cal = read_file(args.file)
    target = Target(name=cal.name, memory_mb=1, **cal.identity)
    fits = []
    for fit in cal.fits:
        models = []
        for m in fit.models:
            mod = import_folded(fold_static(load_checked(args.models / m.onnx), m.shapes))
            kernels = count_kernels(mod, target)
            computed = figures(m.name, m.what, m.measured_ms, kernels, target, None)
            models.append(m.model_copy(update={"roofline_ms": computed.roofline_ms,
                                               "efficiency": computed.efficiency}))
            print(f"{fit.engine} {m.name}: {computed.gflop} GFLOP ({m.gflop} in the notes), {computed.mbytes} MB, "
                  f"roofline {computed.roofline_ms} ms, measured {m.measured_ms} ms, efficiency {computed.efficiency}")
        fits.append(engine_fit(fit.engine, fit.tuning, fit.threads, models))
    header = "".join(line + "\n" for line in args.file.read_text().splitlines() if line.startswith("#"))
    write(cal.model_copy(update={"fits": fits, "method": METHOD}), args.file, header=header)
    for f in fits:
        print(f"{f.engine} {f.tuning}: efficiency {f.efficiency}, expected error {f.expected_error_pct} %")


if __name__ == "__main__":
    main()
