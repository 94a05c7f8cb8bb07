"""The span of time every stage can hold, and a checked conversion to nanoseconds.

The stages compute on ``datetime64[ns]`` (pandas' default unit), which holds 1677-09-21 to
2262-04-11 only: a record dated year 102 (an obsolete two-digit year read literally) is readable as
microseconds but overflows at the first conversion. The contract's datetime bounds must lie
inside ``EARLIEST`` .. ``LATEST`` (whole days inside that range), so validation quarantines
anything a stage could not hold; a stage handed such a value anyway refuses it in one line
(``ns_times``) instead of raising deep inside pandas.

pandas is imported inside ``to_ns``: the contract loads these bounds without it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)
_SHOWN = 3


class TimeRangeError(ValueError):
    """Times outside ``EARLIEST`` .. ``LATEST``; the message names the column and the values."""


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC (a naive time is taken as UTC); ValueError when the offset carries it
    past year 1 or 9999, e.g. 0001-01-01T00:00+05:00, which ``astimezone`` cannot represent
    (its OverflowError would escape a validator as a server error)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{value.isoformat()} is outside the dates a datetime holds once moved to UTC"
        ) from None


def utc_times(values: pd.Series) -> pd.Series:
    """Times as UTC datetimes (any unit); naive times are taken as UTC, text as ISO 8601."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return pd.to_datetime(values, utc=True)
    return pd.to_datetime(values, utc=True, format="ISO8601")


def out_of_range(values: pd.Series, what: str) -> str | None:
    """Why ``values`` cannot be held as ``datetime64[ns]`` (one line naming ``what``), or None."""
    times = utc_times(values)
    present = times.dropna()
    outside = present[(present < EARLIEST) | (present > LATEST)]
    if outside.empty:
        return None
    shown = ", ".join(t.isoformat() for t in outside.head(_SHOWN))
    more = ", ..." if len(outside) > _SHOWN else ""
    return (
        f"{what}: {len(outside):,} of {len(values):,} values outside the time range "
        f"{EARLIEST.date()} .. {LATEST.date()} ({shown}{more}); run `data validate` first, "
        "which quarantines them"
    )


def ns_times(values: pd.Series, what: str) -> pd.Series:
    """Times as naive UTC ``datetime64[ns]`` (NaT where missing), aligned with ``values``.

    Raises :class:`TimeRangeError` naming ``what`` when a value is outside the range.
    """
    problem = out_of_range(values, what)
    if problem:
        raise TimeRangeError(problem)
    return utc_times(values).dt.tz_localize(None).astype("datetime64[ns]")
