"""`python:` steps: load `file.py:function`, run it on the host with inputs of the declared
shapes, time it (median), and record its outputs' names, dtypes and shapes."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from planner.profiling.errors import ProfilingInputError
from planner.profiling.measure import Timing, sample_inputs, time_callable
from planner.profiling.table import NodeSignature
from planner.app.tensors import TensorSpec, dtype_name
from planner_runtime.steps import step_failure

# python steps are cheap to time but may be slow: fewer, shorter repeats than models
REPEAT = 5
MIN_REPEAT_MS = 50


@dataclass
class StepProfile:
    timing: Timing
    signature: NodeSignature
    memory_mb: float  # the arrays it takes and gives


@contextlib.contextmanager
def step_errors(failed: str, file: str) -> Iterator[None]:
    """What a step raises, as one error naming its file: an exception, and also a SystemExit
    (sys.exit() in the step) or another BaseException, which would otherwise end the planner
    silently with the step's exit code. A KeyboardInterrupt stays one: it is the user's Ctrl-C."""
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise ProfilingInputError(f"{failed}: {step_failure(exc)}", file=file) from None


def load_function(path: Path, function: str) -> Callable:
    path = Path(path)
    if not path.is_file():
        raise ProfilingInputError("python step file not found", file=str(path))
    name = f"planner_step_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with step_errors("importing it failed", str(path)):
        spec.loader.exec_module(module)
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ProfilingInputError(f"has no function {function!r}", file=str(path))
    return fn


def profile_step(fn: Callable, inputs: list[TensorSpec], file: str) -> StepProfile:
    args = sample_inputs(inputs)
    failed = f"{fn.__name__} failed on inputs of the declared shapes"
    with step_errors(failed, file):
        result = fn(**args)
    if not isinstance(result, dict) or not result:
        raise ProfilingInputError(f"{fn.__name__} must return a dict of numpy arrays, got {type(result).__name__}",
                                  file=file)
    outputs = []
    for name, value in result.items():
        arr = np.asarray(value)
        try:
            outputs.append(TensorSpec(name=str(name), dtype=dtype_name(arr.dtype), shape=tuple(arr.shape)))
        except ValueError as exc:
            raise ProfilingInputError(f"{fn.__name__} output {name!r}: {exc}", file=file) from None
    with step_errors(f"{failed} when timed", file):
        timing = time_callable(lambda: fn(**args), REPEAT, MIN_REPEAT_MS)
    nbytes = sum(a.nbytes for a in args.values()) + sum(np.asarray(v).nbytes for v in result.values())
    return StepProfile(timing=timing, signature=NodeSignature(inputs=list(inputs), outputs=outputs),
                       memory_mb=nbytes / 1e6)
