"""planner targets: the hardware catalog."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from planner.cli.common import out, user_errors


@user_errors
def targets(as_json: Annotated[bool, typer.Option("--json", help="print the catalog as JSON")] = False) -> None:
    """List the hardware targets a site may name (profiles/targets/*.yaml)."""
    from planner.app.targets import catalog

    cat = catalog()
    if as_json:
        print(json.dumps({n: t.model_dump() for n, t in cat.items()}, indent=2))
        return
    table = Table(title="hardware targets (profiles/targets/)")
    for col in ("name", "tier", "TVM target", "GFLOP/s", "GB/s", "memory MB", "$/h"):
        table.add_column(col, no_wrap=True, justify="right" if col in ("GFLOP/s", "GB/s", "memory MB", "$/h") else "left")
    for t in cat.values():
        tvm = f"cuda {t.tvm_target['arch']}" if t.is_gpu else f"llvm {t.cpu_arch}"
        table.add_row(t.name, t.tier, tvm, f"{t.peak_gflops:g}", f"{t.mem_bandwidth_gbs:g}", f"{t.memory_mb:g}",
                      f"{t.cost_per_hour:g}")
    out.print(table)
    for t in cat.values():
        out.print(f"  {t.name}: {t.description}", highlight=False)
    out.print("Sources of every figure: `planner targets --json` or the YAML files.", highlight=False)
