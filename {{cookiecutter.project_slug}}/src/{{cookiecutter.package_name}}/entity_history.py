"""Point-in-time history of an entity: what was known about it when a record arrived.

For each record only records of the same entity STRICTLY before its timestamp count (records at
the same instant are excluded, and so is the record itself). Labels arrive later than records, so
with ``label_cutoff`` a label counts only if its record is strictly before
``min(record time, label_cutoff)``: a store materialized at training time knows labels up to its
cutoff, and training features must not know more than serving will.

The same definitions serve two callers: the features stage (``point_in_time_history`` over a
whole data set, vectorised: sort once, cumulative sums, binary searches) and the entity store
(``snapshot_entity_stats``: one row per entity as of a time, what serving looks up). No stage is
imported here.

Columns produced (generic names; callers may prefix them):

- ``past_count``: records of the entity before this one;
- ``past_labeled`` / ``past_positive``: of those, records whose label was known / positive;
- ``past_positive_rate``: ``(past_positive + prior_rate * prior_strength) /
  (past_labeled + prior_strength)``, the past rate shrunk towards the prior for young entities;
- ``count_1h`` / ``count_24h``: records in ``[t - window, t)`` (sending velocity);
- ``seconds_since_prev``: time since the entity's previous record (NaN for the first);
- ``account_age_days``: age of the account at send time, when ``created_at`` is given.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime

import numpy as np
import pandas as pd

from .timebounds import ns_times

# Velocity windows: output column -> window length in seconds.
VELOCITY_WINDOWS = {"count_1h": 3_600, "count_24h": 86_400}
HISTORY_COLUMNS = (
    "past_count",
    "past_labeled",
    "past_positive",
    "past_positive_rate",
    *VELOCITY_WINDOWS,
    "seconds_since_prev",
)
_NS_PER_SECOND = 1_000_000_000
_NS_PER_DAY = 86_400 * _NS_PER_SECOND

TimeLike = datetime | pd.Timestamp | str


def _ns(values: pd.Series, what: str) -> np.ndarray:
    """Times as int64 nanoseconds since the epoch (UTC); refuses missing or unholdable times."""
    times = ns_times(values, what)
    if times.isna().any():
        raise ValueError(f"{int(times.isna().sum())} rows have no {what}")
    return times.to_numpy().view("int64")


def _ns_optional(values: pd.Series, what: str = "time") -> np.ndarray:
    """Like ``_ns`` but missing times become NaN (float nanoseconds)."""
    times = ns_times(values, what)
    out = times.to_numpy().view("int64").astype("float64")
    out[times.isna().to_numpy()] = np.nan
    return out


def _instant_ns(value: TimeLike) -> int:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value)


def _entity_codes(values: pd.Series) -> np.ndarray:
    """Integer code per entity; a missing entity is its own group (it has no history)."""
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    codes = codes.astype("int64")
    missing = codes < 0
    if missing.any():
        codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    return codes


def _labels(df: pd.DataFrame, label: str, positive: Hashable) -> tuple[np.ndarray, np.ndarray]:
    """(known, positive) per record; a missing label column means no label is known yet."""
    if label not in df.columns:
        unknown = np.zeros(len(df), dtype=bool)
        return unknown, unknown
    known = df[label].notna().to_numpy()
    return known, known & (df[label] == positive).fillna(False).to_numpy(dtype=bool)


def _smoothed(positives, labeled, prior_rate: float, prior_strength: float):
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positives + prior_rate * prior_strength) / (labeled + prior_strength)


def point_in_time_history(
    df: pd.DataFrame,
    *,
    entity: str,
    timestamp: str,
    label: str,
    positive: Hashable,
    prior_rate: float,
    prior_strength: float,
    label_cutoff: TimeLike | None = None,
    created_at: str | None = None,
) -> pd.DataFrame:
    """History of each record's entity using only strictly earlier records; aligned with ``df``.

    ``label_cutoff`` (optional) hides labels of records at or after it. ``created_at`` (optional
    column name) adds ``account_age_days`` at send time (NaN where unknown). Runs in O(n log n):
    one sort by (entity, time), cumulative sums, and binary searches for the windows.
    """
    n = len(df)
    times = _ns(df[timestamp], timestamp)
    codes = _entity_codes(df[entity])
    known, positives = _labels(df, label, positive)

    order = np.lexsort((times, codes))
    g, t = codes[order], times[order]
    positions = np.arange(n)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    new_time = new_group.copy()
    new_time[1:] |= t[1:] != t[:-1]
    # First sorted position of the entity, and of the records sharing this record's instant.
    group_start = np.maximum.accumulate(np.where(new_group, positions, 0))
    tie_start = np.maximum.accumulate(np.where(new_time, positions, 0))

    # Binary search for "first record of the entity at or after time q": rank all times (rows
    # and queries) jointly, then search the composite key entity * n_ranks + rank, which is
    # sorted in (entity, time) order and cannot overflow int64. Equal times get equal ranks
    # (first position in the sorted pool), so no de-duplication is needed.
    windows_ns = {name: t - seconds * _NS_PER_SECOND for name, seconds in VELOCITY_WINDOWS.items()}
    label_time = t if label_cutoff is None else np.minimum(t, _instant_ns(label_cutoff))
    values = np.sort(np.concatenate([t, *windows_ns.values(), label_time]))
    n_ranks = len(values)
    keys = g * n_ranks + np.searchsorted(values, t)

    def first_at_or_after(q: np.ndarray) -> np.ndarray:
        return np.searchsorted(keys, g * n_ranks + np.searchsorted(values, q), side="left")

    cum_known = np.concatenate([[0], np.cumsum(known[order])])
    cum_positive = np.concatenate([[0], np.cumsum(positives[order])])
    label_end = tie_start if label_cutoff is None else first_at_or_after(label_time)
    past_labeled = cum_known[label_end] - cum_known[group_start]
    past_positive = cum_positive[label_end] - cum_positive[group_start]
    has_prev = tie_start > group_start
    since_prev = np.full(n, np.nan)
    since_prev[has_prev] = (t[has_prev] - t[tie_start[has_prev] - 1]) / _NS_PER_SECOND

    sorted_columns = {
        "past_count": tie_start - group_start,
        "past_labeled": past_labeled,
        "past_positive": past_positive,
        "past_positive_rate": _smoothed(past_positive, past_labeled, prior_rate, prior_strength),
        **{name: tie_start - first_at_or_after(q) for name, q in windows_ns.items()},
        "seconds_since_prev": since_prev,
    }
    out = pd.DataFrame(index=df.index)
    for name, sorted_values in sorted_columns.items():
        values_in_input_order = np.empty_like(sorted_values)
        values_in_input_order[order] = sorted_values
        out[name] = values_in_input_order
    if created_at is not None:
        out["account_age_days"] = (times - _ns_optional(df[created_at], created_at)) / _NS_PER_DAY
    return out


def snapshot_entity_stats(
    df: pd.DataFrame,
    *,
    entity: str,
    timestamp: str,
    label: str,
    positive: Hashable,
    prior_rate: float,
    prior_strength: float,
    as_of: TimeLike,
    label_cutoff: TimeLike | None = None,
    created_at: str | None = None,
) -> pd.DataFrame:
    """One row per entity seen before ``as_of``: its history as of that instant.

    Each row equals what ``point_in_time_history`` gives a hypothetical new record of that
    entity at ``as_of`` (same columns), plus ``first_seen`` / ``last_seen`` and, with
    ``created_at``, the account's ``created_at`` (latest known value). This is what a training
    run materializes into the entity store; ``label_cutoff`` defaults to ``as_of``.
    """
    at = _instant_ns(as_of)
    cutoff = at if label_cutoff is None else min(at, _instant_ns(label_cutoff))
    times = _ns(df[timestamp], timestamp)
    known, positives = _labels(df, label, positive)
    before = (times < at) & df[entity].notna().to_numpy()
    labelled = before & (times < cutoff)
    frame = pd.DataFrame(
        {
            entity: df[entity].to_numpy()[before],
            "_t": times[before],
            "past_count": 1,
            "past_labeled": (labelled & known)[before].astype("int64"),
            "past_positive": (labelled & positives)[before].astype("int64"),
            **{
                name: (times[before] >= at - seconds * _NS_PER_SECOND).astype("int64")
                for name, seconds in VELOCITY_WINDOWS.items()
            },
        }
    )
    grouped = frame.groupby(entity, sort=True)
    stats = grouped[["past_count", "past_labeled", "past_positive", *VELOCITY_WINDOWS]].sum()
    first, last = grouped["_t"].min(), grouped["_t"].max()
    stats.insert(
        3,
        "past_positive_rate",
        _smoothed(stats["past_positive"], stats["past_labeled"], prior_rate, prior_strength),
    )
    stats["seconds_since_prev"] = (at - last) / _NS_PER_SECOND
    stats["first_seen"] = pd.to_datetime(first, unit="ns", utc=True)
    stats["last_seen"] = pd.to_datetime(last, unit="ns", utc=True)
    if created_at is not None:
        # The latest known creation time of each account (NaN-skipping "last" in time order).
        created = pd.DataFrame(
            {
                entity: frame[entity],
                "_t": frame["_t"],
                "ns": _ns_optional(df[created_at], created_at)[before],
            }
        )
        latest = created.sort_values("_t", kind="stable").groupby(entity)["ns"].last()
        created_ns = latest.reindex(stats.index).to_numpy()
        stats["created_at"] = pd.to_datetime(created_ns, unit="ns", utc=True)
        stats["account_age_days"] = (at - created_ns) / _NS_PER_DAY
    return stats.reset_index()
