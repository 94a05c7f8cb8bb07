"""Numeric columns (role ``numeric``): the value as a float, and a missing flag for nullable ones.

A missing value becomes the training median, so a tree or a linear model sees an ordinary value
and the flag tells it the value was absent. Values beyond float32 (the model input's precision),
infinities included, are clipped to its largest finite value. Names: ``num_<column>`` and
``num_<column>_missing``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .columns import Columns, as_columns

FLOAT32_MAX = float(np.finfo(np.float32).max)


class NumericFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """One float per column (missing -> training median), plus a flag per nullable column."""

    def __init__(self, columns: tuple[str, ...] = (), nullable: tuple[str, ...] = ()):
        self.columns = columns
        self.nullable = nullable

    @property
    def consumes(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def fit(self, df: pd.DataFrame | Columns, y=None, **_):
        """Learn each column's median over its training values (0 when it has none)."""
        cols = as_columns(df)
        self.medians_ = {}
        for name in self.columns:
            values = clip_float32(cols.numbers(name))
            present = values[~np.isnan(values)]
            self.medians_[name] = float(np.median(present)) if present.size else 0.0
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = []
        for name in self.columns:
            names.append(f"num_{name}")
            if name in self.nullable:
                names.append(f"num_{name}_missing")
        return np.array(names, dtype=object)

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        return fill_missing(cols, self.columns, self.nullable, self.medians_, cols.numbers)


def fill_missing(cols: Columns, columns, nullable, medians: dict, read) -> np.ndarray:
    """Per column ``read(column)`` clipped to float32, NaN -> its median, then for a nullable
    column its missing flag. Written into one array: a 1-row request pays few numpy calls."""
    width = len(columns) + sum(c in nullable for c in columns)
    out = np.empty((len(cols), width))
    j = 0
    for name in columns:
        values = clip_float32(read(name))
        missing = np.isnan(values)
        out[:, j] = values
        out[missing, j] = medians[name]
        j += 1
        if name in nullable:
            out[:, j] = missing
            j += 1
    return out


def clip_float32(values: np.ndarray) -> np.ndarray:
    """Finite values within float32; NaN stays NaN (missing)."""
    # Two ufuncs: np.clip costs several times more on the arrays of one request.
    return np.minimum(np.maximum(values, -FLOAT32_MAX), FLOAT32_MAX)
