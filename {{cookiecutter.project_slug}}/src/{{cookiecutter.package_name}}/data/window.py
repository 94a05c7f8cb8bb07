"""The most recent labelled window: answered requests and their feedback, as training rows.

Reads the prediction log (``serving.log_records`` keeps each answered request's raw record
there), labels each request by the rule in ``predlog/labels.py`` (the latest feedback, else
the answer it was served) and writes the rows in the contract's schema, where ``data validate``
and the rest of the chain read raw data. ``run`` is the ``data window`` command and the
pipeline's ``get-data`` with ``data_source=window``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from ..config import SystemConfig
from ..predlog.labels import labelled_window
from ..predlog.store import PredictionLog, log_url
from ..stores import redacted
from .canonical import to_contract_frame


class WindowError(ValueError):
    """The log holds no labelled window to train on; the message says why."""


@dataclass(frozen=True)
class WindowSummary:
    rows: int
    positives: int
    from_feedback: int
    answered: int
    without_record: int
    since: datetime
    until: datetime

    def line(self) -> str:
        share = self.from_feedback / self.rows if self.rows else 0.0
        line = (
            f"{self.rows:,} answered requests from {self.since:%Y-%m-%d %H:%M} to "
            f"{self.until:%Y-%m-%d %H:%M} UTC, {self.positives:,} positive; labels from "
            f"feedback {self.from_feedback:,} ({share:.1%}), the rest as served"
        )
        if self.without_record:
            line += f"; {self.without_record:,} answered without a kept record left out"
        return line


def run(
    cfg: SystemConfig,
    out: str | Path,
    *,
    days: float | None = None,
    until: datetime | None = None,
    url: str | None = None,
) -> WindowSummary:
    """Write the labelled window ending at ``until`` (now) of ``days`` (``training.window_days``)
    to ``out`` (Parquet); ``url`` is the log (``$PREDICTION_LOG_URL``, else the contract's)."""
    out = Path(out)
    until = until or datetime.now(UTC)
    since = until - timedelta(days=days or cfg.training.window_days)
    label = cfg.data.column("label").name
    location = log_url(cfg, url)
    with PredictionLog(location) as log:
        window = labelled_window(log, since, until, label)
    where = f"in {redacted(location)} between {since:%Y-%m-%d %H:%M} and {until:%Y-%m-%d %H:%M} UTC"
    if not window.records:
        if window.answered and not cfg.serving.log_records:
            raise WindowError(
                f"{window.answered:,} answered requests {where} but no raw records: set "
                "serving.log_records: true in the contract (the server then keeps them)"
            )
        raise WindowError(f"no answered request with a kept record {where}")
    frame = to_contract_frame(cfg, pd.DataFrame.from_records(window.records))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    frame.to_parquet(partial, index=False)
    partial.replace(out)
    positives = int((frame[label] == cfg.problem.positive_class).sum())
    return WindowSummary(
        rows=len(frame),
        positives=positives,
        from_feedback=window.from_feedback,
        answered=window.answered,
        without_record=window.without_record,
        since=since,
        until=until,
    )
