"""Categorical columns (role ``categorical``): frequency share and smoothed target encoding.

Per column, ``cat_<column>_freq`` is the value's share of the training rows and
``cat_<column>_target`` the positive rate of its training rows, shrunk towards the overall rate
by ``smoothing`` pseudo-rows, so a value seen twice is not judged like one seen two thousand
times. A missing or empty value is a category of its own ("missing" has a rate too); a value
training never saw gets share 0 and the overall rate. Only the ``max_categories`` most frequent
values are kept (the rest count as unseen), which bounds the fitted tables for any cardinality.

``fit_transform(cols, y, folds=...)`` encodes each training row with tables from the other
folds only (the time folds the text scorer uses): no row's encoding depends on its own label.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .columns import Columns, as_columns

MAX_CATEGORIES = 10_000


class CategoricalFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Two columns per categorical column: frequency share and out-of-fold target rate."""

    out_of_fold = True

    def __init__(
        self,
        columns: tuple[str, ...] = (),
        *,
        smoothing: float = 20.0,
        max_categories: int = MAX_CATEGORIES,
    ):
        self.columns = columns
        self.smoothing = smoothing
        self.max_categories = max_categories

    @property
    def consumes(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [f"cat_{name}_{kind}" for name in self.columns for kind in ("freq", "target")]
        return np.array(names, dtype=object)

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, df: pd.DataFrame | Columns, y, **_):
        """Learn each column's kept values, their shares and smoothed positive rates."""
        cols = as_columns(df)
        y = np.asarray(y, dtype=np.float64)
        n = len(cols)
        self.prior_ = float(y.mean()) if n else 0.5
        self.tables_ = {}
        for name in self.columns:
            values = cols.categories(name)
            kept = [v for v, _ in Counter(values).most_common(self.max_categories)]
            index = {v: i for i, v in enumerate(kept)}
            codes = _codes(values, index)
            count, positive = _tallies(codes, y, len(kept))
            rate = self._rate(count, positive, self.prior_)
            share = count / max(n, 1)
            self.tables_[name] = {v: (float(share[i]), float(rate[i])) for v, i in index.items()}
        return self

    def fit_transform(self, df, y=None, folds: np.ndarray | None = None, **_):
        """Fit on all rows; a row's target rate comes from the other folds only."""
        if y is None:
            raise ValueError("CategoricalFeatures needs labels y to fit")
        cols = as_columns(df)
        self.fit(cols, y)
        out = self.transform(cols)
        if folds is None:
            return out
        y = np.asarray(y, dtype=np.float64)
        folds = np.asarray(folds)
        for j, name in enumerate(self.columns):
            table = self.tables_[name]
            index = {v: i for i, v in enumerate(table)}
            codes = _codes(cols.categories(name), index)
            count, positive = _tallies(codes, y, len(index))
            for k in np.unique(folds):
                held = folds == k
                rest = ~held
                prior = float(y[rest].mean()) if rest.any() else self.prior_
                held_count, held_positive = _tallies(codes[held], y[held], len(index))
                rate = self._rate(count - held_count, positive - held_positive, prior)
                rate = np.append(rate, prior)  # code -1 (not kept) -> prior
                out[held, 2 * j + 1] = rate[codes[held]]
        return out

    def _rate(self, count: np.ndarray, positive: np.ndarray, prior: float) -> np.ndarray:
        """Smoothed positive rate per value; the prior for a value without rows."""
        rows = count + self.smoothing
        rate = np.divide(
            positive + prior * self.smoothing, rows, out=np.full_like(rows, prior), where=rows > 0
        )
        return rate

    # -- transforming --------------------------------------------------------------------------

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        unseen = (0.0, self.prior_)
        pairs = [
            [pair for v in cols.categories(name) for pair in self.tables_[name].get(v, unseen)]
            for name in self.columns
        ]
        # Column j holds (share, rate) pairs row after row: reshape, then interleave columns.
        out = np.array(pairs, dtype=np.float64).reshape(len(self.columns), len(cols), 2)
        return out.transpose(1, 0, 2).reshape(len(cols), 2 * len(self.columns))


def _codes(values: list, index: dict) -> np.ndarray:
    """Position of each value in ``index``; -1 for values not kept."""
    return np.fromiter((index.get(v, -1) for v in values), dtype=np.int64, count=len(values))


def _tallies(codes: np.ndarray, y: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and positive rows per kept value (codes -1 are left out)."""
    kept = codes >= 0
    count = np.bincount(codes[kept], minlength=size).astype(np.float64)
    positive = np.bincount(codes[kept], weights=y[kept], minlength=size)
    return count, positive
