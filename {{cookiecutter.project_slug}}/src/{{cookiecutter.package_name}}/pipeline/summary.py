"""What a local run or an in-process walk did, for people: the task table and where the outputs are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import SystemConfig
from .dag import PROMOTION_BRANCH, TASKS

if TYPE_CHECKING:
    from .run import LocalRun
    from .walk import Walk


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value) or "-"
    return str(value)


def key_metrics(record: dict | None) -> str:
    """A record's metrics on one line, e.g. ``rows 2,500, positive_rate 0.3100``."""
    if not record:
        return ""
    if record.get("status") == "failed":
        return record.get("error", "")
    metrics = record.get("metrics", {})
    return ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items() if v not in ("", [], None))


def task_status(run: LocalRun | Walk, task: str) -> str:
    """succeeded / failed from the journal; skipped (branch not taken) or not run."""
    record = run.record(task)
    if record is not None:
        return record.get("status", "unknown")
    if not run.succeeded:
        return "not run"
    return "skipped (gate failed)" if task in PROMOTION_BRANCH else "skipped (gate passed)"


def task_table(run: LocalRun | Walk, tasks: tuple[str, ...] = TASKS):
    """A rich table: task, status, duration, key metrics (of ``tasks``, by default all)."""
    from rich.table import Table

    from ..models.training import duration

    table = Table(title=f"Pipeline run ({duration(run.seconds)} in all)")
    for column in ("task", "status", "duration", "key metrics"):
        table.add_column(column, justify="right" if column == "duration" else "left")
    colors = {"succeeded": "green", "failed": "red"}
    for task in tasks:
        record = run.record(task)
        status = task_status(run, task)
        color = colors.get(status, "dim")
        seconds = duration(record["seconds"]) if record else ""
        table.add_row(task, f"[{color}]{status}[/{color}]", seconds, key_metrics(record))
    return table


def where_outputs(run: LocalRun, cfg: SystemConfig) -> list[str]:
    """Lines saying where a person finds the outputs of the run."""
    lines = []
    if run.run_dir:
        lines.append(f"artifacts: {run.run_dir}")
    for task, name, label in (
        ("validate-data", "report", "validation report"),
        ("evaluate-model", "report", "evaluation report (HTML)"),
        ("evaluate-model", "model_card", "model card"),
        ("promote-model", "decision", "promotion decision"),
        ("report-gate-failure", "note", "why not promoted"),
        ("export-serving-bundle", "serving", "serving bundle"),
    ):
        path = run.output(task, name)
        if path:
            lines.append(f"{label}: {path}")
    record = run.record("promote-model")
    if record:
        uri = run.arguments.get("mlflow_tracking_uri") or cfg.tracking_uri
        lines.append(f"registry: {record['outputs'].get('model_uri')} in {uri}")
    lines.append(f"task journal: {run.journal_path}")
    return lines
