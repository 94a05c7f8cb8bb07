"""Replay labelled records as traffic, and simulate the feedback their users would give.

``replay`` sends records through the server's engine in-process (the same code path as
``/classify_batch``, logging to the same prediction log) or over HTTP to a running server
(``url``), in time order and in batches. ``simulated_feedback`` then plays the users: they
rescue a share of the negatives that were flagged, report a share of the missed positives,
and an audit sample gets its true label (what a labelling queue provides). The result is a
feedback file ``feedback`` ingests. Used by ``traffic``, the demo and the monitoring tests.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass

import numpy as np
import pandas as pd

FEEDBACK_COLUMNS = ("request_id", "message_id", "label", "source", "reported_at")


@dataclass(frozen=True)
class FeedbackPlan:
    """How simulated users label: shares of mistakes reported and of requests audited."""

    rescue_rate: float = 0.5  # flagged legitimate records a user rescues
    report_rate: float = 0.3  # missed positives a user reports
    audit_share: float = 0.05  # requests labelled by an auditor, right or wrong
    seed: int = 0


def _records(cfg, frame: pd.DataFrame) -> list[dict]:
    label = cfg.data.column("label").name
    body = frame.drop(columns=[label], errors="ignore")
    body = body.astype(object).where(body.notna(), None)
    records = body.to_dict("records")
    for record in records:
        for key, value in record.items():
            if isinstance(value, pd.Timestamp):
                record[key] = value.isoformat()
    return records


def _post(url: str, payload: list[dict], timeout: float = 30.0) -> list[dict]:
    request = urllib.request.Request(
        url.rstrip("/") + "/classify_batch",
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def replay(
    cfg,
    frame: pd.DataFrame,
    *,
    engine=None,
    url: str | None = None,
    batch: int = 64,
    progress: bool = True,
) -> pd.DataFrame:
    """Classify ``frame``'s records in time order; returns one row per record: request_id,
    message_id, the true label (when ``frame`` has one), predicted label, score, model version."""
    from .schema import record_model

    if (engine is None) == (url is None):
        raise ValueError("replay needs exactly one of engine (in-process) or url (HTTP)")
    timestamp = cfg.data.timestamp
    label = cfg.data.column("label").name
    if timestamp:
        frame = frame.sort_values(timestamp, kind="stable").reset_index(drop=True)
    records = _records(cfg, frame)
    record_cls = record_model(cfg)
    out: list[dict] = []
    from rich.progress import Progress

    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("Replaying records", total=len(records))
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            if url is not None:
                answers = _post(url, chunk)
            else:
                validated = [record_cls.model_validate(r) for r in chunk]
                answers = [p.model_dump() for p in engine.classify(validated)]
            out.extend(answers)
            bar.advance(task, len(chunk))
    result = pd.DataFrame(out)
    result["true_label"] = frame[label].to_numpy() if label in frame else None
    return result[["request_id", "message_id", "true_label", "label", "score", "model_version"]]


def simulated_feedback(cfg, replayed: pd.DataFrame, plan: FeedbackPlan) -> pd.DataFrame:
    """The feedback users would send about ``replayed`` (from :func:`replay`)."""
    rng = np.random.default_rng(plan.seed)
    positive, negative = cfg.problem.positive_class, cfg.problem.negative_class
    truth = replayed["true_label"].to_numpy()
    predicted = replayed["label"].to_numpy()
    draw = rng.random(len(replayed))
    rescued = (predicted == positive) & (truth == negative) & (draw < plan.rescue_rate)
    reported = (predicted == negative) & (truth == positive) & (draw < plan.report_rate)
    audited = rng.random(len(replayed)) < plan.audit_share
    now = pd.Timestamp.now(tz="UTC").isoformat()
    parts = []
    for mask, source in ((rescued, "rescue"), (reported, "report"), (audited, "audit")):
        part = replayed.loc[mask, ["request_id", "message_id", "true_label"]]
        parts.append(part.rename(columns={"true_label": "label"}).assign(source=source))
    feedback = pd.concat(parts, ignore_index=True).assign(reported_at=now)
    # A request both flagged by its user and audited keeps one report per label.
    feedback = feedback.drop_duplicates(["request_id", "label"])
    return feedback[list(FEEDBACK_COLUMNS)]
