"""Read-once column access for the feature families.

Each pandas column access costs ~20 us, which dominates the transform of a single request: the
families read a frame through ``Columns``, which converts each column once (to a list of str,
a float array, category keys or epoch seconds) and memoizes values shared between families (the
joined text). Frames of a few rows (serving requests) are read cell by cell with
``DataFrame.iat``, which skips building a Series; a request's ``tables.RecordTable`` (no pandas)
hands over its lists. Cells of object columns are converted one by one on every path, so a row
gives the same values alone as in a batch whatever a client sent; only frame columns of a
numeric or datetime dtype, and a table's numeric arrays, take the vectorised path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from ..tables import SMALL_FRAME, RecordTable, cells

# Time strings are read only in ISO 8601 form: pandas would also take "now" or "today".
_ISO_DATE = re.compile(r"\s*[+-]?\d{4}-\d{2}-\d{2}")
NS_PER_SECOND = 1_000_000_000
_PER_SECOND = {"ms": 1_000, "us": 1_000_000, "ns": NS_PER_SECOND}


class Columns:
    """A frame's (or a ``RecordTable``'s) columns as Python strings / float arrays, each
    converted at most once."""

    def __init__(self, df: pd.DataFrame | RecordTable):
        self.df = df
        self.names = frozenset(df.columns)
        self.n = len(df)
        self._memo: dict[Any, Any] = {}

    def __len__(self) -> int:
        return self.n

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key (for values several families need)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def strings(self, name: str | None) -> list[str]:
        """The column as a list of str; missing values or a missing column become ""."""
        if name is None or name not in self.names:
            return [""] * self.n
        return self.memo(
            ("str", name), lambda: [v if isinstance(v, str) else "" for v in self._values(name)]
        )

    def numbers(self, name: str | None) -> np.ndarray:
        """The column as float64 (unparseable or missing values, or a missing column: NaN;
        a number beyond float64: +-inf)."""
        if name is None or name not in self.names:
            return np.full(self.n, np.nan)
        return self.memo(("num", name), lambda: self._numbers(name))

    def categories(self, name: str | None) -> list[str | None]:
        """The column as category keys: str, None when missing or empty (see ``category_key``)."""
        if name is None or name not in self.names:
            return [None] * self.n
        return self.memo(("cat", name), lambda: [category_key(v) for v in self._values(name)])

    def seconds(self, name: str | None) -> np.ndarray:
        """The column as whole seconds since 1970-01-01 UTC, float64 (NaN when missing or not
        a time; naive times are UTC)."""
        if name is None or name not in self.names:
            return np.full(self.n, np.nan)
        return self.memo(("sec", name), lambda: self._seconds(name))

    def _values(self, name: str) -> list:
        return cells(self.df, name)

    def _numbers(self, name: str) -> np.ndarray:
        if isinstance(self.df, RecordTable):
            values = self.df.column(name)
            if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
                return values.astype(np.float64)
        elif self.n > SMALL_FRAME:
            series = self.df[name]
            dtype = series.dtype
            if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
                return series.to_numpy(np.float64, na_value=np.nan)
        return np.array([_float(v) for v in self._values(name)], dtype=np.float64)

    def _seconds(self, name: str) -> np.ndarray:
        if self.n > SMALL_FRAME and not isinstance(self.df, RecordTable):
            series = self.df[name]
            if isinstance(series.dtype, pd.DatetimeTZDtype):
                series = series.dt.tz_convert("UTC").dt.tz_localize(None)
            if pd.api.types.is_datetime64_dtype(series.dtype):
                return _epoch_seconds(series.to_numpy())
        return np.array([time_seconds(v) for v in self._values(name)], dtype=np.float64)


def _float(value) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float64
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):  # None, pd.NA, text
        return np.nan


def category_key(value) -> str | None:
    """A cell as a category: None for missing (None, NaN, NA, NaT) or empty text; a whole
    number as its integer text, so 3, 3.0 and np.int64(3) are one category ("3") whether the
    column was read as int or, holding a null, as float."""
    if isinstance(value, str):
        return value or None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if value != value:
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def time_seconds(value) -> float:
    """One cell as whole seconds since 1970 UTC (NaN unless a time or an ISO 8601 string)."""
    if isinstance(value, pd.Timestamp):  # what serving frames hold: the fast path
        stamp = value
    elif _time_like(value):
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError, OverflowError):  # unparseable or beyond pandas' range
            return np.nan
    else:
        return np.nan
    if stamp is pd.NaT:
        return np.nan
    try:
        # Nanoseconds since the epoch in UTC (wall time read as UTC when naive), floored.
        return float(stamp.value // NS_PER_SECOND)
    except OverflowError:  # beyond datetime64[ns]: its own unit
        return float(_epoch_seconds(np.array([stamp.asm8]))[0])


def _time_like(value) -> bool:
    if isinstance(value, str):
        return bool(_ISO_DATE.match(value))
    return isinstance(value, datetime | date | np.datetime64)


def _epoch_seconds(values: np.ndarray) -> np.ndarray:
    """datetime64 values (naive UTC) -> whole seconds (floored) as float64, NaT -> NaN."""
    unit, count = np.datetime_data(values.dtype)
    missing = np.isnat(values)
    if unit in _PER_SECOND and count == 1:
        out = np.floor_divide(values.astype(np.int64), _PER_SECOND[unit]).astype(np.float64)
    else:  # seconds or coarser: exact
        out = values.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    out[missing] = np.nan
    return out


def as_columns(data: pd.DataFrame | RecordTable | Columns) -> Columns:
    """``data`` itself when already wrapped, else a new ``Columns`` over the frame."""
    return data if isinstance(data, Columns) else Columns(data)
