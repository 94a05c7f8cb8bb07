"""Entity history columns, computed point-in-time offline (what the entity store answers online).

``attach_history`` adds ``HISTORY_COLUMNS`` to raw rows using only records strictly before each
row (``entity_history.point_in_time_history``). The serving path gets the same columns from
``EntityStore.lookup``; the feature transformer reads them and never sees the raw history, so
training and serving compute the model's input the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..domain import pack_of
from ..entity_history import HISTORY_COLUMNS as _BASE_COLUMNS
from ..entity_history import TimeLike, point_in_time_history

PREFIX = "entity_"
HISTORY_COLUMNS: tuple[str, ...] = tuple(
    PREFIX + name for name in (*_BASE_COLUMNS, "account_age_days")
)
# Weight of the prior in the smoothed past positive rate, in pseudo-records.
PRIOR_STRENGTH = 5.0


@dataclass(frozen=True)
class HistorySpec:
    """Which columns hold the entity, time, label and creation time, and the rate prior
    (``entity`` is None when the contract has no entity key: the records have no history)."""

    entity: str | None
    timestamp: str
    label: str
    positive: str
    created_at: str | None
    prior_rate: float
    prior_strength: float

    def kwargs(self, frame: pd.DataFrame) -> dict:
        """Keyword arguments for the ``entity_history`` functions on ``frame``."""
        created = self.created_at if self.created_at and self.created_at in frame else None
        return {
            "entity": self.entity,
            "timestamp": self.timestamp,
            "label": self.label,
            "positive": self.positive,
            "prior_rate": self.prior_rate,
            "prior_strength": self.prior_strength,
            "created_at": created,
        }


def history_spec(cfg) -> HistorySpec:
    """The history definition from the contract.

    The prior rate is the middle of the contract's plausible positive-rate band: a fixed
    value, so the offline columns and the store agree without sharing fitted state (the
    feature transformer re-smooths the counts with the training rate).
    """
    bounds = cfg.data.positive_rate
    created_at = entity_created_column(cfg)
    return HistorySpec(
        entity=cfg.data.entity,
        timestamp=cfg.data.timestamp,
        label=cfg.data.column("label").name,
        positive=cfg.problem.positive_class,
        created_at=created_at,
        prior_rate=(bounds.min + bounds.max) / 2,
        prior_strength=PRIOR_STRENGTH,
    )


def entity_created_column(cfg) -> str | None:
    """The datetime column holding when the entity came to be (its account age): the one the
    domain pack names, else ``<entity key>_created_at``; None when the contract has neither."""
    entity = cfg.data.entity
    if entity is None:
        return None
    name = pack_of(cfg).entity_created_at or f"{entity}_created_at"
    column = next((c for c in cfg.data.columns if c.name == name), None)
    return name if column is not None and column.dtype == "datetime" else None


def history_columns(cfg) -> tuple[str, ...]:
    """The history columns rows carry under this contract (none without an entity key)."""
    return HISTORY_COLUMNS if cfg.data.entity else ()


def attach_history(
    cfg,
    df: pd.DataFrame,
    *,
    earlier: pd.DataFrame | None = None,
    label_cutoff: TimeLike | None = None,
) -> pd.DataFrame:
    """``df`` (same index and order) plus ``HISTORY_COLUMNS``, computed point-in-time.

    Each row sees only records strictly before it: rows of ``df`` and of ``earlier`` (records
    known before ``df``, e.g. the training split when ``df`` is validation). A label counts
    only if its record is before ``min(row time, label_cutoff)``. Existing history columns
    are replaced. Raises ``ValueError`` when the entity or timestamp column is missing.
    Without an entity key in the contract there is no history: ``df`` is returned as it is.
    """
    spec = history_spec(cfg)
    if spec.entity is None:
        return df.drop(columns=[c for c in HISTORY_COLUMNS if c in df.columns])
    for frame, name in ((df, "rows"), (earlier, "earlier")):
        if frame is None:
            continue
        absent = [c for c in (spec.entity, spec.timestamp) if c not in frame.columns]
        if absent:
            raise ValueError(f"attach_history: {name} lack column(s) {', '.join(absent)}")

    wanted = [spec.entity, spec.timestamp, spec.label]
    if spec.created_at:
        wanted.append(spec.created_at)
    parts = [f[[c for c in wanted if c in f.columns]] for f in (earlier, df) if f is not None]
    combined = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    combined = combined.reset_index(drop=True)
    history = point_in_time_history(
        combined, **spec.kwargs(combined), label_cutoff=label_cutoff
    ).iloc[len(combined) - len(df) :]
    if "account_age_days" not in history:
        history = history.assign(account_age_days=float("nan"))
    history = history.rename(columns=lambda c: PREFIX + c)[list(HISTORY_COLUMNS)]
    history.index = df.index
    out = df.drop(columns=[c for c in HISTORY_COLUMNS if c in df.columns])
    return pd.concat([out, history], axis=1)
