"""Online quality from feedback, and serving health, from a window of the prediction log.

The definitions are the contract's (``predlog.store.OnlineCounts``): on SERVED predictions,
a prediction without feedback counts as correct; a positive prediction the user rescued
(feedback negative) is a false positive, a negative prediction the user reported (feedback
positive) is a false negative. Every rate comes with a Wilson interval and the counts behind it,
so a check can tell a significant breach (alert) from a noisy one (warn).

Everything is vectorised over the window: a million rows take well under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

OK, WARN, ALERT, NO_DATA = "ok", "warn", "alert", "no_data"
# Candidate periods for the quality-over-time plot, shortest first.
AUTO_FREQUENCIES = ("1min", "5min", "15min", "30min", "1h", "2h", "3h", "6h", "12h", "1D", "7D")
MAX_POINTS = 48


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile of a confidence level (1.96 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n; (nan, nan) when n == 0.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at k = 0, which is
    where an FP rate of 0.1 % lives.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    z = z_value(confidence)
    if n == 0:
        return math.nan, math.nan
    p = k / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denominator
    # Exact ends at k = 0 and k = n (rounding would leave 1e-17 there).
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def json_number(value) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Estimate:
    """A proportion k/n with its Wilson interval."""

    value: float
    low: float
    high: float
    k: int
    n: int

    @classmethod
    def of(cls, k: int, n: int, confidence: float = 0.95) -> Estimate:
        k, n = int(k), int(n)
        low, high = wilson_interval(k, n, confidence)
        return cls(k / n if n else math.nan, low, high, k, n)

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes None."""
        return {
            "value": json_number(self.value),
            "low": json_number(self.low),
            "high": json_number(self.high),
            "k": self.k,
            "n": self.n,
        }


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the predictions frame lacks column(s) {', '.join(missing)}")


def _served(predictions: pd.DataFrame) -> np.ndarray:
    return predictions["served"].fillna(False).to_numpy(dtype=bool)


def _outcomes(predictions: pd.DataFrame, positive: str, negative: str) -> dict[str, np.ndarray]:
    """Boolean arrays: predicted positive / negative, feedback positive / negative."""
    label = predictions["label"]
    feedback = predictions["feedback"]
    return {
        "pp": (label == positive).to_numpy(dtype=bool),
        "pn": (label == negative).to_numpy(dtype=bool),
        "fp": (feedback == positive).to_numpy(dtype=bool),
        "fn": (feedback == negative).to_numpy(dtype=bool),
    }


def _quality_from_counts(c: dict[str, int], confidence: float) -> dict:
    pp, pn, rescued, reported = c["pp"], c["pn"], c["rescued"], c["reported"]
    kept = pp - rescued  # positive predictions nobody rescued: true positives by the contract
    negatives = rescued + pn - reported
    return {
        "precision": Estimate.of(kept, pp, confidence),
        "false_positive_rate": Estimate.of(rescued, negatives, confidence),
        "recall": Estimate.of(kept, kept + reported, confidence),
    }


def online_quality(
    predictions: pd.DataFrame, positive: str, negative: str, *, confidence: float = 0.95
) -> dict:
    """Precision, false-positive rate and recall estimate of the served predictions.

    Returns a JSON-ready dict: ``served``, ``predicted_positive``, ``predicted_negative``,
    ``labels`` (served rows with feedback), ``rescued`` (FP), ``reported`` (FN),
    ``confirmed_positive`` / ``confirmed_negative`` (feedback agrees), ``other_labels``
    (served rows whose predicted label is neither class), ``confidence``, and the estimates
    ``precision``, ``false_positive_rate``, ``recall`` and ``labelled_precision`` as
    ``{"value", "low", "high", "k", "n"}``. ``labelled_precision`` uses labelled rows only: users
    mostly label mistakes, so it is far below the contract's precision and shown for contrast.
    """
    _require(predictions, ("served", "label", "feedback"), "online quality")
    served = _served(predictions)
    o = _outcomes(predictions, positive, negative)
    pp, pn = o["pp"] & served, o["pn"] & served
    counts = {
        "pp": int(pp.sum()),
        "pn": int(pn.sum()),
        "rescued": int((pp & o["fn"]).sum()),
        "reported": int((pn & o["fp"]).sum()),
    }
    confirmed_positive = int((pp & o["fp"]).sum())
    confirmed_negative = int((pn & o["fn"]).sum())
    estimates = _quality_from_counts(counts, confidence)
    estimates["labelled_precision"] = Estimate.of(
        confirmed_positive, confirmed_positive + counts["rescued"], confidence
    )
    n_served = int(served.sum())
    return {
        "served": n_served,
        "predicted_positive": counts["pp"],
        "predicted_negative": counts["pn"],
        "other_labels": n_served - counts["pp"] - counts["pn"],
        "labels": int(((o["fp"] | o["fn"]) & served).sum()),
        "rescued": counts["rescued"],
        "reported": counts["reported"],
        "confirmed_positive": confirmed_positive,
        "confirmed_negative": confirmed_negative,
        "confidence": confidence,
        **{name: e.to_dict() for name, e in estimates.items()},
    }


def _check(name, value, threshold, status, reason, interval=None) -> dict:
    return {
        "name": name,
        "value": json_number(value),
        "threshold": json_number(threshold),
        "status": status,
        "reason": reason,
        "interval": None if interval is None else [json_number(v) for v in interval],
    }


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f} %"


def quality_checks(
    quality: dict,
    *,
    training_precision: float | None,
    fp_rate_max: float,
    precision_drop_max: float,
) -> list[dict]:
    """The contract's quality alerts on :func:`online_quality`'s result.

    Each check is ``{"name", "value", "threshold", "status", "reason", "interval"}`` with status
    ``ok`` | ``warn`` | ``alert`` | ``no_data``. A breach alerts only when the interval clears the
    threshold (significant at the window's confidence); a point estimate over the threshold with
    an interval that still reaches below it warns.
    """
    checks = []
    fpr = quality["false_positive_rate"]
    name = "false_positive_rate"
    if not fpr["n"]:
        checks.append(_check(name, None, fp_rate_max, NO_DATA, "no negatives in the window"))
    else:
        value, low, high = fpr["value"], fpr["low"], fpr["high"]
        where = (
            f"{fpr['k']} rescued of {fpr['n']} negatives, interval {_pct(low, 3)}–{_pct(high, 3)}"
        )
        if low > fp_rate_max:
            status, reason = ALERT, f"FP rate {_pct(value, 3)} > {_pct(fp_rate_max, 3)} ({where})"
        elif value > fp_rate_max:
            status = WARN
            reason = f"FP rate {_pct(value, 3)} > {_pct(fp_rate_max, 3)}, not significant ({where})"
        else:
            status, reason = OK, f"FP rate {_pct(value, 3)} <= {_pct(fp_rate_max, 3)} ({where})"
        checks.append(_check(name, value, fp_rate_max, status, reason, (low, high)))

    precision = quality["precision"]
    name = "precision_drop"
    if training_precision is None or not math.isfinite(training_precision):
        checks.append(_check(name, None, precision_drop_max, NO_DATA, "no training precision"))
    elif not precision["n"]:
        checks.append(
            _check(name, None, precision_drop_max, NO_DATA, "no positive predictions in the window")
        )
    else:
        value, low, high = precision["value"], precision["low"], precision["high"]
        drop = training_precision - value
        interval = (training_precision - high, training_precision - low)
        where = (
            f"precision {_pct(value)} (interval {_pct(low)}–{_pct(high)}, "
            f"{precision['n']} positive predictions) vs {_pct(training_precision)} at training"
        )
        if interval[0] > precision_drop_max:
            status, reason = ALERT, f"drop {_pct(drop)} > {_pct(precision_drop_max)}: {where}"
        elif drop > precision_drop_max:
            status = WARN
            reason = f"drop {_pct(drop)} > {_pct(precision_drop_max)}, not significant: {where}"
        else:
            status, reason = OK, f"drop {_pct(drop)} <= {_pct(precision_drop_max)}: {where}"
        checks.append(_check(name, drop, precision_drop_max, status, reason, interval))
    return checks


def auto_frequency(start, end, max_points: int = MAX_POINTS) -> str:
    """The shortest period from AUTO_FREQUENCIES giving at most ``max_points`` over [start, end]."""
    span = pd.Timestamp(end) - pd.Timestamp(start)
    for freq in AUTO_FREQUENCIES:
        if span / pd.Timedelta(freq) < max_points:
            return freq
    return AUTO_FREQUENCIES[-1]


def quality_over_time(
    predictions: pd.DataFrame,
    positive: str,
    negative: str,
    *,
    freq: str | None = "1h",
    confidence: float = 0.95,
) -> list[dict]:
    """Precision and FP rate of the served predictions per period, for the report's plot.

    One dict per non-empty period, oldest first: ``start`` (ISO), ``precision``, ``low``,
    ``high``, ``n`` (positive predictions), ``fp_rate``, ``fp_low``, ``fp_high``, ``negatives``,
    ``served``, ``labels``. ``freq`` None picks a period giving about 12-48 points.
    """
    _require(predictions, ("served", "label", "feedback", "created_at"), "quality over time")
    served = _served(predictions)
    if not served.any():
        return []
    times = pd.to_datetime(predictions["created_at"]).to_numpy()[served]
    if freq is None:
        freq = auto_frequency(times.min(), times.max())
    o = {k: v[served] for k, v in _outcomes(predictions, positive, negative).items()}
    frame = pd.DataFrame(
        {
            "pp": o["pp"],
            "pn": o["pn"],
            "rescued": o["pp"] & o["fn"],
            "reported": o["pn"] & o["fp"],
            "labels": o["fp"] | o["fn"],
            "served": np.ones(len(times), dtype=np.int64),
        },
        index=pd.DatetimeIndex(times).floor(freq),
    )
    sums = frame.groupby(level=0, sort=True).sum()
    points = []
    for start, row in zip(sums.index, sums.to_dict("records"), strict=True):
        q = _quality_from_counts(row, confidence)
        precision, fpr = q["precision"], q["false_positive_rate"]
        points.append(
            {
                "start": pd.Timestamp(start).isoformat(),
                "precision": json_number(precision.value),
                "low": json_number(precision.low),
                "high": json_number(precision.high),
                "n": precision.n,
                "fp_rate": json_number(fpr.value),
                "fp_low": json_number(fpr.low),
                "fp_high": json_number(fpr.high),
                "negatives": fpr.n,
                "served": int(row["served"]),
                "labels": int(row["labels"]),
            }
        )
    return points


def _level(name: str, value: float, alert_at: float, warn_fraction: float, what: str) -> dict:
    """Alert above ``alert_at``, warn above ``warn_fraction`` of it."""
    if value is None or not math.isfinite(value):
        return _check(name, None, alert_at, NO_DATA, f"no {what} in the window")
    warn_at = warn_fraction * alert_at
    if value > alert_at:
        status, reason = ALERT, f"{value:.4g} > {alert_at:.4g}"
    elif value > warn_at:
        status, reason = WARN, f"{value:.4g} > {warn_at:.4g} (warn at {warn_fraction:g} of alert)"
    else:
        status, reason = OK, f"{value:.4g} <= {warn_at:.4g}"
    return _check(name, value, alert_at, status, reason)


def serving_health(
    predictions: pd.DataFrame,
    errors: int,
    *,
    latency_p99_ms_max: float,
    error_rate_max: float,
    warn_fraction: float = 0.5,
) -> dict:
    """Latency percentiles of the served predictions and the error rate of the requests.

    Returns ``{"served", "errors", "error_rate", "latency_ms": {"p50", "p95", "p99", "n"},
    "checks": [latency_p99, error_rate]}``; ``error_rate = errors / (served + errors)``.
    Shadow predictions are left out: their latency is not the user's.
    """
    _require(predictions, ("served", "latency_ms"), "serving health")
    served = _served(predictions)
    latency = pd.to_numeric(predictions["latency_ms"], errors="coerce").to_numpy(dtype=float)
    latency = latency[served]
    latency = latency[np.isfinite(latency)]
    if latency.size:
        p50, p95, p99 = (float(v) for v in np.percentile(latency, [50, 95, 99]))
    else:
        p50 = p95 = p99 = math.nan
    n_served, errors = int(served.sum()), int(errors)
    requests = n_served + errors
    error_rate = errors / requests if requests else math.nan
    checks = [
        _level("latency_p99_ms", p99, latency_p99_ms_max, warn_fraction, "latencies"),
        _level("error_rate", error_rate, error_rate_max, warn_fraction, "requests"),
    ]
    return {
        "served": n_served,
        "errors": errors,
        "error_rate": json_number(error_rate),
        "latency_ms": {
            "p50": json_number(p50),
            "p95": json_number(p95),
            "p99": json_number(p99),
            "n": int(latency.size),
        },
        "checks": checks,
    }
