"""Ingest user feedback (reports of missed positives, rescues of flagged negatives) into the prediction log's database.

A feedback file is CSV, JSON Lines (``.jsonl`` / ``.ndjson``), a JSON list or Parquet, one report
per row, with the columns:

``request_id``   the ``request_id`` the server answered with, and/or
``message_id``   the record's id (at least one of the two; the contract's id column name too)
``label``        what the user says the record is: the contract's positive or negative class
                 (the contract's label column name too)
``reported_at``  optional, ISO 8601 (also accepted as ``at`` or ``timestamp``)
``source``       optional, e.g. ``report`` or ``rescue``

Rows that cannot be used (a JSON line that does not parse, no id, unknown label, unparseable
time, a time outside the records' span: before the contract's earliest record time or after
the run, with the timestamp column's ``max_ahead_days`` of clock slack) are written with a
``reason`` column to the quarantine folder, never dropped silently: the latest report of a
prediction is its label, so a report dated 2099 would outvote every later correction.
Ingesting the same file twice adds nothing: each report has a key (hash of its ids, label and
time). Reports whose ids match no served prediction are kept (the prediction may be in another
database) and counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ..timebounds import EARLIEST
from .store import KEY_MAX_CHARS, REQUEST_ID_MAX_CHARS, PredictionLog, utc_naive

TIME_COLUMNS = ("reported_at", "at", "timestamp")
# The column of a JSON line that is no report (broken JSON, not an object): why, where.
UNREADABLE = "_unreadable"


def _json_lines(path: Path) -> pd.DataFrame:
    """One row per line; a line that is no JSON object (or not UTF-8: an id read with
    replacement characters would match no prediction) is a row saying so (``UNREADABLE``), so
    one broken line does not refuse the reports around it. A file with no report is refused."""
    rows = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            why = f"line {number}: not a JSON object"
            try:
                value = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                value, why = None, f"line {number}: not UTF-8"
            except ValueError:
                value = None
            rows.append(value if isinstance(value, dict) else {UNREADABLE: why})
    if rows and all(UNREADABLE in row for row in rows):
        raise ValueError(f"no line is a JSON object ({rows[0][UNREADABLE]})")
    return pd.DataFrame(rows)


READERS = {
    ".csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False),
    ".jsonl": _json_lines,
    ".ndjson": _json_lines,
    ".json": lambda p: pd.read_json(p, dtype=False),
    ".parquet": pd.read_parquet,
}


class FeedbackFileError(ValueError):
    """The feedback file cannot be read at all; the message says why."""


@dataclass
class FeedbackResult:
    """What one ingestion did: ``read == inserted + duplicates + rejected``."""

    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    unmatched: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    quarantine_path: Path | None = None

    def summary(self) -> str:
        """One line, e.g. ``read 3, inserted 2, duplicates 0, rejected 1 (bad_label 1)``."""
        text = (
            f"read {self.read}, inserted {self.inserted}, duplicates {self.duplicates}, "
            f"rejected {self.rejected}"
        )
        if self.reasons:
            text += " (" + ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items())) + ")"
        if self.unmatched:
            text += f"; {self.unmatched} match no logged prediction"
        if self.quarantine_path:
            text += f"; rejected rows in {self.quarantine_path}"
        return text


def read_feedback(path: Path, cfg=None) -> pd.DataFrame:
    """The feedback file as a table of strings (missing cells: empty strings). With ``cfg``, the
    contract's id and label column names stand for ``message_id`` and ``label``."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise FeedbackFileError(
            f"{path}: unknown feedback format {path.suffix!r} (use {', '.join(READERS)})"
        )
    if not path.is_file():
        raise FeedbackFileError(f"{path}: no such file")
    try:
        frame = reader(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise FeedbackFileError(f"{path}: cannot read it as {path.suffix}: {exc}") from exc
    columns = ", ".join(map(str, frame.columns))  # as the file names them
    label_name = ""
    if cfg is not None:
        names = {cfg.data.column("id").name: "message_id", cfg.data.column("label").name: "label"}
        frame = frame.rename(columns={k: v for k, v in names.items() if v not in frame.columns})
        label = cfg.data.column("label").name
        label_name = f" (or '{label}')" if label != "label" else ""
    if "label" not in frame.columns:
        raise FeedbackFileError(f"{path}: no 'label'{label_name} column (columns: {columns})")
    if not {"request_id", "message_id"} & set(frame.columns):
        name = cfg.data.column("id").name if cfg is not None else "message_id"
        record_id = f" (or '{name}')" if name != "message_id" else ""
        raise FeedbackFileError(f"{path}: needs a 'request_id' or a 'message_id'{record_id} column")
    return frame.astype(object).where(frame.notna(), "").map(lambda v: str(v).strip())


def _time(value: str) -> datetime | None:
    if not value:
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return utc_naive(stamp.to_pydatetime())


def _report_span(cfg) -> tuple[datetime, datetime]:
    """When a report can have been made: in the span of the contract's record times, or up to
    now without a timestamp column."""
    now = datetime.now(UTC)
    if cfg.data.timestamp is None:
        return EARLIEST, now
    return cfg.data.column("timestamp").time_bounds(now)


def _key(request_id: str, message_id: str, label: str, at: datetime | None) -> str:
    raw = json.dumps([request_id, message_id, label, at.isoformat() if at else ""])
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def prepare(cfg, frame: pd.DataFrame) -> tuple[list[dict], pd.DataFrame]:
    """Feedback rows to insert, and the rejected rows with a ``reason`` column."""
    classes = {c.lower(): c for c in (cfg.problem.positive_class, cfg.problem.negative_class)}
    time_column = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    now = utc_naive(datetime.now(UTC))
    earliest, latest = (utc_naive(t) for t in _report_span(cfg))
    good, bad = [], []
    for record in frame.to_dict("records"):
        request_id = record.get("request_id", "")
        message_id = record.get("message_id", "")
        label = classes.get(record.get("label", "").lower())
        reason = None
        if record.get(UNREADABLE):
            reason = "unreadable_line"
        elif not request_id and not message_id:
            reason = "no_id"
        elif label is None:
            reason = "bad_label"
        elif len(request_id) > REQUEST_ID_MAX_CHARS or len(message_id) > KEY_MAX_CHARS["id"]:
            reason = "id_too_long"
        at = None
        if reason is None and time_column:
            try:
                at = _time(record.get(time_column, ""))
            except (ValueError, TypeError, OverflowError):
                reason = "bad_time"
            if at is not None and not earliest <= at <= latest:
                reason = "time_out_of_range"
        if reason:
            bad.append({**record, "reason": reason})
            continue
        good.append(
            {
                "request_id": request_id or None,
                "message_id": message_id or None,
                "label": label,
                "source": record.get("source") or None,
                "reported_at": at,
                "ingested_at": now,
                "key": _key(request_id, message_id, label, at),
            }
        )
    return good, pd.DataFrame(bad)


def ingest_feedback(cfg, path: Path, log: PredictionLog, *, quarantine_dir: Path) -> FeedbackResult:
    """Read ``path``, store its valid reports in ``log`` and quarantine the rest."""
    path = Path(path)
    frame = read_feedback(path, cfg)
    good, bad = prepare(cfg, frame)
    result = FeedbackResult(read=len(frame), rejected=len(bad))
    if len(bad):
        result.reasons = bad["reason"].value_counts().to_dict()
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        result.quarantine_path = quarantine_dir / f"{path.stem}-rejected.csv"
        bad.to_csv(result.quarantine_path, index=False)
    result.inserted, result.duplicates = log.add_feedback(good)
    requests = [r["request_id"] for r in good if r["request_id"]]
    messages = [r["message_id"] for r in good if r["message_id"]]
    found_requests, found_messages = log.matched(requests, messages)
    result.unmatched = sum(
        1
        for r in good
        if r["request_id"] not in found_requests and r["message_id"] not in found_messages
    )
    return result
