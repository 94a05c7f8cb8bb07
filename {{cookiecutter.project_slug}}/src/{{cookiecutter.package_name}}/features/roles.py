"""The core feature families, one per column role, over the columns no domain family reads.

``role_families(cfg, consumed, skip_roles=...)`` gives every contract column of the roles
``numeric``, ``categorical``, ``timestamp``, ``datetime`` and ``flags`` that is not in
``consumed`` (the columns the domain's own families declare) to the family of its role, unless
the domain skips that role. A column a user adds to the contract is therefore a feature without
code; a role without columns adds no family.
"""

from __future__ import annotations

from .categorical import CategoricalFeatures
from .clock import DatetimeFeatures, TimestampFeatures
from .flags import FlagFeatures
from .numeric import NumericFeatures


def role_families(
    cfg,
    consumed: set[str] | frozenset[str] = frozenset(),
    *,
    skip_roles: frozenset[str] = frozenset(),
) -> list:
    """Unfitted role families for the contract's columns outside ``consumed``, for the roles
    not in ``skip_roles`` (a family without columns is left out)."""

    def free(role: str) -> list:
        if role in skip_roles:
            return []
        return [c for c in cfg.data.columns_with(role) if c.name not in consumed]

    def names(columns: list) -> tuple[str, ...]:
        return tuple(c.name for c in columns)

    def nullable(columns: list) -> tuple[str, ...]:
        return tuple(c.name for c in columns if c.nullable)

    numeric, datetimes = free("numeric"), free("datetime")
    clock = free("timestamp")
    families = [
        NumericFeatures(names(numeric), nullable=nullable(numeric)),
        CategoricalFeatures(names(free("categorical"))),
        TimestampFeatures(clock[0].name if clock else None),
        # Ages are measured at the record's time, whether or not its clock is a feature.
        DatetimeFeatures(
            names(datetimes),
            timestamp=cfg.data.timestamp,
            nullable=nullable(datetimes),
        ),
        FlagFeatures(names(free("flags"))),
    ]
    return [family for family in families if family.consumes]
