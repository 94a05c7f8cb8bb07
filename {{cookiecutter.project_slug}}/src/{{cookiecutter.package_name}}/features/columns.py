"""Read-once column access for the feature families.

Each pandas column access costs ~20 us, which dominates the transform of a single request: the
families read a frame through ``Columns``, which converts each column once (to a list of str or
a float array) and memoizes values shared between families (the joined text, sender domains).
Frames of a few rows (serving requests) are read cell by cell with ``DataFrame.iat``, which
skips building a Series; both paths yield the same Python values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

# Up to this many rows, cells are read one by one (cheaper than building a Series per column).
SMALL_FRAME = 4


class Columns:
    """A frame's columns as Python strings / float arrays, each converted at most once."""

    def __init__(self, df: pd.DataFrame):
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
        """The column as float64 (unparseable or missing values, or a missing column: NaN)."""
        if name is None or name not in self.names:
            return np.full(self.n, np.nan)
        return self.memo(("num", name), lambda: self._numbers(name))

    def _values(self, name: str) -> list:
        return cells(self.df, name)

    def _numbers(self, name: str) -> np.ndarray:
        if self.n <= SMALL_FRAME:
            return np.array([_float(v) for v in self._values(name)], dtype=np.float64)
        series = self.df[name]
        try:
            return np.asarray(series, dtype=np.float64)
        except (TypeError, ValueError):  # nullable integers with NA, text, ...
            return pd.to_numeric(series, errors="coerce").to_numpy(np.float64, na_value=np.nan)


def cells(df: pd.DataFrame, name: str) -> list:
    """The values of column ``name`` as a list (cell by cell for a few rows: no Series)."""
    if len(df) <= SMALL_FRAME:
        j = df.columns.get_loc(name)
        return [df.iat[i, j] for i in range(len(df))]
    return df[name].tolist()


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # None, pd.NA, text
        return np.nan


def as_columns(data: pd.DataFrame | Columns) -> Columns:
    """``data`` itself when already wrapped, else a new ``Columns`` over the frame."""
    return data if isinstance(data, Columns) else Columns(data)
