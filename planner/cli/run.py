"""planner run: the whole ensemble in one process on this machine (the site runtime's executor)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli.common import AppPath, SetOption, err, out, user_errors
from planner.errors import InputError


@user_errors
def run(
    path: AppPath,
    inputs: Annotated[Optional[list[str]], typer.Option(
        "--input", help="SOURCE=FILE (or SOURCE.TENSOR=FILE): a .npy array, or an image (.png/.jpg) as uint8 RGB")] = None,
    engine: Annotated[Optional[str], typer.Option(
        help="tvm (models compiled for this host) or onnxruntime (the reference) for every ONNX model; "
             "default: the builds of --plan, else tvm")] = None,
    plan: Annotated[Optional[Path], typer.Option(
        help="OUT (or OUT/plan.json) of `planner solve`: each ONNX model runs the build the plan chose")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the sink tensors as JSON")] = False,
    save: Annotated[Optional[Path], typer.Option(help="also write the sink tensors to this .npz file")] = None,
    overrides: SetOption = None,
) -> None:
    """Run the ensemble once on this machine and print what reaches the sinks."""
    from planner.local.run import load_inputs, run_app

    if engine not in (None, "tvm", "onnxruntime"):
        raise InputError(f"--engine must be tvm or onnxruntime, got {engine!r}")
    with err.status("profiling and compiling for this host") as status:
        result = run_app(path, load_inputs(inputs or []), engine=engine, plan=plan, overrides=overrides or (),
                         progress=lambda msg: status.update(msg))
    if save is not None:
        import numpy as np

        np.savez(save, **{k: v for k, v in result.items()})
    if as_json:
        sys.stdout.write(json.dumps({k: v.tolist() if v.dtype != object else [_text(x) for x in v.ravel()]
                                     for k, v in result.items()}) + "\n")
    else:
        show(result, out)


def _text(x) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def show(result: dict, console) -> None:
    """Each sink tensor: a bytes tensor's strings, a small tensor's values, a large one's range."""
    import numpy as np

    for name, value in result.items():
        if value.dtype == object:
            lines = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value.ravel()]
            console.print(f"[bold]{name}[/] (bytes[{value.size}]):", highlight=False)
            for line in lines:
                if line:
                    console.print(f"  {line}", highlight=False, markup=False)
        else:
            head = f"[bold]{name}[/] {value.dtype}{list(value.shape)}"
            if value.size <= 16:
                console.print(f"{head} = {np.array2string(value, precision=4)}", highlight=False)
            else:
                console.print(f"{head}: min {value.min():.4g}, max {value.max():.4g}, mean {value.mean():.4g}",
                              highlight=False)
