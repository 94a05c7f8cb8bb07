"""The server's own Prometheus metrics (BentoML adds its request counters and latencies).

Names and labels the manifests and alerts query (``deploy/server.py``) are kept stable:

``model_predictions_total{role, label}``          predictions by answering role and label
``model_score{role}``                              score histogram (0.05-wide buckets)
``model_online_precision``                         from feedback over the last day (NaN: no data)
``model_online_false_positive_rate``               idem
``model_training_precision``                       the answering model's test precision
``model_drift_score{feature}``                     PSI of recent requests vs the training reference
``model_shadow_comparisons_total{outcome}``        shadow pairs that agree / disagree on the label
``model_shadow_agreement_rate``                    agree / compared since the process started
``model_shadow_dropped_total``                     shadow jobs dropped because the queue was full
``model_entity_store_lookups_total{result}``       entity store cache hits and misses
``model_entity_store_cache_hit_rate``              hits / lookups since the process started
``model_prediction_log_write_seconds``             time to commit prediction rows
``model_info{role, version, alias, kind}``         1 for each loaded model

``prometheus_client`` is imported when :class:`ServingMetrics` is created, inside the BentoML
worker: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` there, and a client imported earlier would
keep its values in memory where ``/metrics`` never looks. A gauge is NaN until there is data to
compute it, so an alert comparing it with a threshold stays quiet instead of firing on noise.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..distributions import bin_shares, psi

SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
LOG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
SCORE_FEATURE = "model_score"


class DriftWindow:
    """The last ``size`` values of each monitored feature, scored against the reference.

    ``reference`` is a bundle's ``reference`` (``features`` and ``score`` distributions with
    quantile ``cuts`` and ``shares``). ``min_rows``: below this many values PSI is NaN. The
    values live in one ring buffer (a column per feature), so a request's features go in with
    one array write rather than one call per feature.
    """

    def __init__(self, reference: dict, *, size: int = 5000, min_rows: int = 200):
        self.min_rows = min_rows
        self.size = size
        # The last requests span whatever time the traffic gives them: a clock's features
        # (hour, weekday) there show the time of day, not drift. ``monitor`` judges them over
        # windows that span their cycle.
        cyclic = reference.get("cycles") or {}
        features = reference.get("features", {})
        self.distributions = {n: d for n, d in features.items() if n not in cyclic}
        if reference.get("score"):
            self.distributions[SCORE_FEATURE] = reference["score"]
        self._column = {name: j for j, name in enumerate(self.distributions)}
        self._ring = np.full((size, len(self._column)), np.nan)
        self._seen = np.zeros(len(self._column), dtype=np.int64)  # values ever added, per column
        self._plans: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    @property
    def features(self) -> list[str]:
        return list(self.distributions)

    def observe(self, name: str, values) -> None:
        """Add values of one feature (unknown features are ignored)."""
        self.observe_rows([name], np.asarray(values, dtype=float).reshape(-1, 1))

    def observe_rows(self, names: list[str], values: np.ndarray) -> None:
        """Add rows of values, a column per name (unknown names are ignored)."""
        source, columns = self._plan(names)
        if not len(columns) or not len(values):
            return
        block = np.asarray(values, dtype=float)[-self.size :, source]
        added = len(values)
        with self._lock:
            # Each column writes after its own last value; only the newest ``size`` rows stay.
            start = self._seen[columns] + (added - len(block))
            if len(block) == 1:  # a single request: no index grid
                self._ring[start % self.size, columns] = block[0]
            else:
                rows = (start[None, :] + np.arange(len(block))[:, None]) % self.size
                self._ring[rows, columns[None, :]] = block
            self._seen[columns] += added

    def _plan(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``names``, ring columns) of the known names; kept per list of names
        (the server observes the same few lists on every request)."""
        key = tuple(names)
        plan = self._plans.get(key)
        if plan is None:
            known = [k for k, name in enumerate(names) if name in self._column]
            source = np.array(known, dtype=np.intp)
            columns = np.array([self._column[names[k]] for k in known], dtype=np.intp)
            plan = self._plans[key] = (source, columns)
        return plan

    def scores(self) -> dict[str, float]:
        """PSI of each feature's window against its reference (NaN below ``min_rows``)."""
        out = {}
        for name, dist in self.distributions.items():
            j = self._column[name]
            with self._lock:
                values = self._ring[: min(int(self._seen[j]), self.size), j].copy()
            finite = values[np.isfinite(values)]
            if finite.size < self.min_rows or not dist.get("shares"):
                out[name] = math.nan
                continue
            out[name] = psi(dist["shares"], bin_shares(finite, dist.get("cuts", [])))
        return out


class ServingMetrics:
    """Every metric of the server, registered once per process (see :func:`serving_metrics`)."""

    def __init__(self, registry=None):
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = {"registry": registry if registry is not None else REGISTRY}
        # A gauge is one value per worker; "liveall"-style modes would add a pid label.
        latest = {"multiprocess_mode": "livemostrecent", **reg}
        highest = {"multiprocess_mode": "livemax", **reg}
        self.predictions = Counter(
            "model_predictions", "Predictions by role and predicted label", ["role", "label"], **reg
        )
        self.score = Histogram(
            "model_score", "Positive-class score", ["role"], buckets=SCORE_BUCKETS, **reg
        )
        self.online_precision = Gauge(
            "model_online_precision", "Precision from user feedback, last day", **latest
        )
        self.online_fpr = Gauge(
            "model_online_false_positive_rate", "False-positive rate from feedback", **latest
        )
        self.training_precision = Gauge(
            "model_training_precision", "Test precision recorded at training", **latest
        )
        self.drift = Gauge(
            "model_drift_score", "PSI of recent requests vs training", ["feature"], **highest
        )
        self.shadow_compared = Counter(
            "model_shadow_comparisons", "Shadow pairs by label agreement", ["outcome"], **reg
        )
        self.shadow_agreement = Gauge(
            "model_shadow_agreement_rate", "Share of shadow pairs with the same label", **latest
        )
        self.shadow_dropped = Counter(
            "model_shadow_dropped", "Shadow jobs dropped (queue full)", **reg
        )
        self.store_lookups = Counter(
            "model_entity_store_lookups", "Entity store cache lookups", ["result"], **reg
        )
        self.store_hit_rate = Gauge(
            "model_entity_store_cache_hit_rate", "Entity store cache hit rate", **latest
        )
        self.log_seconds = Histogram(
            "model_prediction_log_write_seconds",
            "Prediction log commit time",
            buckets=LOG_BUCKETS,
            **reg,
        )
        self.info = Gauge(
            "model_info", "Loaded models", ["role", "version", "alias", "kind"], **latest
        )
        self._agree = 0
        self._compared = 0
        self._lock = threading.Lock()
        for gauge in (self.online_precision, self.online_fpr, self.training_precision):
            gauge.set(math.nan)
        self.shadow_agreement.set(math.nan)
        self.store_hit_rate.set(math.nan)

    def record_predictions(self, role: str, labels, scores) -> None:
        """Count predictions and observe their scores."""
        histogram = self.score.labels(role=role)
        for label, score in zip(labels, scores, strict=True):
            self.predictions.labels(role=role, label=str(label)).inc()
            histogram.observe(float(score))

    def record_shadow(self, served_labels, shadow_labels) -> None:
        """Compare the answered and the shadow labels of the same requests."""
        agree = sum(a == b for a, b in zip(served_labels, shadow_labels, strict=True))
        total = len(shadow_labels)
        if agree:
            self.shadow_compared.labels(outcome="agree").inc(agree)
        if total - agree:
            self.shadow_compared.labels(outcome="disagree").inc(total - agree)
        with self._lock:
            self._agree += agree
            self._compared += total
            rate = self._agree / self._compared if self._compared else math.nan
        self.shadow_agreement.set(rate)

    def record_store(self, hits: int, misses: int, total_hits: int, total_misses: int) -> None:
        """Cache hits and misses of one lookup, and the running hit rate."""
        if hits:
            self.store_lookups.labels(result="hit").inc(hits)
        if misses:
            self.store_lookups.labels(result="miss").inc(misses)
        total = total_hits + total_misses
        if total:
            self.store_hit_rate.set(total_hits / total)

    def set_drift(self, scores: dict[str, float]) -> None:
        for feature, value in scores.items():
            self.drift.labels(feature=feature).set(value)


_INSTANCE: ServingMetrics | None = None
_INSTANCE_LOCK = threading.Lock()


def serving_metrics() -> ServingMetrics:
    """The process's metrics (created on first use, in the process's default registry)."""
    global _INSTANCE
    with _INSTANCE_LOCK:
        if _INSTANCE is None:
            _INSTANCE = ServingMetrics()
        return _INSTANCE
