"""Batch scoring: a file of records in, a file of predictions out (the batch serving pattern).

The same steps as a request, over large chunks instead of one record:

1. read the file (Parquet, CSV or JSON lines) and judge it by the contract's scoring suite
   (``data.validate`` with ``scoring=True``: the columns' checks without the label's); rows that
   break a row check are quarantined with their reason, and a file the contract refuses as a
   whole stops here with nothing scored. Before that, what a request may omit is filled in as
   the server fills it (``schema.fill_omitted``: defaults, the pack's completions; never the
   id or the time), and a nullable column the file lacks is missing in each record, both said
   in the run's notes;
2. in time order, add each record's entity history from the entity store (which records the
   record as seen, as the server does) and score it with the registry's champion;
3. log every prediction in the prediction log (routing ``batch``), with the monitored values the
   server logs (``logrows.py``), so ``monitor`` covers batch scoring too; in a file of more
   than one chunk, on more than one core, a second process logs each chunk while the next one
   is scored (``logwriter.py``); the run ends once every prediction is committed;
4. write the predictions (source row, record id, label, score, threshold, model) in the input's
   order.

A record's request id is derived from its id, time and values, so scoring a file again with
the same model is idempotent: the predictions already logged are read back, not scored again,
and the entity store does not count those records twice. A record whose values changed under the
same id and time is a new request: it is scored, not answered with its old prediction.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..data.records_file import RECODED
from ..data.validate import ValidationReport, read_table, validate_records
from ..predlog.store import PredictionLog, log_url, utc_naive
from .heap import frozen
from .loading import load_models
from .logrows import LogRows, ModelStamp
from .logwriter import InlineLogWriter, LogChunk, ProcessLogWriter, usable_cores
from .routing import RoutingPlan
from .schema import fill_omitted

ROUTING = "batch"
CHUNK_ROWS = 10_000
TAIL_TAPER = 0.75  # chunk sizes towards the end of a file (see chunk_bounds)
TAIL_PIECE = 16
LOG_WRITERS = ("auto", "process", "inline")
# Request ids of batch predictions: a name-based UUID of the record's id.
_NAMESPACE = uuid.UUID("6f1d2c4e-8a7b-4e35-9c0f-5b8e2a1d3c7f")
_NAME_HASH = hashlib.sha1(_NAMESPACE.bytes)  # uuid5's hash, before the name
_MS_BITS = (1 << 48) - 1
_HEX = np.array([f"{b:02x}".encode() for b in range(256)], dtype="S2")
OUTPUT_COLUMNS = (
    "source_row",
    "prediction",
    "score",
    "threshold",
    "model_name",
    "model_version",
    "request_id",
    "scored_at",
)


class BatchRefused(RuntimeError):
    """The file breaks the contract as a whole: nothing was scored (``report`` says why)."""

    def __init__(self, report: ValidationReport):
        super().__init__(report.summary())
        self.report = report


@dataclass
class BatchResult:
    """What a batch run did: counts, where things went, and how fast scoring ran."""

    rows: int
    scored: int
    quarantined: int
    from_log: int
    model_name: str
    model_version: int
    output: Path
    quarantine: Path | None
    report: Path
    validation_s: float
    scoring_s: float
    seconds: float
    positives: int = 0
    log_writer: str = "inline"
    notes: list[str] = field(default_factory=list)

    @property
    def records_per_s(self) -> float:
        """Records scored per second of scoring (history, features, model, log)."""
        return self.scored / self.scoring_s if self.scoring_s > 0 else 0.0

    @property
    def overall_per_s(self) -> float:
        """Records per second from reading the file to writing the predictions."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "scored": self.scored,
            "quarantined": self.quarantined,
            "from_log": self.from_log,
            "positives": self.positives,
            "log_writer": self.log_writer,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "output": str(self.output),
            "quarantine": str(self.quarantine) if self.quarantine else None,
            "validation_s": round(self.validation_s, 3),
            "scoring_s": round(self.scoring_s, 3),
            "seconds": round(self.seconds, 3),
            "records_per_s": round(self.records_per_s),
            "overall_records_per_s": round(self.overall_per_s),
            "notes": self.notes,
        }


def request_id(record_id, at: pd.Timestamp | None = None, digest: int | None = None) -> str:
    """The request id of a record's batch prediction: 32 hex characters, a name-based UUID of
    its id (and of ``digest``, its values' :func:`record_digests`) whose first 48 bits are
    replaced by the record's time in milliseconds when it has one. Like the server's (UUIDv7)
    ids they follow time, and a file is scored in time order: the log's request id index grows
    at its end instead of at a random page per record."""
    name = _name_uuid(_name(record_id, digest))
    if at is None or at is pd.NaT:
        return name
    return f"{(at.value // 1_000_000) & _MS_BITS:012x}{name[12:]}"


def request_ids(
    record_ids: list, times: pd.Series | None = None, digests: list[int] | None = None
) -> list[str]:
    """:func:`request_id` of each record, ``times`` a datetime column or ``None``. Only the
    SHA-1 runs per record: the UUID's version and variant bits, the time and the hex digits
    are set over the chunk's digests as one byte array."""
    digests = digests or [None] * len(record_ids)
    if times is not None and not (
        isinstance(times.dtype, pd.DatetimeTZDtype) or times.dtype.kind == "M"
    ):
        return [
            request_id(i, t, d) for i, t, d in zip(record_ids, times.tolist(), digests, strict=True)
        ]
    hashed = bytearray()
    for i, d in zip(record_ids, digests, strict=True):
        name = _NAME_HASH.copy()
        name.update(_name(i, d).encode())
        hashed += name.digest()[:16]
    uuids = np.frombuffer(hashed, dtype=np.uint8).reshape(len(record_ids), 16).copy()
    uuids[:, 6] = (uuids[:, 6] & 0x0F) | 0x50  # version 5
    uuids[:, 8] = (uuids[:, 8] & 0x3F) | 0x80  # the RFC 4122 variant
    if times is not None:
        stamps = times.to_numpy(dtype="datetime64[ns]")  # UTC when the column has a zone
        ms = (stamps.view("int64") // 1_000_000) & _MS_BITS
        timed = ~np.isnat(stamps)
        # The milliseconds' 48 bits, big-endian, as the first 6 bytes.
        uuids[timed, :6] = ms[timed].astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]
    text = _HEX[uuids].tobytes().decode("ascii")
    return [text[k : k + 32] for k in range(0, len(text), 32)]


def record_digests(rows: pd.DataFrame, columns: list[str]) -> list[int]:
    """A 64-bit digest of each row's values in ``columns`` (pandas' row hash: the same values
    of the same types give the same digest in every run)."""
    present = [c for c in columns if c in rows]
    # Without categorize: most values (texts, times, amounts) are unique, factorizing them
    # first costs more than hashing them.
    return pd.util.hash_pandas_object(rows[present], index=False, categorize=False).tolist()


def _name(record_id, digest: int | None) -> str:
    return str(record_id) if digest is None else f"{record_id}\x1f{digest:016x}"


def _name_uuid(record_id) -> str:
    """``uuid.uuid5(_NAMESPACE, str(record_id)).hex`` without building a ``UUID``."""
    name = _NAME_HASH.copy()
    name.update(str(record_id).encode())
    value = int.from_bytes(name.digest()[:16])
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # the RFC 4122 variant
    value = (value & ~(0xF000 << 64)) | (5 << 76)  # version 5
    return f"{value:032x}"


def chunk_bounds(rows: int, chunk_rows: int, *, taper: bool = True) -> list[tuple[int, int]]:
    """(start, stop) of each chunk: ``chunk_rows`` rows, tapering towards the end of the file.

    A writer process commits each chunk while the next is scored, but nothing overlaps the
    last commit: chunks shrink by ``TAIL_TAPER`` towards the end (a commit costs less than the
    next chunk's scoring), down to a last one of ``chunk_rows`` / ``TAIL_PIECE``, so the run
    ends one small commit after its last chunk is scored. Without ``taper`` (the log written
    in turn, where nothing overlaps anything), chunks of ``chunk_rows``.
    """
    if not taper:
        return [(start, min(start + chunk_rows, rows)) for start in range(0, rows, chunk_rows)]
    bounds: list[tuple[int, int]] = []
    stop, size = rows, max(1, chunk_rows // TAIL_PIECE)
    while stop > 0:
        start = max(0, stop - size)
        bounds.append((start, stop))
        stop, size = start, min(chunk_rows, math.ceil(size / TAIL_TAPER))
    return bounds[::-1]


def side_paths(output: Path) -> tuple[Path, Path]:
    """Where the quarantined rows and the run's report go, beside the predictions."""
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(f"{stem}.quarantine.parquet"), output.with_name(f"{stem}.report.json")


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write Parquet, CSV or JSON lines by the path's suffix (atomically: a temporary file)."""
    suffix = path.suffix.lower()
    writers = {
        ".parquet": lambda p: frame.to_parquet(p, index=False),
        ".pq": lambda p: frame.to_parquet(p, index=False),
        ".csv": lambda p: frame.to_csv(p, index=False),
        ".jsonl": lambda p: frame.to_json(p, orient="records", lines=True, date_format="iso"),
        ".ndjson": lambda p: frame.to_json(p, orient="records", lines=True, date_format="iso"),
    }
    if suffix not in writers:
        raise ValueError(f"{path}: unknown format '{suffix}' (expected .parquet, .csv or .jsonl)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writers[suffix](tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def run(
    cfg,
    input_path: Path,
    output_path: Path,
    *,
    env: dict | None = None,
    now=None,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = False,
    log_writer: str = "auto",
) -> BatchResult:
    """Score ``input_path`` with the champion into ``output_path``; see the module docstring.

    ``env`` as the server reads it (``MODEL_VERSION``, ``PREDICTION_LOG_URL``,
    ``ENTITY_STORE_URL``). ``log_writer``: ``process`` logs in a second process beside the
    scoring, ``inline`` in turn with it; ``auto`` takes ``process`` for a file of more than
    one chunk on more than one core (README, performance: it was the faster on each use case,
    even where the log costs more CPU than the features and model), else ``inline``. Raises
    :class:`BatchRefused` when the file is refused as a whole (the quarantine and the report
    are written first).
    """
    if log_writer not in LOG_WRITERS:
        raise ValueError(f"log_writer: {log_writer!r} is not one of {', '.join(LOG_WRITERS)}")
    started = time.perf_counter()
    env = os.environ if env is None else env
    input_path, output_path = Path(input_path), Path(output_path)
    quarantine_path, report_path = side_paths(output_path)
    for written in (output_path, quarantine_path, report_path):
        # A run replaces its outputs first: one of them as the input would be lost unread.
        if written.resolve() == input_path.resolve() or (
            written.exists() and input_path.exists() and written.samefile(input_path)
        ):
            raise ValueError(
                f"{input_path}: is also this run's output {written}: write the predictions "
                "to another --out"
            )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (output_path, quarantine_path, report_path):
        stale.unlink(missing_ok=True)
    url = log_url(cfg, env.get("PREDICTION_LOG_URL") or None)
    # Started first, so the writer's start-up overlaps reading and validation.
    beside = log_writer == "process" or (log_writer == "auto" and usable_cores() > 1)
    writer = ProcessLogWriter() if beside else None
    try:
        raw, filled = fill_omitted(cfg, _read(input_path))
        raw, absent = _absent_as_missing(cfg, raw)
        if writer is not None and log_writer == "auto" and len(raw) <= chunk_rows:
            writer.close()  # a chunk's rows or fewer: too little log to hand over
            writer = None
        report = validate_records(cfg, raw, now=now, docs=False, scoring=True)
        validation_s = time.perf_counter() - started
        if len(report.quarantine):
            report.quarantine.to_parquet(quarantine_path, index=False)
        if not report.usable:
            _write_report(report_path, report, None)
            raise BatchRefused(report)
        champion, _ = load_models(cfg, RoutingPlan("single"), env)
        scorer = _Scorer(cfg, champion, env, url, writer=writer)
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    valid = report.valid
    order = valid
    if cfg.data.timestamp:  # history is point in time: earlier records first
        order = valid.sort_values(cfg.data.timestamp, kind="stable")
    began = time.perf_counter()
    parts: list[pd.DataFrame] = []
    bar = _progress(len(order)) if progress else None
    try:
        try:
            # frozen: the file, the model and the libraries hold no garbage. One BLAS thread:
            # its workers spin after each product, on the core the log writer needs.
            with frozen(), threadpool_limits(1, user_api="blas"):
                taper = writer is not None  # the scorer's writer: chunks overlap commits
                for start, stop in chunk_bounds(len(order), chunk_rows, taper=taper):
                    parts.append(scorer.score(order.iloc[start:stop]))
                    if bar:
                        bar[0].update(bar[1], completed=stop)
        finally:
            if bar:
                bar[0].stop()
        scorer.finish()
        scoring_s = time.perf_counter() - began
        columns = [cfg.data.column("id").name, *OUTPUT_COLUMNS]
        predictions = (
            pd.concat(parts).sort_values("source_row", kind="stable")
            if parts
            else pd.DataFrame(columns=columns)
        )
        predictions = predictions[columns].reset_index(drop=True)
        write_table(predictions, output_path)
    finally:
        scorer.close()  # a writer process ends while the output is written
    positives = int((predictions["prediction"] == cfg.problem.positive_class).sum())
    result = BatchResult(
        rows=report.rows,
        scored=len(predictions),
        quarantined=len(report.quarantine),
        from_log=scorer.from_log,
        model_name=champion.name,
        model_version=champion.version,
        output=output_path,
        quarantine=quarantine_path if len(report.quarantine) else None,
        report=report_path,
        validation_s=validation_s,
        scoring_s=scoring_s,
        seconds=time.perf_counter() - started,
        positives=positives,
        log_writer="inline" if writer is None else "process",
    )
    if recoded := raw.attrs.get(RECODED):
        rows = ", ".join(map(str, recoded[:5])) + (", ..." if len(recoded) > 5 else "")
        result.notes.append(
            f"not UTF-8, read as cp1252: {len(recoded):,} of the records (source rows {rows})"
        )
    if filled:
        counts = ", ".join(f"{name} ({n:,})" for name, n in filled.items())
        result.notes.append(f"filled in as the server fills a request that omits them: {counts}")
    if absent:
        result.notes.append(f"not in the file, missing in every record: {', '.join(absent)}")
    if len(report.quarantine):
        result.notes.append(report.summary())
    _write_report(report_path, report, result)
    return result


def _read(path: Path) -> pd.DataFrame:
    """The file's records; a file of no byte is an empty batch (as a JSON-lines file of no
    line), not a CSV without its header."""
    return pd.DataFrame() if Path(path).stat().st_size == 0 else read_table(path)


def _absent_as_missing(cfg, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``raw`` with the nullable contract columns it lacks, empty (all of them for a file that
    names no column: there is nothing to judge), and their names. A lacking column that must
    hold a value is left for validation to name, even in a CSV of a header alone."""
    label = cfg.data.column("label").name
    nothing = raw.empty and raw.columns.empty
    absent = [
        c.name
        for c in cfg.data.columns
        if c.name not in raw.columns and c.name != label and (c.nullable or nothing)
    ]
    if not absent:
        return raw, absent
    filled = raw.assign(**{name: [None] * len(raw) for name in absent})
    filled.attrs = raw.attrs  # the lines the reader could not parse
    return filled, absent


def _write_report(path: Path, report: ValidationReport, result: BatchResult | None) -> None:
    saved = {"validation": report.to_dict(), "batch": result.to_dict() if result else None}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2, default=str) + "\n", encoding="utf-8")


def _progress(total: int):
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    return bar, bar.add_task("scoring records", total=total)


class _Scorer:
    """Scores chunks of validated rows with one model, its entity store and the log."""

    def __init__(
        self,
        cfg,
        model,
        env,
        url: str,
        *,
        writer: ProcessLogWriter | None = None,
    ):
        """``writer`` logs every chunk (else the log is written in turn)."""
        from ..features.store import EntityStore
        from .engine import STORE_URL_ENV

        self.cfg = cfg
        self.model = model
        self.id_column = cfg.data.column("id").name
        self.entity = cfg.data.entity
        self.timestamp = cfg.data.timestamp
        # The values a request id covers: every column of the contract but the label, which
        # does not change a prediction.
        label = cfg.data.column("label").name
        self.valued = [c.name for c in cfg.data.columns if c.name != label]
        self.store = (
            EntityStore.from_config(cfg, env.get(STORE_URL_ENV) or None) if self.entity else None
        )
        self.log = PredictionLog(url)
        self.log_rows = LogRows(cfg, model.bundle.reference, ROUTING)
        self.writer = writer or InlineLogWriter(self.log)
        self.writer.start(self.log_rows, ModelStamp.of(model), url, self.log.fsync)
        # The predictions of the chunk last handed to the writer, which may not be committed
        # yet: a record of the next chunk with the same request id reuses them, as it would
        # reuse them from the log.
        self._handed: dict[str, tuple[float, str, float]] = {}
        self.from_log = 0

    def score(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """The predictions of one chunk (indexed by source row), handed to the log writer
        (committed before the next chunk is handed over, or by :meth:`close`)."""
        ids = chunk[self.id_column].tolist()
        times = chunk[self.timestamp] if self.timestamp else None
        keys = request_ids(ids, times, record_digests(chunk, self.valued))
        logged = self.log.served_predictions(keys, self.model.name, self.model.version)
        for r in keys:
            if r not in logged and r in self._handed:
                logged[r] = self._handed[r]
        fresh = np.array([r not in logged for r in keys], dtype=bool)
        now = datetime.now(UTC)
        n = len(chunk)
        scores = np.empty(n)
        labels = np.empty(n, dtype=object)
        thresholds = np.full(n, float(self.model.threshold))
        if fresh.any():
            rows = chunk if fresh.all() else chunk[fresh]
            fresh_ids = [r for r, f in zip(keys, fresh, strict=True) if f]
            if self.store is not None:
                rows = self._history(rows, fresh_ids)
            bundle = self.model.bundle
            x = bundle.transform(rows)
            part = bundle.score_transformed(x)
            part_labels = bundle.labels_for(part)
            features = self.log_rows.features(self.model, rows, x)
            entities = rows[self.entity].tolist() if self.entity else [None] * len(rows)
            self.writer.submit(
                LogChunk(
                    request_ids=fresh_ids,
                    message_ids=rows[self.id_column].tolist(),
                    entities=entities,
                    rows=rows[self.log_rows.source_columns(rows)],
                    features=features,
                    scores=part,
                    labels=part_labels,
                    now=now,
                )
            )
            threshold = float(self.model.threshold)
            handed: dict[str, tuple[float, str, float]] = {}
            for r, score, label in zip(fresh_ids, part.tolist(), part_labels, strict=True):
                handed.setdefault(r, (score, str(label), threshold))
            self._handed = handed
            scores[fresh], labels[fresh] = part, part_labels
        for k in np.flatnonzero(~fresh):
            score, label, threshold = logged[keys[k]]
            scores[k], labels[k], thresholds[k] = score, label, threshold
        self.from_log += int((~fresh).sum())
        out = pd.DataFrame(
            {
                self.id_column: ids,
                "source_row": chunk.index.to_numpy(dtype="int64"),
                "prediction": labels.astype(str),
                "score": scores,
                "threshold": thresholds,
                "model_name": self.model.name,
                "model_version": self.model.version,
                "request_id": keys,
                "scored_at": pd.Timestamp(now),
            },
            index=chunk.index,
        )
        return out

    def _history(self, rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        """``rows`` with their entity history. A record already scored in batch under another
        request id (its values changed, or another model scored it) is not a new event of its
        entity: it is looked up without being recorded again, after the new records."""
        ids = [None if v is None else str(v) for v in rows[self.id_column].tolist()]
        done = self.log.served_records(keys, ids)
        if not done:
            return self.store.lookup(self.cfg, rows)
        times = (
            [
                utc_naive(t.to_pydatetime(warn=False)) if t is not pd.NaT else None
                for t in rows[self.timestamp]
            ]
            if self.timestamp
            else [None] * len(rows)
        )
        seen = np.array([(i, t) in done for i, t in zip(ids, times, strict=True)], dtype=bool)
        if not seen.any():
            return self.store.lookup(self.cfg, rows)
        parts = [self.store.lookup(self.cfg, rows[~seen])] if (~seen).any() else []
        parts.append(self.store.lookup(self.cfg, rows[seen], record=False))
        return pd.concat(parts).loc[rows.index]

    def finish(self) -> None:
        """Wait for the last chunk's commit and write the store's buffered sends: every
        prediction is in the log and every scored record in the store."""
        self.writer.finish()
        if self.store is not None:
            self.store.flush()

    def close(self) -> None:
        """Finish (if not done), then close the writer, the store and the log."""
        try:
            self.writer.close()
        finally:
            if self.store is not None:
                self.store.close()
            self.log.close()
