"""planner calibrate: measure the calibration model set on a target and write its calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from planner.cli.common import err, out, user_errors
from planner.errors import InputError


def resolve_target(spec: str):
    """A catalog name (`planner targets`), or a YAML file with a target's keys (as a catalog
    file, or an app.yaml's inline target)."""
    import yaml
    from pydantic import ValidationError

    from planner.app.targets import get_target, target_from_inline

    path = Path(spec)
    if path.suffix not in (".yaml", ".yml"):
        try:
            return get_target(spec)
        except LookupError as exc:
            raise InputError(f"--target: {str(exc).strip(chr(34) + chr(39))} (or a target YAML file)") from None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"target file cannot be read: {type(exc).__name__}", file=str(path)) from None
    try:
        return target_from_inline(data if isinstance(data, dict) else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(f"not a target: {where}: {first['msg']}", file=str(path)) from None


@user_errors
def calibrate(
    target: Annotated[str, typer.Option("--target", help="a catalog target name or a target YAML file")] = "host",
    rpc: Annotated[Optional[str], typer.Option("--rpc", help="HOST:PORT of the TVM RPC tracker the device "
                                               "is registered with (measure there, not here)")] = None,
    key: Annotated[Optional[str], typer.Option("--key", help="the device's key at the tracker")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("-o", "--out", help="where to write <target>.yaml (default: "
                                                    "$PLANNER_CALIBRATION_DIR or ~/.local/share/planner/"
                                                    "calibration, read before the shipped profiles/calibration/)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing calibration of the target")] = False,
) -> None:
    """Measure a fixed set of small models on a target (this host, or a device through TVM's RPC
    tracker) and write the efficiency its estimates use (README, Profiling)."""
    from planner.profiling.calibrate import calibrate as run, parse_rpc
    from planner.profiling.calibration_models import MODELS
    from planner.profiling.locations import default_calibration_dir

    tgt = resolve_target(target)
    endpoint = parse_rpc(rpc, key)
    counter = iter(range(1, len(MODELS) + 1))
    path, cal = run(tgt, out_dir or default_calibration_dir(), rpc=endpoint, force=force,
                    step=lambda name: err.print(f"[{next(counter)}/{len(MODELS)}] {name}", highlight=False))
    table = Table(title=f"calibration of {cal.name}")
    for col in ("engine", "model", "measured ms", "roofline ms", "efficiency", "residual %", "leave-one-out %"):
        table.add_column(col, justify="left" if col in ("engine", "model") else "right")
    for fit in cal.fits:
        for m in fit.models:
            table.add_row(fit.engine, m.name, f"{m.measured_ms:.4g}", f"{m.roofline_ms:.4g}", f"{m.efficiency:.3g}",
                          f"{m.residual_pct:.0f}", "-" if m.loo_residual_pct is None else f"{m.loo_residual_pct:.0f}")
    out.print(table)
    for fit in cal.fits:
        error = "unknown" if fit.expected_error_pct is None else f"{fit.expected_error_pct:.0f} %"
        out.print(f"{fit.engine} {fit.tuning}: efficiency {fit.efficiency:.3g} (median), expected error {error} "
                  f"(largest leave-one-out residual), {fit.threads} threads", highlight=False)
    out.print(f"load per core: {cal.load_per_core}; written {path}", highlight=False)
