"""Flag columns (role ``flags``): how many flags a record carries, and which common ones.

A flags cell is a comma-separated list (``missing:amount,invalid:country``, as ingestion writes
them). ``flags_<column>_count`` counts a row's distinct flags; ``flags_<column>_is_<flag>`` is 1
when the row carries that flag, for the ``max_flags`` flags most often seen in training (the
cap bounds the width; rarer flags still count). A column without a single flag in training gives
no feature at all: the model could learn nothing from it. Flag names become feature-name safe
(anything but letters, digits and _ turns into _, a clash gets a number).
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .columns import Columns, as_columns

MAX_FLAGS = 32
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def parse_flags(cell: str) -> frozenset[str]:
    """The distinct non-empty flags of one cell."""
    return frozenset(f.strip() for f in cell.split(",")) - {""} if cell else frozenset()


class FlagFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Per flags column: the flag count and indicators of the commonest training flags."""

    def __init__(self, columns: tuple[str, ...] = (), *, max_flags: int = MAX_FLAGS):
        self.columns = columns
        self.max_flags = max_flags

    @property
    def consumes(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def _parsed(self, cols: Columns, name: str) -> list[frozenset[str]]:
        return [parse_flags(cell) for cell in cols.strings(name)]

    def fit(self, df: pd.DataFrame | Columns, y=None, **_):
        """Keep each column's ``max_flags`` most frequent flags (ties by name); a column with
        none is left out."""
        cols = as_columns(df)
        self.flags_ = {}
        for name in self.columns:
            seen = Counter(f for row in self._parsed(cols, name) for f in row)
            ranked = sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))
            if ranked:
                self.flags_[name] = tuple(flag for flag, _ in ranked[: self.max_flags])
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = []
        for name in self.flags_:
            names.append(f"flags_{name}_count")
            used: set[str] = set()
            for flag in self.flags_[name]:
                safe = base = f"flags_{name}_is_{_UNSAFE.sub('_', flag)}"
                k = 2
                while safe in used:
                    safe, k = f"{base}_{k}", k + 1
                used.add(safe)
                names.append(safe)
        return np.array(names, dtype=object)

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        blocks = []
        for name, kept in self.flags_.items():
            rows = [[len(row), *(f in row for f in kept)] for row in self._parsed(cols, name)]
            blocks.append(np.array(rows, dtype=np.float64).reshape(len(cols), 1 + len(kept)))
        return np.hstack(blocks) if blocks else np.empty((len(cols), 0))
