"""Time columns: the record's hour and weekday (role ``timestamp``), ages of other times (``datetime``).

``ts_<column>_hour`` (0-23) and ``ts_<column>_weekday`` (0 = Monday) are read in UTC, as every
time in the project is. Their distribution in a window of traffic follows the clock, not the
data, until the window spans their cycle (``cycle_hours``): monitoring judges them only then. They are plain integers, not sine/cosine pairs: the models are trees,
which cut an hour range (night, office hours) with two splits on one column, while a cyclic
pair spreads the same cut over two columns. A missing time gives -1 for both.

``dt_<column>_age_days`` is the record's time minus the column's time, in days (negative when
the column's time is later), e.g. the age of an account when it sends; a missing time gives the
training median and, for a nullable column, ``dt_<column>_missing`` = 1.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .columns import Columns, as_columns
from .numeric import clip_float32, fill_missing

DAY = 86_400.0
# 1970-01-01 was a Thursday: weekday 3 when Monday is 0.
EPOCH_WEEKDAY = 3


class TimestampFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Hour of day and weekday (UTC) of the record's timestamp column (2 columns)."""

    def __init__(self, column: str | None = None):
        self.column = column

    @property
    def consumes(self) -> tuple[str, ...]:
        return (self.column,) if self.column else ()

    def fit(self, df: pd.DataFrame | Columns, y=None, **_):
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        if not self.column:
            return np.array([], dtype=object)
        return np.array([f"ts_{self.column}_hour", f"ts_{self.column}_weekday"], dtype=object)

    def cycle_hours(self) -> dict[str, float]:
        """Hours of each output's cycle: a shorter window shows part of it, however steady."""
        hour, weekday = self.get_feature_names_out() if self.column else ((), ())
        return {hour: 24.0, weekday: 168.0} if self.column else {}

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        if not self.column:
            return np.empty((len(cols), 0))
        # Python per row, as for text: a 1-row request pays no array overheads.
        rows = [_hour_weekday(s) for s in cols.seconds(self.column).tolist()]
        return np.array(rows, dtype=np.float64).reshape(len(cols), 2)


def _hour_weekday(seconds: float) -> tuple[float, float]:
    if seconds != seconds:  # NaN: no time
        return -1.0, -1.0
    days, rest = divmod(seconds, DAY)
    return rest // 3600.0, (days + EPOCH_WEEKDAY) % 7


class DatetimeFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Age in days of each datetime column at the record's time, plus a flag if nullable."""

    def __init__(
        self,
        columns: tuple[str, ...] = (),
        timestamp: str | None = None,
        nullable: tuple[str, ...] = (),
    ):
        self.columns = columns
        self.timestamp = timestamp
        self.nullable = nullable

    @property
    def consumes(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def _ages(self, cols: Columns, name: str) -> np.ndarray:
        return (cols.seconds(self.timestamp) - cols.seconds(name)) / DAY

    def fit(self, df: pd.DataFrame | Columns, y=None, **_):
        """Learn each column's median age (0 when it has none)."""
        cols = as_columns(df)
        self.medians_ = {}
        for name in self.columns:
            ages = clip_float32(self._ages(cols, name))
            present = ages[~np.isnan(ages)]
            self.medians_[name] = float(np.median(present)) if present.size else 0.0
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = []
        for name in self.columns:
            names.append(f"dt_{name}_age_days")
            if name in self.nullable:
                names.append(f"dt_{name}_missing")
        return np.array(names, dtype=object)

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        ages = partial(self._ages, cols)
        return fill_missing(cols, self.columns, self.nullable, self.medians_, ages)
