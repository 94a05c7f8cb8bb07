"""The core feature families, one per column role, over the columns no domain family reads.

``role_families(cfg, consumed)`` gives every contract column of the roles ``numeric``,
``categorical``, ``timestamp``, ``datetime`` and ``flags`` that is not in ``consumed`` (the
columns the domain's own families declare) to the family of its role. A column a user adds to
the contract is therefore a feature without code; a role without columns adds no family.
"""

from __future__ import annotations

from .categorical import CategoricalFeatures
from .clock import DatetimeFeatures, TimestampFeatures
from .flags import FlagFeatures
from .numeric import NumericFeatures


def role_families(cfg, consumed: set[str] | frozenset[str] = frozenset()) -> list:
    """Unfitted role families for the contract's columns outside ``consumed`` (none empty)."""

    def free(role: str) -> list:
        return [c for c in cfg.data.columns_with(role) if c.name not in consumed]

    def names(columns: list) -> tuple[str, ...]:
        return tuple(c.name for c in columns)

    def nullable(columns: list) -> tuple[str, ...]:
        return tuple(c.name for c in columns if c.nullable)

    numeric, datetimes = free("numeric"), free("datetime")
    timestamp = cfg.data.column("timestamp").name
    families = [
        NumericFeatures(names(numeric), nullable=nullable(numeric)),
        CategoricalFeatures(names(free("categorical"))),
        TimestampFeatures(timestamp if timestamp not in consumed else None),
        DatetimeFeatures(names(datetimes), timestamp=timestamp, nullable=nullable(datetimes)),
        FlagFeatures(names(free("flags"))),
    ]
    return [family for family in families if family.consumes]
