"""Data and prediction drift of a window of logged predictions against the bundle's reference.

Numeric features: PSI over the reference's decile bins and KS against the reference CDF
interpolated from its 101 percentiles. Categories: PSI over the reference's top values plus
an "other" bucket. Text: PSI of the per-row unseen-token share (bins weighted to the upper
tail) and PSI of the top tokens' mix. Every feature also has the missing rule: its null share
may rise by ``missing_max``.

A check alerts above its threshold and warns above ``warn_fraction`` of it. For categories and
text mixes the PSI threshold is raised by the reference's own churn (see ``profiles``), scaled
up when the window has fewer rows than the chunks the churn was measured on: a window of 300
records cannot show a category's share as precisely as one of 30,000.

NumPy and pandas only, vectorised: a window of 1M rows x 55 features takes seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import chain

import numpy as np
import pandas as pd

from ..distributions import bin_shares, psi
from .online import wilson_interval

STATUS_RANK = {"alert": 0, "warn": 1, "ok": 2, "too_few_rows": 3}
MOVERS = 5


@dataclass
class FeatureDrift:
    """The drift verdict of one feature (or of the score) over a window."""

    name: str
    kind: str  # numeric | category | text | score
    n: int  # rows with a value
    psi: float | None
    ks: float | None
    null_share_ref: float
    null_share_now: float
    status: str  # ok | warn | alert | too_few_rows
    reason: str
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict of the fields."""
        return asdict(self)


# A check: (value, limit, label, allowance); None values are skipped.
Check = tuple[float | None, float, str, float]


def _judge(checks: list[Check], warn_fraction: float) -> tuple[str, str]:
    """Status and reason: a check alerts above ``limit + allowance`` and warns above
    ``warn_fraction * limit + allowance``; the reason names the worst checks (all when ok)."""
    levels: dict[str, list[str]] = {"alert": [], "warn": [], "ok": []}
    for value, limit, label, allowance in checks:
        if value is None:
            continue
        extra = f" + {allowance:.3g} churn" if allowance else ""
        if value > limit + allowance:
            levels["alert"].append(f"{label} > {limit:.3g}{extra}")
        elif value > warn_fraction * limit + allowance:
            levels["warn"].append(f"{label} > {warn_fraction * limit:.3g}{extra} (warn)")
        else:
            levels["ok"].append(
                f"{label} (churn allowance {allowance:.3g})" if allowance else label
            )
    for status in ("alert", "warn", "ok"):
        if levels[status]:
            return status, "; ".join(levels[status])
    return "ok", "nothing to judge"


def _missing_check(ref: float, now: float, missing_max: float) -> Check:
    rise = now - ref
    return rise, missing_max, f"missing {now:.1%} vs {ref:.1%} ({100 * rise:+.1f} pts)", 0.0


def _churn_allowance(profile: dict, n: int) -> float:
    """PSI a window of ``n`` rows shows without drift, from the reference's own churn.

    Churn was measured on chunks of ``chunk_rows`` rows; below that, the noise of bursty
    data grows like 1/rows. Above it the churn is kept whole: it includes variation between
    periods that a larger window does not average away.
    """
    churn = float(profile.get("churn_psi") or 0.0)
    return churn * max(1.0, int(profile.get("chunk_rows") or 0) / max(n, 1))


def _reference_cdf(quantiles: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(X <= x) and P(X < x) of the reference, from its percentiles: linear between distinct
    percentile values, jumping at repeated ones (a discrete feature)."""
    levels = np.linspace(0.0, 1.0, quantiles.size)
    points, first = np.unique(quantiles, return_index=True)
    last = np.append(first[1:] - 1, quantiles.size - 1)
    out = []
    # right: points[lo] <= x < points[hi], past lo's jump; left: points[lo] < x <= points[hi],
    # before hi's jump. The same line joins the two in both cases.
    for side in ("right", "left"):
        k = np.searchsorted(points, x, side=side)
        inner = (k > 0) & (k < points.size)
        cdf = np.where(k >= points.size, 1.0, 0.0)
        lo, hi = k[inner] - 1, k[inner]
        step = (x[inner] - points[lo]) / (points[hi] - points[lo])
        cdf[inner] = levels[last[lo]] + step * (levels[first[hi]] - levels[last[lo]])
        out.append(cdf)
    return out[0], out[1]


def _counts_at(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many ``values`` are <= and < each sorted distinct point (one binary search)."""
    pos = np.searchsorted(points, values, side="left")
    at_or_below = np.cumsum(np.bincount(pos, minlength=points.size + 1))[: points.size]
    hit = pos < points.size
    hit[hit] = points[pos[hit]] == values[hit]
    return at_or_below, at_or_below - np.bincount(pos[hit], minlength=points.size)


def _ks(quantiles: np.ndarray, points: np.ndarray, le: np.ndarray, lt: np.ndarray, n: int):
    # Between consecutive points both CDFs are monotone and the live one is flat, so the
    # largest gap sits at a point (either side); exact up to one percentile step.
    right, left = _reference_cdf(quantiles, points)
    return float(max(np.abs(le / n - right).max(), np.abs(lt / n - left).max()))


def ks_from_quantiles(quantiles: list[float], values: np.ndarray) -> float | None:
    """KS statistic of ``values`` against the reference CDF interpolated through its 101
    percentiles (see ``_reference_cdf``); within 0.01 of the KS against the full reference
    sample. None without quantiles or finite values."""
    q = np.asarray(quantiles or [], dtype=float)
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if q.size < 2 or values.size == 0:
        return None
    points = np.unique(q)
    return _ks(q, points, *_counts_at(points, values), values.size)


def _as_float(values) -> np.ndarray:
    if isinstance(values, pd.Series):
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            values = pd.to_numeric(values, errors="coerce")
        return values.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(values, dtype=float)


def _float32(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # beyond float32's range: inf, still on the right side
        return values.astype(np.float32).astype(float)


def numeric_drift(
    name: str,
    dist: dict,
    values,
    *,
    psi_max: float,
    missing_max: float,
    warn_fraction: float,
    min_rows: int,
    kind: str = "numeric",
) -> FeatureDrift:
    """PSI (reference decile bins), KS and missing share of one numeric feature's values."""
    values = _as_float(values)
    # Compared in float32, the features' own precision: the log keeps each value's float32,
    # and a value tied with a decile cut must land on the same side as in the reference.
    finite = _float32(values[np.isfinite(values)])
    rows, n = values.size, finite.size
    null_ref = float(dist.get("null_share") or 0.0)
    null_now = float(1 - n / rows) if rows else 1.0
    detail = {"mean_ref": dist.get("mean"), "mean_now": float(finite.mean()) if n else None}
    if rows < min_rows:
        reason = f"{rows} rows < {min_rows}"
        return FeatureDrift(name, kind, n, None, None, null_ref, null_now, "too_few_rows", reason)
    value_psi = ks = None
    if n >= min_rows:
        # One binary search over the decile cuts and the percentiles gives both PSI and KS.
        cuts = _float32(np.asarray(dist.get("cuts") or [], dtype=float))
        q = _float32(np.asarray(dist.get("quantiles") or [], dtype=float))
        points = np.unique(np.concatenate([cuts, q]))
        le, lt = _counts_at(points, finite)
        below_cuts = lt[np.searchsorted(points, cuts)]  # a value equal to a cut goes above it
        shares = np.diff(np.concatenate([[0], below_cuts, [n]])) / n
        value_psi = psi(dist.get("shares", [1.0]), shares)
        ks = _ks(q, points, le, lt, n) if q.size >= 2 else None
    checks = [_missing_check(null_ref, null_now, missing_max)]
    if value_psi is not None:
        checks.insert(0, (value_psi, psi_max, f"PSI {value_psi:.3f}", 0.0))
    status, reason = _judge(checks, warn_fraction)
    if ks is not None:
        reason += f" (KS {ks:.3f})"
    return FeatureDrift(name, kind, n, value_psi, ks, null_ref, null_now, status, reason, detail)


def category_drift(
    name: str,
    profile: dict,
    values: pd.Series,
    *,
    psi_max: float,
    missing_max: float,
    warn_fraction: float,
    min_rows: int,
) -> FeatureDrift:
    """Shift of a category's value shares against the reference's top values.

    PSI over the top values plus an "other" bucket, beyond the reference's own churn; the
    detail names the values whose share moved most and the commonest values outside the
    reference top (``new_share_now``: their share, against ``new_share_ref``).
    """
    values = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
    rows = len(values)
    present = values.dropna().astype(str)
    n = len(present)
    null_ref = float(profile.get("null_share") or 0.0)
    null_now = float(1 - n / rows) if rows else 1.0
    if rows < min_rows:
        reason = f"{rows} rows < {min_rows}"
        return FeatureDrift(
            name, "category", n, None, None, null_ref, null_now, "too_few_rows", reason
        )
    ref_shares = profile.get("shares", {})
    counts = present.value_counts()
    now = counts.reindex(list(ref_shares), fill_value=0).to_numpy(dtype=float) / max(n, 1)
    new_now = float(max(0.0, 1.0 - now.sum())) if n else 0.0
    new_ref = float(profile.get("other_share") or 0.0)
    checks = [_missing_check(null_ref, null_now, missing_max)]
    value_psi = None
    detail: dict = {"new_share_ref": new_ref, "new_share_now": new_now}
    if n >= min_rows:
        value_psi = psi([*ref_shares.values(), new_ref], [*now, new_now])
        allowance = _churn_allowance(profile, n)
        detail["churn_allowance"] = allowance
        checks.insert(0, (value_psi, psi_max, f"PSI {value_psi:.3f}", allowance))
        change = now - np.asarray(list(ref_shares.values()), dtype=float)
        order = np.argsort(-np.abs(change))[:MOVERS]
        keys = list(ref_shares)
        detail["movers"] = [
            {"value": keys[i], "ref": float(ref_shares[keys[i]]), "now": float(now[i])}
            for i in order
            if change[i] != 0
        ]
        unknown = counts[~counts.index.isin(keys)].iloc[:MOVERS] / n
        detail["new_values"] = [{"value": str(k), "now": float(v)} for k, v in unknown.items()]
    status, reason = _judge(checks, warn_fraction)
    return FeatureDrift(
        name, "category", n, value_psi, None, null_ref, null_now, status, reason, detail
    )


def _top_counts(top_lists: pd.Series, mask: np.ndarray, size: int) -> np.ndarray:
    """How many of the masked rows contain each top token (lists of indexes per row)."""
    kinds = list | tuple | np.ndarray  # Arrow list columns arrive as NumPy arrays
    lists = [x for x in top_lists.to_numpy(dtype=object)[mask] if isinstance(x, kinds)]
    flat = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=sum(map(len, lists)))
    flat = flat[(flat >= 0) & (flat < size)]
    return np.bincount(flat, minlength=size).astype(float)


def text_drift(
    column: str,
    profile: dict,
    unseen: pd.Series,
    top_lists: pd.Series,
    *,
    psi_max: float,
    missing_max: float,
    warn_fraction: float,
    min_rows: int,
) -> FeatureDrift:
    """New vocabulary and topic shift of a text column.

    ``unseen``: per-row unseen-token shares (NaN when the row had no tokens); ``top_lists``:
    per-row lists of indexes into the reference ``top_tokens``. PSI of the unseen shares
    against ``profile["unseen"]`` and PSI of the top tokens' mix (threshold raised by the
    reference's churn) both alert above ``psi_max``; ``psi`` reports the larger.
    """
    dist = profile.get("unseen", {})
    rules = {"psi_max": psi_max, "missing_max": missing_max, "warn_fraction": warn_fraction}
    result = numeric_drift(column, dist, unseen, min_rows=min_rows, kind="text", **rules)
    result.detail = {
        "unseen_mean_ref": dist.get("mean"),
        "unseen_mean_now": result.detail.get("mean_now"),
    }
    if result.psi is None:
        return result
    tokens = list(profile.get("top_tokens", []))
    ref = np.asarray(profile.get("top_doc_share", []), dtype=float)
    mask = np.isfinite(_as_float(unseen))
    now = _top_counts(top_lists, mask, len(tokens)) / max(int(mask.sum()), 1)
    mix_psi = psi(ref / max(ref.sum(), 1e-12), now / max(now.sum(), 1e-12)) if tokens else 0.0
    change = now - ref
    order = np.argsort(-np.abs(change))[:MOVERS]
    allowance = _churn_allowance(profile, result.n)
    result.detail.update(
        unseen_psi=result.psi,
        top_token_psi=mix_psi,
        top_token_churn_allowance=allowance,
        top_token_shift=float(np.abs(change).mean()) if tokens else 0.0,
        movers=[
            {"token": tokens[i], "ref": float(ref[i]), "now": float(now[i])}
            for i in order
            if change[i] != 0
        ],
    )
    checks = [
        (result.psi, psi_max, f"unseen-token PSI {result.psi:.3f}", 0.0),
        (mix_psi, psi_max, f"top-token mix PSI {mix_psi:.3f}", allowance),
        _missing_check(result.null_share_ref, result.null_share_now, missing_max),
    ]
    result.status, result.reason = _judge(checks, warn_fraction)
    if result.ks is not None:
        result.reason += f" (unseen KS {result.ks:.3f})"
    result.psi = max(result.psi, mix_psi)
    return result


def _sort_key(item: FeatureDrift) -> tuple[int, float]:
    return STATUS_RANK.get(item.status, 9), -(item.psi or 0.0)


def data_drift(
    reference: dict,
    features: pd.DataFrame,
    *,
    psi_max: float,
    missing_max: float,
    warn_fraction: float,
    min_rows: int,
    window_hours: float = float("inf"),
) -> list[FeatureDrift]:
    """Drift of every reference feature, category and text column, worst first.

    ``features`` holds the logged features of the window (see ``profiles.InputSignals`` for
    the ``cat.*`` and ``text.*`` columns). A reference feature absent from the window counts
    as 100 % missing, so the missing rule reports it. A feature that is a position in a cycle
    longer than ``window_hours`` (the weekday in a day's window: the reference's ``cycles``)
    has its PSI reported, not judged: any such window shows part of the cycle.
    """
    rules = {
        "psi_max": psi_max,
        "missing_max": missing_max,
        "warn_fraction": warn_fraction,
        "min_rows": min_rows,
    }
    rows = len(features)
    nothing = np.full(rows, np.nan)
    out: list[FeatureDrift] = []
    cycles = reference.get("cycles") or {}
    for name, dist in (reference.get("features") or {}).items():
        values = features.get(name, nothing)
        partial = cycles.get(name, 0.0) > window_hours
        out.append(numeric_drift(name, dist, values, **{**rules, **_unjudged(partial)}))
        if partial:
            out[-1].reason += f"; PSI not judged: a {cycles[name]:g} h cycle in {window_hours:g} h"
        if name not in features:
            out[-1].detail["absent"] = True
    for column, profile in (reference.get("categories") or {}).items():
        key = f"cat.{column}"
        values = features[key] if key in features else pd.Series(nothing, dtype=object)
        out.append(category_drift(column, profile, values, **rules))
    for column, profile in (reference.get("text") or {}).items():
        key = f"text.{column}"
        unseen = features[f"{key}.unseen"] if f"{key}.unseen" in features else pd.Series(nothing)
        tops = features[f"{key}.top"] if f"{key}.top" in features else pd.Series([None] * rows)
        out.append(text_drift(column, profile, unseen, tops, **rules))
    return sorted(out, key=_sort_key)


def _unjudged(partial: bool) -> dict:
    return {"psi_max": float("inf")} if partial else {}


def prediction_drift(
    reference: dict,
    scores: np.ndarray,
    predicted_positive: np.ndarray,
    *,
    psi_max: float,
    warn_fraction: float,
    min_rows: int,
    confidence: float,
) -> dict:
    """Score drift (PSI, KS) and predicted-positive rate against the reference.

    The rate alerts when the reference rate lies outside the window's Wilson interval and the
    rate's own PSI (two bins: positive, negative) passes ``psi_max``: large windows make any
    difference significant, so significance alone is not enough. Returns ``status``,
    ``reason``, ``score`` (a FeatureDrift dict), ``positive_rate`` and ``histogram`` (the
    reference decile bins with both shares) plus ``fine_histogram`` (20 equal-width bins,
    the reference's shares interpolated from its percentiles; absent for old references).
    """
    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(predicted_positive, dtype=bool)
    dist = reference.get("score") or {}
    rules = {"psi_max": psi_max, "missing_max": 1.0, "warn_fraction": warn_fraction}
    score = numeric_drift("score", dist, scores, min_rows=min_rows, kind="score", **rules)
    n, k = positive.size, int(positive.sum())
    low, high = wilson_interval(k, n, confidence) if n else (None, None)
    ref_rate = reference.get("predicted_positive_rate")
    rate = {"reference": ref_rate, "now": k / n if n else None, "low": low, "high": high, "n": n}
    checks: list[Check] = []
    if ref_rate is not None and n >= min_rows:
        rate["psi"] = rate_psi = psi([ref_rate, 1 - ref_rate], [k / n, 1 - k / n])
        significant = not low <= ref_rate <= high
        label = f"positive rate {k / n:.1%} [{low:.1%}, {high:.1%}] vs {ref_rate:.1%}"
        checks.append(
            (rate_psi if significant else 0.0, psi_max, f"{label}, PSI {rate_psi:.3f}", 0.0)
        )
    status, reason = score.status, f"score: {score.reason}"
    if checks and score.status != "too_few_rows":
        rate_status, rate_reason = _judge(checks, warn_fraction)
        if STATUS_RANK[rate_status] < STATUS_RANK[status]:
            status = rate_status
        reason += f"; {rate_reason}"
    cuts = list(dist.get("cuts", []))
    finite = scores[np.isfinite(scores)]
    out = {
        "status": status,
        "reason": reason,
        "score": score.to_dict(),
        "positive_rate": rate,
        "histogram": {
            "cuts": cuts,
            "reference": list(dist.get("shares", [])),
            "window": [float(s) for s in bin_shares(finite, cuts)],
        },
    }
    if dist.get("quantiles"):
        edges = np.linspace(0.0, 1.0, 21)
        window = np.histogram(np.clip(finite, 0.0, 1.0), bins=edges)[0] / max(finite.size, 1)
        reference_cdf = _reference_cdf(np.asarray(dist["quantiles"], dtype=float), edges)[0]
        out["fine_histogram"] = {
            "edges": [float(e) for e in edges],
            "reference": [float(s) for s in np.diff(reference_cdf)],
            "window": [float(s) for s in window],
        }
    return out
