"""Binned distributions of numeric values, and the population stability index between two.

The reference a model carries (:func:`reference_distributions`, built at evaluation) and the
drift monitoring that compares live values with it both use these: the same quantile cuts bin
both sides, so the histograms compare bin by bin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Quantile bins of the reference distributions (deciles: enough for PSI, small in JSON).
REFERENCE_BINS = 10
# PSI treats an empty bin as this share, so one empty bin does not make the score infinite.
PSI_FLOOR = 1e-4


def quantile_cuts(values: np.ndarray, bins: int = REFERENCE_BINS) -> list[float]:
    """Interior cut points splitting ``values`` into (at most) ``bins`` equal-count bins."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    inner = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(v) for v in np.unique(inner)]


def bin_shares(values: np.ndarray, cuts: list[float]) -> np.ndarray:
    """Share of finite ``values`` in each of the ``len(cuts) + 1`` bins the cuts define.

    A value equal to a cut falls in the bin above it. Monitoring bins live data with the cuts
    stored in the reference, so the two histograms are comparable bin by bin (PSI).
    """
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    counts = np.bincount(
        np.searchsorted(np.asarray(cuts, dtype=float), finite, side="right"),
        minlength=len(cuts) + 1,
    )
    return counts / max(finite.size, 1)


def psi(expected, actual) -> float:
    """Population stability index of two bin-share vectors over the same bins (e.g. a
    reference's ``shares`` and :func:`bin_shares` of live values with its ``cuts``)."""
    e = np.clip(np.asarray(expected, dtype=float), PSI_FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=float), PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def distribution(values: np.ndarray, bins: int) -> dict:
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    cuts = quantile_cuts(values, bins)
    return {
        "cuts": cuts,
        "shares": [float(s) for s in bin_shares(values, cuts)],
        "null_share": float(1 - finite.size / values.size) if values.size else 0.0,
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        # The 0th..100th percentiles: monitoring interpolates the reference CDF from them (KS).
        "quantiles": (
            [float(v) for v in np.percentile(finite, np.arange(101))] if finite.size else []
        ),
    }


def reference_distributions(
    feature_frame: pd.DataFrame,
    scores: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    bins: int = REFERENCE_BINS,
) -> dict:
    """Reference distributions for drift monitoring, JSON-serialisable.

    ``feature_frame``: the numeric features to watch (one column each; non-numeric columns are
    skipped, booleans count as 0/1). ``scores``: model scores on the same rows. ``labels``: 0/1
    (or boolean) targets. Each distribution holds quantile ``cuts``, the ``shares`` of rows per
    bin (see :func:`bin_shares`), the null share and summary statistics.
    """
    features = {}
    for name in feature_frame.columns:
        column = feature_frame[name]
        if pd.api.types.is_bool_dtype(column):
            column = column.astype(float)
        if not pd.api.types.is_numeric_dtype(column):
            continue
        features[str(name)] = distribution(column.to_numpy(dtype=float, na_value=np.nan), bins)
    reference: dict = {"version": 1, "rows": len(feature_frame), "bins": bins}
    reference["features"] = features
    if scores is not None:
        reference["score"] = distribution(np.asarray(scores, dtype=float), bins)
    if labels is not None:
        y = np.asarray(labels).astype(float)
        reference["positive_rate"] = float(y.mean()) if y.size else None
    return reference
