"""Behaviour features: sending velocity and recipient count.

Velocity (emails in the last hour and day, time since the previous email) comes from the
point-in-time history columns; a burst from one account is the classic signature of a
compromised or throwaway sender.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ...features.columns import Columns, as_columns
from ...features.history import PREFIX

_MISSING = np.array([0.0, 0.0, -1.0, 0.0])


class BehaviorFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Velocity over 1 h and 24 h, time since the previous email, recipients (4 columns)."""

    def __init__(self, recipient_count: str | None = "recipient_count"):
        self.recipient_count = recipient_count

    @property
    def consumes(self) -> tuple[str, ...]:
        """The contract columns this family reads (besides the entity history columns)."""
        return (self.recipient_count,) if self.recipient_count else ()

    def fit(self, df: pd.DataFrame, y=None, **_):
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [
            "behavior_count_1h_log",
            "behavior_count_24h_log",
            "behavior_seconds_since_prev_log",
            "behavior_recipient_count_log",
        ]
        return np.array(names, dtype=object)

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        values = np.column_stack(
            [
                cols.numbers(PREFIX + "count_1h"),
                cols.numbers(PREFIX + "count_24h"),
                cols.numbers(PREFIX + "seconds_since_prev"),
                cols.numbers(self.recipient_count),
            ]
        )
        # log1p of each value (negatives clipped to 0); a missing value becomes 0, except a
        # missing previous email (a new sender), which becomes -1, apart from every real gap.
        with np.errstate(invalid="ignore"):
            logs = np.log1p(np.maximum(values, 0.0))
        return np.where(np.isfinite(values), logs, _MISSING)
