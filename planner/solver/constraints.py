"""The constraint families a plan must meet, as one key type that the CP-SAT model, the
evaluator, the explainer and the report share: nothing is recognized by its message.

A key is a family and, for the families that apply to one thing, its subject: `slo`,
`cost_cap`, `route`, `memory:<site>`, `replicas:<site>`, `pin:<model>`; the report also keys
a path's SLO headroom as `slo:<source>-><sink>`. In JSON (plan.json) a key is that string.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema


class Family(str, Enum):
    SLO = "slo"  # constraints.latency_ms over every source->sink path
    COST_CAP = "cost_cap"  # constraints.cost_per_hour
    MEMORY = "memory"  # sites.<s>.memory_mb, per replica
    REPLICAS = "replicas"  # sites.<s>.max_replicas
    PIN = "pin"  # models.<m>.sites
    ROUTE = "route"  # a flow between two sites no link path joins


@dataclass(frozen=True, order=True)
class ConstraintKey:
    family: Family
    subject: str | None = None

    def __str__(self) -> str:
        return self.family.value if self.subject is None else f"{self.family.value}:{self.subject}"

    @classmethod
    def parse(cls, text: str) -> ConstraintKey:
        family, sep, subject = text.partition(":")
        try:
            return cls(Family(family), subject if sep else None)
        except ValueError:
            raise ValueError(f"unknown constraint {text!r} (families: {', '.join(f.value for f in Family)})") from None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: Any) -> ConstraintKey:
            return value if isinstance(value, ConstraintKey) else cls.parse(str(value))

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"),
            json_schema_input_schema=core_schema.str_schema())


SLO = ConstraintKey(Family.SLO)
COST_CAP = ConstraintKey(Family.COST_CAP)
ROUTE = ConstraintKey(Family.ROUTE)


def memory(site: str) -> ConstraintKey:
    return ConstraintKey(Family.MEMORY, site)


def replicas(site: str) -> ConstraintKey:
    return ConstraintKey(Family.REPLICAS, site)


def pin(model: str) -> ConstraintKey:
    return ConstraintKey(Family.PIN, model)


@dataclass(frozen=True)
class Violation:
    """A constraint a placement breaks, and by how much, in words."""

    key: ConstraintKey
    message: str

    def __str__(self) -> str:
        return self.message
