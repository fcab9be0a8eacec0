"""planner run: the whole ensemble in one process on this machine (the site runtime's executor)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli import AppPath, SetOption, app, err, out, user_errors
from planner.errors import InputError


@app.command()
@user_errors
def run(
    path: AppPath,
    inputs: Annotated[Optional[list[str]], typer.Option(
        "--input", help="SOURCE=FILE (or SOURCE.TENSOR=FILE): a .npy array, or an image (.png/.jpg) as uint8 RGB")] = None,
    engine: Annotated[str, typer.Option(help="tvm (models compiled for this host) or onnxruntime (the reference)")] = "tvm",
    as_json: Annotated[bool, typer.Option("--json", help="print the sink tensors as JSON")] = False,
    save: Annotated[Optional[Path], typer.Option(help="also write the sink tensors to this .npz file")] = None,
    overrides: SetOption = None,
) -> None:
    """Run the ensemble once on this machine and print what reaches the sinks."""
    from planner.ensemble_run import load_inputs, run_app, show

    if engine not in ("tvm", "onnxruntime"):
        raise InputError(f"--engine must be tvm or onnxruntime, got {engine!r}")
    with err.status("profiling and compiling for this host") as status:
        result = run_app(path, load_inputs(inputs or []), engine=engine, overrides=overrides or (),
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
