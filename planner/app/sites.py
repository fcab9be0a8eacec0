"""Sites with their hardware target resolved from the catalog (or given inline)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from planner.app import targets
from planner.app.loader import LoadedApp
from planner.app.spec import RpcEndpoint, Tier
from planner.app.targets import Target
from planner.errors import format_key, shown


@dataclass(frozen=True)
class ResolvedSite:
    name: str
    tier: Tier
    target: Target
    target_name: str
    cost_per_hour: float
    memory_mb: float
    max_replicas: int
    rpc: RpcEndpoint | None


def resolve_sites(loaded: LoadedApp) -> dict[str, ResolvedSite]:
    """Every site with its target; an unknown or malformed target is an InputError at its key."""
    out = {}
    for name, site in loaded.app.sites.items():
        key = ("sites", name, "target")
        try:
            if isinstance(site.target, str):
                target = targets.get_target(site.target)
            else:
                target = targets.target_from_inline(site.target)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = format_key(first["loc"])
            got = f", got {shown(first['input'])}" if first["type"] not in ("missing", "value_error") else ""
            message = first["msg"].removeprefix("Value error, ")
            raise loaded.error(f"inline target: {where}: {message}{got}", key) from None
        except (LookupError, ValueError) as exc:
            raise loaded.error(str(exc).strip("'\""), key) from None
        out[name] = ResolvedSite(
            name=name,
            tier=site.tier,
            target=target,
            target_name=target.name,
            cost_per_hour=site.cost_per_hour if site.cost_per_hour is not None else target.cost_per_hour,
            memory_mb=site.memory_mb if site.memory_mb is not None else target.memory_mb,
            max_replicas=site.max_replicas,
            rpc=site.rpc,
        )
    return out
