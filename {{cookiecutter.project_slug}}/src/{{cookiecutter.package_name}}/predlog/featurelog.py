"""How the prediction log keeps feature values: the names once per feature set, not per row.

A prediction's ``features`` dict holds the model's features (named numbers) and the input
signals (``cat.*``, ``text.*``). Written as is, the 46 feature names were three quarters of
every row (1.4 of 1.8 KB). The log stores the names once in its ``feature_sets`` table, and
each row its set id and ``{"v": [values in set order], <signals>}``;
``PredictionLog.rows`` gives the dict back, and monitoring reads the values as a matrix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import NamedTuple

SIGNAL_PREFIXES = ("cat.", "text.")
VALUES_KEY = "v"


class LoggedFeatures(NamedTuple):
    """One prediction's features already split, so the log need not split a dict per row
    (``PredictionEntries.dicts`` gives one per row)."""

    names: tuple[str, ...]
    values: Sequence[float]  # a list, or the server's float32 numpy row
    signals: dict


def split(features: dict | LoggedFeatures) -> tuple[tuple[str, ...], list, dict]:
    """(names, values) of the numeric features, and the signals, of one logged dict."""
    if isinstance(features, LoggedFeatures):
        return features
    names, values, signals = [], [], {}
    for key, value in features.items():
        if key.startswith(SIGNAL_PREFIXES):
            signals[key] = value
        else:
            names.append(key)
            values.append(value)
    return tuple(names), values, signals


def join(names: list[str] | tuple[str, ...], stored: dict) -> dict:
    """The logged dict back from a set's names and a stored row."""
    features = dict(zip(names, stored.get(VALUES_KEY) or [], strict=False))
    features.update((k, v) for k, v in stored.items() if k != VALUES_KEY)
    return features


def digest(names: tuple[str, ...]) -> str:
    """The identity of a feature set: SHA-256 of its names in order."""
    return hashlib.sha256(json.dumps(list(names)).encode("utf-8")).hexdigest()
