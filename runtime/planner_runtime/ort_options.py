"""The options of every ONNX Runtime CPU session the project makes: the profiler measures a build
with the very options the runtime serves it with.

Spinning is off. ONNX Runtime's intra-op workers spin after each parallel section, waiting for the
next one; a site (or `planner up` on one machine) runs several sessions on the same cores, and
the idle workers of one session spin on the cores another session needs. Measured here (OCR
det, cls, rec, 2 threads each on 2 cores, run one after another in one process; spinning on:
det 81 ms against 47 alone, rec 127 against 83; off: 51 and 87, alike whether interleaved or
alone; benchmarks/results/ort_spinning.md, quiet machine). A build alone on its cores loses 5-9 %
without spinning (cls gains); it is measured that way, so its profile is still what is served.
"""

from __future__ import annotations


def session_options(threads: int | None = None, optimize: bool = True, spinning: bool = False):
    """CPU session options: `threads` intra-op threads (None or 0: ONNX Runtime's default, one per
    core), operators one at a time, no spinning (`spinning=True`: ONNX Runtime's default, for the
    benchmark that compares them); `optimize=False` runs the graph as written."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return opts
