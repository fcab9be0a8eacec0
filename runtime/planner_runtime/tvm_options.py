"""How every TVM CPU build the project runs waits for work: its thread pool's workers do not spin.

After each parallel loop TVM's pool workers spin (sched_yield) TVM_THREAD_POOL_SPIN_COUNT times
(300 000 by default) before they sleep, and a site serves several models and requests on the
same cores: the idle workers of one run take turns with the work of another, and the guest
charges their spinning as busy CPU. Measured here (benchmarks/results/tvm_spinning.md: OCR det's
host build, 2 threads on the 2 vCPUs, one run every 0.3 s, as a request at a time reaches it):
271 CPU-ms a run with the default against 118 without spinning, for 55.2 against 57.8 ms a run
(the wake-up of sleeping workers); back to back, 111 against 107 CPU-ms, 54.4 against 54.9 ms.
In a served OCR load at 60 % the site process running it kept 3.3 threads runnable on average
and a request cost twice the CPU of its stages (issue 11's notes). As ONNX Runtime's
(planner_runtime.ort_options), the profiler measures a build the way it is served, so a build's
profile is what a site runs. The pool reads the count once, when it starts, like
TVM_NUM_THREADS: so it is set before the first parallel loop; a value the operator set is kept.
"""

from __future__ import annotations

import os

SPIN_COUNT = "0"


def quiet_pool() -> None:
    """TVM's pool, when it starts in this process, without spinning (unless the operator set it)."""
    os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", SPIN_COUNT)
