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
        blocks = []
        for name in self.columns:
            values = clip_float32(cols.numbers(name))
            missing = np.isnan(values)
            blocks.append(np.where(missing, self.medians_[name], values))
            if name in self.nullable:
                blocks.append(missing.astype(np.float64))
        return np.column_stack(blocks) if blocks else np.empty((len(cols), 0))


def clip_float32(values: np.ndarray) -> np.ndarray:
    """Finite values within float32; NaN stays NaN (missing)."""
    return np.clip(values, -FLOAT32_MAX, FLOAT32_MAX)
