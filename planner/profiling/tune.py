"""MetaSchedule tuning (tvm.s_tir.meta_schedule) and the tuning databases it leaves.

A target's database lives in <tuning root>/<target>/ (planner.profiling.locations):
MetaSchedule's JSON database (database_workload.json, database_tuning_record.json, one
record per measured trial). Every compile for that target applies it (compile_module's
tuning_dir); tuning again adds records to it. Tuning measures on this host, so it is done
for the host target."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from planner.profiling.compile import fused_module, has_tuning, tvm_target
from planner.profiling.locations import default_tuning_root
from planner.app.targets import Target

if TYPE_CHECKING:
    import tvm


def tuning_root(override: Path | None = None) -> Path:
    return Path(override) if override is not None else default_tuning_root()


def tuning_dir(target: Target, root: Path | None = None) -> Path:
    return tuning_root(root) / target.name


def record_count(directory: Path) -> int:
    path = Path(directory) / "database_tuning_record.json"
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def tuning_state(directory: Path | None) -> str:
    """`untuned`, or `tuned:<N>` with N the trials recorded for the target."""
    if not has_tuning(directory):
        return "untuned"
    return f"tuned:{record_count(directory)}"


def tuning_digest(directory: Path | None) -> str:
    """Changes whenever the database does (part of the cache key)."""
    if not has_tuning(directory):
        return "untuned"
    h = hashlib.sha256()
    for name in ("database_workload.json", "database_tuning_record.json"):
        path = Path(directory) / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


BUILD_FUNC = "planner.meta_schedule.build"
BUILD_TIMEOUT_S = 120


def _builder_worker_init() -> None:
    """Runs in each MetaSchedule builder worker: registers a build function that skips
    MetaSchedule's default `import tvm.s_tir.tensor_intrin`. That import takes ~20 s on this
    machine, and LocalBuilder starts fresh workers for every batch of candidates, so with it
    every batch costs 20 s and hits the 30 s build timeout. The intrinsics are only needed
    where schedules are generated (the main process), not to build a scheduled module."""
    from tvm_ffi import register_global_func

    def build(mod, target, _params):
        from tvm.driver import build as tvm_build
        from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

        mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
        return tvm_build(mod, target=target)

    register_global_func(BUILD_FUNC, build, override=True)


def task_order(tasks: list, db) -> list:
    """The order tasks get their trials in: least-tuned first (in rounds of records), and
    within a round the heaviest first (TIR FLOPs x calls per inference). MetaSchedule's own
    order (the order FuseOps made the kernels) with its gradient scheduler restarting on
    every call spent 402 trials on 7 of det's 64 kernels, tuning the first few again and again."""
    from tvm.s_tir.analysis import estimate_tir_flops

    def records(task) -> int:
        mod = task.dispatched[0]
        if not db.has_workload(mod):
            return 0
        return len(db.get_top_k(db.commit_workload(mod), 1 << 20))

    def cost(task) -> float:
        try:
            return float(estimate_tir_flops(task.dispatched[0])) * int(task.weight)
        except Exception:
            return 0.0

    keyed = [(records(t), -cost(t), i, t) for i, t in enumerate(tasks)]
    return [t for *_, t in sorted(keyed, key=lambda k: (k[0] > 0, k[0] // 16, k[1], k[2]))]


def tune(mod: "tvm.IRModule", target: Target, directory: Path, trials: int,
         trials_per_task: int | None = None, cost_model: str = "xgb", verbose: bool = False,
         trials_per_iter: int = 16) -> int:
    """Run MetaSchedule on `mod` for `target` with a budget of `trials` measured candidates,
    adding the records to the JSON database in `directory`. Returns the records added.

    The tasks (one per fused kernel, the very PrimFuncs compile_analyzed looks up) are visited
    round robin in task_order, `trials_per_iter` candidates a visit, so repeated calls spread
    the budget over all kernels, heaviest first, instead of re-tuning the same few."""
    import logging

    from tvm.s_tir import meta_schedule as ms

    # MetaSchedule (re)configures its loggers on every tune: drop the handlers of an earlier run
    # (it chokes on their names), and keep its console handler to warnings unless asked (the
    # full logs still go to <directory>/logs/)
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in list(ms_logger.handlers):
        handler.close()
        ms_logger.removeHandler(handler)
    ms_logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    before = record_count(directory)
    tgt = tvm_target(target)
    per_iter = max(1, min(trials_per_iter, trials))
    database = ms.database.JSONDatabase(work_dir=str(directory))
    tasks = task_order(ms.relax_integration.extract_tasks(fused_module(mod, target), tgt), database)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        extracted_tasks=tasks, work_dir=str(directory), seed=0)
    ms.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(directory),
        max_trials_global=trials, max_trials_per_task=trials_per_task, num_trials_per_iter=per_iter,
        database=database,
        builder=ms.builder.LocalBuilder(f_build=BUILD_FUNC, initializer=_builder_worker_init,
                                        timeout_sec=BUILD_TIMEOUT_S),
        cost_model=cost_model, task_scheduler="round-robin",
    )
    return record_count(directory) - before
