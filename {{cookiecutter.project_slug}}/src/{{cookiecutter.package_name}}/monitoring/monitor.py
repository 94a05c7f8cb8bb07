"""The monitoring stage: a window of the prediction log against the champion's reference.

``run(cfg, ...)`` reads the window (``window.py``), computes data drift and prediction drift on
the rows the champion served (``drift.py``), online quality from feedback and serving health on
every served row (``online.py``), turns each into a check against the contract's ``alerts``,
and writes the report (``report.py``). The exit code tells a scheduler what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..stores import redacted
from . import drift, online
from .report import STATUS_ORDER, write_report
from .window import Window, read_window

EXIT_OK = 0
EXIT_WARN = 3
EXIT_ALERT = 4
EXIT_CODES = {"ok": EXIT_OK, "warn": EXIT_WARN, "alert": EXIT_ALERT}


class MonitorError(RuntimeError):
    """Monitoring cannot run (no champion, no log): the message says what to do."""


@dataclass
class MonitorResult:
    summary: dict
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def alerts(self) -> list[dict]:
        return [c for c in self.summary["checks"] if c["status"] == "alert"]


def window_bounds(
    cfg, since: datetime | None = None, until: datetime | None = None
) -> tuple[datetime, datetime]:
    """``[since, until)`` in UTC; defaults: the last ``monitoring.window_hours`` up to now."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(hours=cfg.monitoring.window_hours)
    if since >= until:
        raise ValueError(f"the window is empty: since {since} is not before until {until}")
    return since, until


def champion_reference(cfg) -> tuple[dict, int, float | None]:
    """The champion's reference, version and training (test) precision, from the registry."""
    from ..models import registry

    try:
        bundle, info = registry.load_registered_bundle(cfg, registry.CHAMPION)
    except registry.NoChampionError as exc:
        raise MonitorError(
            f"no champion in the registry at {cfg.tracking_uri}: nothing to monitor ({exc}). "
            "Train and promote one first (`make train`)."
        ) from exc
    metrics = bundle.metadata.get("metrics", {})
    precision = next(
        (
            metrics[s]["precision"]
            for s in ("test", "validation")
            if "precision" in metrics.get(s, {})
        ),
        None,
    )
    return bundle.reference, info.version, precision


def _check(name: str, value, threshold, status: str, reason: str) -> dict:
    return {
        "name": name,
        "value": value,
        "threshold": threshold,
        "status": status,
        "reason": reason,
    }


def _drift_checks(features: list[dict], psi_max: float, missing_max: float) -> list[dict]:
    """One check for data drift and one for missing features, naming the features behind them."""
    checks = []
    judged = [f for f in features if f["status"] != "too_few_rows"]
    for name, pick, threshold in (
        ("data drift", lambda f: not f["reason"].startswith("missing"), psi_max),
        ("missing features", lambda f: f["reason"].startswith("missing"), missing_max),
    ):
        if not judged:
            checks.append(_check(name, None, threshold, "no_data", "too few rows to judge"))
            continue
        for status in ("alert", "warn"):
            hits = [f for f in judged if f["status"] == status and pick(f)]
            if hits:
                listed = "; ".join(f"{f['name']} ({f['reason']})" for f in hits[:8])
                more = f" and {len(hits) - 8} more" if len(hits) > 8 else ""
                value = max((f["psi"] or 0.0) for f in hits) if name == "data drift" else None
                checks.append(_check(name, value, threshold, status, listed + more))
                break
        else:
            psis = [f["psi"] for f in judged if f["psi"] is not None]
            value = max(psis) if psis and name == "data drift" else None
            checks.append(_check(name, value, threshold, "ok", f"{len(judged)} features checked"))
    return checks


def _freshness_check(cfg, window: Window) -> dict:
    limit = cfg.alerts.no_predictions_minutes
    served = window.served
    if served.empty:
        return _check("predictions", None, limit, "alert", "no served prediction in the window")
    last = served["created_at"].max().to_pydatetime()
    minutes = (window.until - last).total_seconds() / 60
    status = "alert" if minutes > limit else "ok"
    return _check(
        "predictions", round(minutes, 1), limit, status, f"last prediction {minutes:.1f} min ago"
    )


def evaluate_window(cfg, window: Window, reference: dict, champion_version: int, precision) -> dict:
    """Every statistic and check of one window, as the JSON summary."""
    alerts = cfg.alerts
    positive, negative = cfg.problem.positive_class, cfg.problem.negative_class
    confidence = cfg.monitoring.confidence
    served = window.served
    own = served["model_version"] == champion_version
    features = window.features.loc[own.index[own]]
    scores = served.loc[own, "score"].to_numpy(dtype=float)
    feature_drift = drift.data_drift(
        reference,
        features,
        psi_max=alerts.drift_psi_max,
        missing_max=alerts.missing_rate_increase_max,
        warn_fraction=alerts.warn_fraction,
        min_rows=cfg.monitoring.min_rows,
        window_hours=(window.until - window.since).total_seconds() / 3600,
    )
    feature_dicts = [f.to_dict() for f in feature_drift]
    prediction = drift.prediction_drift(
        reference,
        scores,
        served.loc[own, "label"].to_numpy() == positive,
        psi_max=alerts.drift_psi_max,
        warn_fraction=alerts.warn_fraction,
        min_rows=cfg.monitoring.min_rows,
        confidence=confidence,
    )
    quality = online.online_quality(served, positive, negative, confidence=confidence)
    health = online.serving_health(
        served,
        window.errors,
        latency_p99_ms_max=alerts.latency_p99_ms,
        error_rate_max=alerts.error_rate_max,
        warn_fraction=alerts.warn_fraction,
    )
    checks = [_freshness_check(cfg, window)]
    checks += _drift_checks(feature_dicts, alerts.drift_psi_max, alerts.missing_rate_increase_max)
    checks.append(
        _check(
            "prediction drift",
            prediction.get("psi"),
            alerts.drift_psi_max,
            prediction["status"] if prediction["status"] != "too_few_rows" else "no_data",
            prediction["reason"],
        )
    )
    checks += online.quality_checks(
        quality,
        training_precision=precision,
        fp_rate_max=alerts.false_positive_rate_max,
        precision_drop_max=alerts.precision_drop_max,
    )
    checks += health["checks"]
    worst = min((c["status"] for c in checks), key=lambda s: STATUS_ORDER.get(s, 4))
    status = worst if worst in ("alert", "warn") else "ok"
    return {
        "status": status,
        "exit_code": EXIT_CODES[status],
        "window": {
            "since": window.since,
            "until": window.until,
            "predictions": len(window.predictions),
            "served": len(served),
            "champion_rows": int(own.sum()),
            "feedback_labels": int(served["feedback"].notna().sum()),
            "errors": window.errors,
        },
        "champion": {
            "version": champion_version,
            "reference_source": reference.get("source", reference.get("score_source", "training")),
            "training_precision": precision,
        },
        "thresholds": {
            "drift_psi_max": alerts.drift_psi_max,
            "missing_rate_increase_max": alerts.missing_rate_increase_max,
            "false_positive_rate_max": alerts.false_positive_rate_max,
            "precision_drop_max": alerts.precision_drop_max,
            "latency_p99_ms": alerts.latency_p99_ms,
            "error_rate_max": alerts.error_rate_max,
            "warn_fraction": alerts.warn_fraction,
        },
        "checks": checks,
        "drift": {
            "features": feature_dicts,
            "alerts": [f["name"] for f in feature_dicts if f["status"] == "alert"],
            "warnings": [f["name"] for f in feature_dicts if f["status"] == "warn"],
        },
        "prediction_drift": prediction,
        "online": {
            "quality": quality,
            "over_time": online.quality_over_time(
                served, positive, negative, freq=None, confidence=confidence
            )
            if len(served)
            else [],
        },
        "health": health,
    }


def run(
    cfg,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    log_url: str | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
) -> MonitorResult:
    """Monitor the window ``[since, until)`` of the prediction log; write the report."""
    from ..predlog.store import PredictionLog
    from ..predlog.store import log_url as resolve_url

    since, until = window_bounds(cfg, since, until)
    reference, version, precision = champion_reference(cfg)
    url = resolve_url(cfg, log_url)
    log = PredictionLog(url)
    try:
        window = read_window(log, since, until, reference=reference, progress=progress)
    finally:
        log.close()
    summary = evaluate_window(cfg, window, reference, version, precision)
    summary["log"] = redacted(url)
    paths = write_report(summary, out_dir or cfg.path("reports/monitoring"))
    return MonitorResult(summary, paths)
