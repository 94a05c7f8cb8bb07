"""``monitor`` (drift, online quality, health; retraining on alert) and ``compare`` (champion vs
challenger on shadow traffic)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from .common import ConfigOption, LogUrl, console, errors, existing_log, fail, load

REPORT_DIR = Path("reports/monitoring")

When = Annotated[
    str | None,
    typer.Option(help="ISO 8601 time, UTC unless it says otherwise, e.g. 2026-12-01T08:00"),
]
Out = Annotated[Path, typer.Option(help="Report folder")]


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise fail(f"{option} {value!r}: not an ISO 8601 time (e.g. 2026-12-01T08:00)") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def monitor(
    since: When = None,
    until: When = None,
    log_url: LogUrl = None,
    out: Out = REPORT_DIR,
    retrain_on_alert: Annotated[
        bool,
        typer.Option(
            "--retrain-on-alert",
            help="When a drift or quality alert fires, run the training pipeline; a model that "
            "passes the gate becomes the challenger",
        ),
    ] = False,
    retrain_data: Annotated[
        str | None,
        typer.Option(help="Recent labelled records to retrain on [default: data.source]"),
    ] = None,
    retrain_rows: Annotated[
        int | None, typer.Option(min=1, help="Rows when retraining on generated data")
    ] = None,
    retrain_trials: Annotated[int | None, typer.Option(min=1, help="Optuna trials")] = None,
    kfp_host: Annotated[
        str | None, typer.Option(help="Kubeflow endpoint when monitoring.retrain is kubeflow")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check a window of the prediction log: drift, online quality, serving health.

    Exit code: 0 healthy, 3 warning, 4 alert (1 and 2 stay errors: a failed run, bad input).
    """
    from ..config import find_config
    from ..monitoring import monitor as stage
    from ..monitoring.report import print_summary

    cfg = load(config)
    try:
        result = stage.run(
            cfg,
            since=_time(since, "--since"),
            until=_time(until, "--until"),
            log_url=existing_log(cfg, log_url),
            out_dir=cfg.path(out),
        )
    except (stage.MonitorError, ValueError) as exc:
        raise fail(str(exc)) from exc
    print_summary(console, result.summary, result.paths)
    actionable = [
        c for c in result.alerts if c["name"] not in ("predictions", "latency", "error rate")
    ]
    if retrain_on_alert and actionable:
        from ..monitoring.retrain import retrain

        reasons = [f"{c['name']}: {c['reason']}" for c in actionable]
        errors.print("alerts fired: retraining (" + "; ".join(c["name"] for c in actionable) + ")")
        outcome = retrain(
            cfg,
            find_config(config).resolve(),
            data=retrain_data,
            rows=retrain_rows,
            trials=retrain_trials,
            host=kfp_host,
            reasons=reasons,
        )
        console.print(outcome.summary(), highlight=False)
        if not outcome.succeeded:
            raise typer.Exit(1)
    elif retrain_on_alert:
        console.print("no drift or quality alert: no retraining", highlight=False)
    raise typer.Exit(result.exit_code)


def compare(
    since: When = None,
    until: When = None,
    log_url: LogUrl = None,
    out: Out = REPORT_DIR,
    config: ConfigOption = None,
) -> None:
    """Champion vs challenger on the shadow (or canary) predictions that have feedback labels."""
    import json

    from ..monitoring import monitor as stage
    from ..monitoring.compare import compare_models
    from ..monitoring.report import _json_safe
    from ..monitoring.window import read_window
    from ..predlog.store import PredictionLog
    from ..predlog.store import log_url as resolve_url

    cfg = load(config)
    try:
        start, end = stage.window_bounds(cfg, _time(since, "--since"), _time(until, "--until"))
    except ValueError as exc:
        raise fail(str(exc)) from exc
    log = PredictionLog(resolve_url(cfg, existing_log(cfg, log_url)))
    try:
        window = read_window(log, start, end, with_features=False)
    finally:
        log.close()
    result = compare_models(
        window.predictions,
        cfg.problem.positive_class,
        cfg.problem.negative_class,
        confidence=cfg.monitoring.confidence,
        min_labels=cfg.monitoring.min_labels,
    )
    folder = cfg.path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "compare.json"
    path.write_text(json.dumps(_json_safe(result.to_dict()), indent=2), encoding="utf-8")
    _print_comparison(result)
    console.print(result.summary(), highlight=False)
    console.print(f"details: {path}", highlight=False)


def _print_comparison(result) -> None:
    from rich.table import Table

    data = result.to_dict()
    models = {
        role: (data.get(role) or {}).get("metrics") or {} for role in ("champion", "challenger")
    }
    if not all(models.values()):
        return
    table = Table(title="Champion vs challenger (labelled requests)")
    table.add_column("metric")
    for role in models:
        table.add_column(role)
    for metric in models["champion"]:
        cells = []
        for role in models:
            est = models[role].get(metric) or {}
            value, low, high = est.get("value"), est.get("low"), est.get("high")
            if value is None:
                cells.append("-")
            elif low is None or high is None:
                cells.append(f"{value:.4f}")
            else:
                cells.append(f"{value:.4f} [{low:.4f}, {high:.4f}]")
        table.add_row(metric, *cells)
    console.print(table)
