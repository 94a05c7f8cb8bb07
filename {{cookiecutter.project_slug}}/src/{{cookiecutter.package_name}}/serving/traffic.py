"""The traffic stage: replay labelled records through the model, then ingest simulated feedback.

``run(cfg, frame, ...)`` is what ``traffic`` and the demo call: the records go through the
server's engine in-process (or over HTTP to a running server), every prediction lands in the
prediction log, and the feedback simulated users give about them is written to a CSV file and
ingested like a real feedback file. ``monitor`` and ``compare`` then read the result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from .replay import FeedbackPlan, replay, simulated_feedback

# Records held out at generation (``data generate --holdout N``): the default traffic.
LIVE_RECORDS = Path("data/live/records.parquet")
QUARANTINE_DIR = Path("data/quarantine/feedback")


@dataclass(frozen=True)
class TrafficResult:
    """What one replay did: how many records, how many flagged, and the feedback ingested."""

    replayed: int
    positive: str
    flagged_share: float
    accuracy: float
    feedback_path: Path
    feedback_summary: str

    def summary(self) -> str:
        """Two lines for the CLI."""
        return (
            f"replayed {self.replayed:,} records: {self.flagged_share:.1%} flagged "
            f"{self.positive}, {self.accuracy:.2%} correct\n"
            f"feedback {self.feedback_path}: {self.feedback_summary}"
        )


def start_after(cfg) -> datetime:
    """Just after the latest known record (training data, held-out records): the entity store
    expects requests in time order. A day ago when there is neither."""
    timestamp = cfg.data.timestamp
    latest = []
    for path in (cfg.path(cfg.data.source.path), cfg.path(LIVE_RECORDS)):
        if timestamp and path.is_file():
            times = pd.read_parquet(path, columns=[timestamp])[timestamp]
            latest.append(pd.to_datetime(times, utc=True).max().to_pydatetime())
    if latest:
        return max(latest) + timedelta(minutes=1)
    return datetime.now(UTC) - timedelta(days=1)


def _engine(cfg, routing: str | None):
    from .engine import Engine
    from .routing import ROUTING_ENV

    env = dict(os.environ)
    if routing:
        env[ROUTING_ENV] = routing
    return Engine.from_config(cfg, env)


def run(
    cfg,
    frame: pd.DataFrame,
    *,
    plan: FeedbackPlan,
    feedback_out: Path,
    url: str | None = None,
    routing: str | None = None,
) -> TrafficResult:
    """Replay ``frame`` (in-process, or over HTTP to ``url``) and ingest its simulated feedback.

    ``routing`` (single | shadow | canary) applies in-process only; a server has its own.
    """
    from ..predlog.feedback import ingest_feedback
    from ..predlog.store import PredictionLog, log_url

    engine = _engine(cfg, routing) if url is None else None
    try:
        replayed = replay(cfg, frame, engine=engine, url=url)
    finally:
        if engine is not None:
            engine.close()
    positive = cfg.problem.positive_class
    feedback = simulated_feedback(cfg, replayed, plan)
    target = cfg.path(feedback_out)
    target.parent.mkdir(parents=True, exist_ok=True)
    feedback.to_csv(target, index=False)
    log = PredictionLog(log_url(cfg))
    try:
        ingested = ingest_feedback(cfg, target, log, quarantine_dir=cfg.path(QUARANTINE_DIR))
    finally:
        log.close()
    return TrafficResult(
        replayed=len(replayed),
        positive=positive,
        flagged_share=float((replayed["label"] == positive).mean()) if len(replayed) else 0.0,
        accuracy=float((replayed["label"] == replayed["true_label"]).mean())
        if len(replayed)
        else 0.0,
        feedback_path=target,
        feedback_summary=ingested.summary(),
    )
