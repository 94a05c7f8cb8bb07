"""The durable prediction log and the feedback table, through SQLAlchemy Core.

``predictions``  one row per prediction: the answer (``served``) and, in shadow mode, the
                 challenger's prediction of the same request under the same ``request_id``.
                 A unique index allows one served row per request id (feedback keys on it).
``feedback``     user labels (reports of missed positives, rescues) keyed by request id or message id.
``feature_sets`` the names of logged feature values, once per set (``featurelog.py``).
``records``      with ``serving.log_records`` on, the raw record of each answered request (the
                 contract's columns as JSON), written in the prediction's transaction: what
                 a window run trains on (``labels.py``, ``data/window.py``).
``errors``       requests the server failed to answer (an exception after validation: a 5xx),
                 so monitoring can compute an error rate from the database alone.

Durability: the server calls :meth:`PredictionLog.record` and it commits before the response is
sent, so every acknowledged prediction is in the database. On SQLite (the default, one machine)
the log runs in WAL mode: a commit is written to the WAL file before it returns, which survives
the process being killed (SIGKILL, OOM); ``fsync=True`` (``PREDICTION_LOG_FSYNC=1``) also syncs
every commit to disk, which survives power loss, at ~2 ms per commit instead of ~0.15 ms on the
machine this was measured on. Checkpoints (copying the WAL into the database file) run on a
thread of their own, never inside a request's commit; a commit can only wait for the short
final copy that rewinds a long WAL (``sqlite_wal.py``). PostgreSQL (any
SQLAlchemy URL) applies its own commit durability. Times are stored as naive UTC datetimes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..sqlite_wal import use_wal
from ..stores import PREDICTION_LOG_ENV, prediction_log_url
from . import featurelog
from .entries import PredictionEntries

logger = logging.getLogger(__name__)

FSYNC_ENV = "PREDICTION_LOG_FSYNC"
# The widths of the log's key columns, by the contract role that fills them (PostgreSQL enforces
# them, and an index entry must stay small): the API refuses, and validation quarantines, a
# longer id or entity key, so no record is accepted that the log cannot hold.
KEY_MAX_CHARS = {"id": 998, "entity_key": 320}
REQUEST_ID_MAX_CHARS = 128
URL_ENV = PREDICTION_LOG_ENV


def log_url(cfg, url: str | None = None) -> str:
    """The prediction log's URL: the argument, ``PREDICTION_LOG_URL``, or the contract's."""
    return prediction_log_url(cfg, url)


def utc_naive(value: datetime | None) -> datetime | None:
    """A datetime as naive UTC (how both tables store times)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def clean_number(value: Any) -> float | None:
    """A JSON-safe float: NaN, infinities and missing values become None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def dumps(value: Any) -> str:
    """The JSON text of a log cell. orjson writes a numpy row of monitored values in its
    shortest float32 form (non-finite values as null) without a Python float per value: the
    values' JSON was the largest part of a commit. What orjson refuses (an integer beyond
    64 bits in a raw record, a non-contiguous array) goes through the json module instead."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        return json.dumps(value, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _sqlite_time(value: datetime | None) -> str | None:
    """A naive datetime as SQLAlchemy's SQLite ``DateTime`` stores it."""
    return None if value is None else value.isoformat(" ", "microseconds")[:26]


def _driver_insert(table) -> tuple[str, list[tuple[str, Any]]]:
    """An INSERT of every column but the key, for SQLite's driver, and how each value is
    converted (times and JSON as SQLAlchemy's SQLite types store them; the rest as is)."""
    import sqlalchemy as sa

    columns = [c for c in table.columns if not c.primary_key]
    convert = [
        _sqlite_time
        if isinstance(c.type, sa.DateTime)
        else dumps
        if isinstance(c.type, sa.JSON)
        else None
        for c in columns
    ]
    names = ", ".join(c.name for c in columns)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})"
    return sql, list(zip((c.name for c in columns), convert, strict=True))


@dataclass(frozen=True)
class OnlineCounts:
    """Served predictions of a window and the feedback that contradicts them."""

    predicted_positive: int
    predicted_negative: int
    rescued: int  # predicted positive, user says negative: a false positive
    reported: int  # predicted negative, user says positive: a false negative

    @property
    def precision(self) -> float:
        """Share of positive predictions users did not rescue (NaN without any)."""
        if not self.predicted_positive:
            return math.nan
        return (self.predicted_positive - self.rescued) / self.predicted_positive

    @property
    def false_positive_rate(self) -> float:
        """Rescued negatives over all negatives seen (NaN without any)."""
        negatives = self.rescued + self.predicted_negative - self.reported
        return self.rescued / negatives if negatives > 0 else math.nan


class PredictionLog:
    """The ``predictions`` and ``feedback`` tables in one database. Safe to share between threads."""

    def __init__(self, url: str, *, fsync: bool | None = None):
        import sqlalchemy as sa

        self.url = url
        if fsync is None:
            fsync = os.environ.get(FSYNC_ENV, "").strip().lower() in ("1", "true", "yes")
        self.fsync = fsync
        kwargs: dict[str, Any] = {"json_serializer": dumps}
        self._sqlite = url.startswith("sqlite")
        if self._sqlite:
            database = sa.engine.make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            else:  # one shared in-memory database for every connection
                kwargs["poolclass"] = sa.pool.StaticPool
            # Writers from several threads or processes wait for the lock instead of failing.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine = sa.create_engine(url, **kwargs)
        self._checkpointer = None
        if self._sqlite:
            synchronous = "FULL" if fsync else "NORMAL"
            self._checkpointer = use_wal(self.engine, database, synchronous=synchronous)
        meta = sa.MetaData()
        self.predictions = sa.Table(
            "predictions",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("request_id", sa.String(REQUEST_ID_MAX_CHARS), nullable=False, index=True),
            sa.Column("message_id", sa.String(KEY_MAX_CHARS["id"]), index=True),
            sa.Column("entity", sa.String(KEY_MAX_CHARS["entity_key"])),
            sa.Column("created_at", sa.DateTime, nullable=False, index=True),
            sa.Column("received_at", sa.DateTime),
            sa.Column("model_name", sa.String(200), nullable=False),
            sa.Column("model_version", sa.Integer, nullable=False),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("served", sa.Boolean, nullable=False),
            sa.Column("routing", sa.String(16), nullable=False),
            sa.Column("score", sa.Float, nullable=False),
            sa.Column("label", sa.String(200), nullable=False),
            sa.Column("threshold", sa.Float, nullable=False),
            sa.Column("latency_ms", sa.Float),
            sa.Column("feature_set", sa.Integer),
            sa.Column("features", sa.JSON),
        )
        self.feature_sets = sa.Table(
            "feature_sets",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("digest", sa.String(64), nullable=False, unique=True),
            sa.Column("names", sa.JSON, nullable=False),
        )
        self.feedback = sa.Table(
            "feedback",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("request_id", sa.String(REQUEST_ID_MAX_CHARS), index=True),
            sa.Column("message_id", sa.String(KEY_MAX_CHARS["id"]), index=True),
            sa.Column("label", sa.String(200), nullable=False),
            sa.Column("source", sa.String(200)),
            sa.Column("reported_at", sa.DateTime),
            sa.Column("ingested_at", sa.DateTime, nullable=False),
            # Re-ingesting the same report is a no-op: the key identifies it.
            sa.Column("key", sa.String(64), nullable=False, unique=True),
        )
        self.records = sa.Table(
            "records",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            # Not unique: a mesh mirror answers the same request id from a second deployment.
            sa.Column("request_id", sa.String(REQUEST_ID_MAX_CHARS), nullable=False, index=True),
            sa.Column("created_at", sa.DateTime, nullable=False, index=True),
            sa.Column("record", sa.JSON, nullable=False),
        )
        self.errors = sa.Table(
            "errors",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("created_at", sa.DateTime, nullable=False, index=True),
            sa.Column("requests", sa.Integer, nullable=False),
            sa.Column("kind", sa.String(200), nullable=False),
            sa.Column("message", sa.String(1000)),
        )
        # One served prediction per request id and model: feedback finds the prediction by it.
        # Shadow rows share the id of the answer they shadow: in-process they are not served; a
        # mesh mirror sends the same request (and id) to the challenger's pods, which serve it
        # with another model version into the same log.
        unique = sa.Index(
            "uq_predictions_served_request_id_model",
            self.predictions.c.request_id,
            self.predictions.c.model_name,
            self.predictions.c.model_version,
            unique=True,
            sqlite_where=self.predictions.c.served.is_(True),
            postgresql_where=self.predictions.c.served.is_(True),
        )
        self._meta = meta
        self._driver_inserts = {t.name: _driver_insert(t) for t in (self.predictions, self.records)}
        self._set_ids: dict[tuple[str, ...], int] = {}
        self._set_names: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock() if self._sqlite else nullcontext()
        self._writer = None  # SQLite: the connection predictions are committed on
        meta.create_all(self.engine)
        self._unique_index = self._create_unique(unique)

    def _create_unique(self, index):
        """The unique index on served request ids, added to a log made before it existed;
        None (with a warning) when that log already holds a reused id."""
        import sqlalchemy as sa

        try:
            index.create(self.engine, checkfirst=True)
        except sa.exc.IntegrityError:
            logger.warning(
                "prediction log %s already holds a request id served twice: reused request ids "
                "are not refused until those rows are removed",
                self.engine.url.render_as_string(hide_password=True),
            )
            return None
        except sa.exc.OperationalError:  # another worker created it at the same time
            if index.name not in {
                i["name"] for i in sa.inspect(self.engine).get_indexes("predictions")
            }:
                raise
        return index

    # -- predictions ---------------------------------------------------------------------------

    def record(
        self, rows: list[dict] | PredictionEntries, records: list[dict] | None = None
    ) -> set[str]:
        """Insert prediction rows in one transaction; returns once it is committed.

        ``rows``: a dict per prediction, or the columns of :class:`PredictionEntries`.
        ``records`` (``request_id``, ``created_at``, ``record``: the raw record of an answered
        request) go in the same transaction, so a record is kept exactly when its answer is.
        A served row whose request id already has a served row of the same model is left out
        (and so is its record), and the other rows are inserted: returns the request ids left
        out (empty, but for a reused id).
        """
        import sqlalchemy as sa

        if not len(rows):
            return set()
        records = records or []
        columnar = isinstance(rows, PredictionEntries)
        if columnar and not self._sqlite:
            rows, columnar = rows.dicts(), False
        packed = None if columnar else [self._packed(r) for r in rows]
        try:
            if self._sqlite:
                inserts = [
                    self._entry_rows(rows)
                    if columnar
                    else self._driver_rows(self.predictions, packed)
                ]
                if records:
                    inserts.append(self._driver_rows(self.records, records))
                # SQLite has one writer at a time and a waiting writer sleeps in steps of up to
                # 100 ms: threads of this process take turns on a lock instead (a commit is far
                # shorter).
                with self._write_lock:
                    self._commit_on_writer(inserts)
            else:
                with self.engine.begin() as conn:
                    self._insert(conn, self.predictions, packed)
                    if records:
                        self._insert(conn, self.records, records)
            return set()
        except (sa.exc.IntegrityError, sqlite3.IntegrityError):
            if self._unique_index is None:
                raise
        if packed is None:
            packed = [self._packed(r) for r in rows.dicts()]
        # The unique index refused a reused request id: find which, insert the others. Another
        # process may insert one of them meanwhile: try again then.
        p = self.predictions.c
        ids = list({r["request_id"] for r in packed if r["served"]})

        def key(row) -> tuple:
            return row["request_id"], row["model_name"], row["model_version"]

        for attempt in range(3):
            try:
                with self._write_lock, self.engine.begin() as conn:
                    taken = set()
                    for i in range(0, len(ids), 500):
                        query = sa.select(p.request_id, p.model_name, p.model_version).where(
                            p.request_id.in_(ids[i : i + 500]), p.served.is_(True)
                        )
                        taken.update(tuple(row) for row in conn.execute(query))
                    fresh = [r for r in packed if not (r["served"] and key(r) in taken)]
                    left_out = {r["request_id"] for r in packed if r["served"] and key(r) in taken}
                    if fresh:
                        self._insert(conn, self.predictions, fresh)
                    kept = [r for r in records if r["request_id"] not in left_out]
                    if kept:
                        self._insert(conn, self.records, kept)
                return left_out
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
        return set()  # not reached

    def _commit_on_writer(self, inserts: list[tuple[str, list[tuple]]]) -> None:
        """SQLite: run each (INSERT, parameters) in one transaction on the writer connection,
        a pooled connection this log keeps (the caller holds the write lock). SQLAlchemy's
        connection and transaction objects cost a third of a one-row commit."""
        if self._writer is None:
            self._writer = self.engine.raw_connection()  # opened with the WAL pragmas
        connection = self._writer.driver_connection
        try:
            for sql, params in inserts:
                connection.executemany(sql, params)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise

    def _insert(self, conn, table, rows: list[dict]) -> None:
        """Insert ``rows`` into ``table`` in ``conn``'s transaction."""
        if not rows:
            return
        if not self._sqlite:
            conn.execute(table.insert(), rows)
            return
        conn.exec_driver_sql(*self._driver_rows(table, rows))

    def _driver_rows(self, table, rows: list[dict]) -> tuple[str, list[tuple]]:
        """SQLite's INSERT of ``rows`` into ``table`` and its parameters, as the driver's
        tuples: SQLAlchemy's per-row parameter processing (a dict per row, a converter call per
        value) cost more than SQLite's insert itself."""
        sql, columns = self._driver_inserts[table.name]
        # Column by column: a comprehension per column costs less than a generator per row,
        # and a value shared by every row (the call's time) is converted once.
        values = []
        for name, convert in columns:
            column = [row.get(name) for row in rows]
            if convert is not None:
                first = column[0]
                if all(value is first for value in column):
                    column = [convert(first)] * len(column)
                else:
                    column = [convert(value) for value in column]
            values.append(column)
        return sql, list(zip(*values, strict=True))

    def _entry_rows(self, entries: PredictionEntries) -> tuple[str, list[tuple]]:
        """SQLite's INSERT of ``entries`` and its parameters, built column by column: a value
        every row shares is converted once, and no dict is made per row."""
        sql, columns = self._driver_inserts[self.predictions.name]
        n = len(entries)
        set_id = self._set_id(entries.names)
        values = []
        for name, convert in columns:
            if name == "feature_set":
                column = [set_id] * n
            elif name == "features":
                key = featurelog.VALUES_KEY
                column = [
                    dumps({key: v, **s})
                    for v, s in zip(entries.values, entries.signals, strict=True)
                ]
            else:
                value = entries.columns.get(name)  # a column entries do not fill: NULL
                if not isinstance(value, list):
                    column = [value if convert is None else convert(value)] * n
                else:
                    column = value if convert is None else [convert(v) for v in value]
            values.append(column)
        return sql, list(zip(*values, strict=True))

    def served_predictions(
        self, request_ids: list[str], model_name: str, model_version: int
    ) -> dict[str, tuple[float, str, float]]:
        """The served predictions of ``model_name`` version ``model_version`` already logged for
        these request ids: request id -> (score, label, threshold)."""
        import sqlalchemy as sa

        p = self.predictions.c
        found: dict[str, tuple[float, str, float]] = {}
        if not request_ids:
            return found
        of_model = (
            p.served.is_(True),
            p.model_name == model_name,
            p.model_version == model_version,
        )
        with self.engine.connect() as conn:
            # Ids never scored (the usual case) have none of theirs in their range: one probe of
            # the index says so, where looking them up takes a query per 500 ids.
            probe = sa.select(p.id).where(
                p.request_id.between(min(request_ids), max(request_ids)), *of_model
            )
            if conn.execute(probe.limit(1)).first() is None:
                return found
            for i in range(0, len(request_ids), 500):
                query = sa.select(p.request_id, p.score, p.label, p.threshold).where(
                    p.request_id.in_(request_ids[i : i + 500]), *of_model
                )
                found.update((r, (s, lab, t)) for r, s, lab, t in conn.execute(query))
        return found

    def served_records(
        self, request_ids: list[str], message_ids: list[str]
    ) -> set[tuple[str, datetime | None]]:
        """(message id, received at) of the served predictions, of any model, of these message
        ids. Batch request ids begin with the record's time (12 hex digits of milliseconds):
        one probe of that time range says no for records never scored in batch (the usual
        case), without a query per 500 ids."""
        import sqlalchemy as sa

        p = self.predictions.c
        found: set[tuple[str, datetime | None]] = set()
        if not request_ids:
            return found
        low, high = min(request_ids)[:12], max(request_ids)[:12]
        with self.engine.connect() as conn:
            probe = sa.select(p.id).where(p.request_id.between(low, high + "g"), p.served.is_(True))
            if conn.execute(probe.limit(1)).first() is None:
                return found
            ids = list(dict.fromkeys(m for m in message_ids if m is not None))
            for i in range(0, len(ids), 500):
                query = sa.select(p.message_id, p.received_at).where(
                    p.message_id.in_(ids[i : i + 500]), p.served.is_(True)
                )
                found.update((m, r) for m, r in conn.execute(query))
        return found

    def _packed(self, row: dict) -> dict:
        """``row`` with its features dict stored as a feature set id and values."""
        features = row.get("features")
        if not isinstance(features, dict | featurelog.LoggedFeatures):
            return {**row, "feature_set": None}
        names, values, signals = featurelog.split(features)
        return {
            **row,
            "feature_set": self._set_id(names),
            "features": {featurelog.VALUES_KEY: values, **signals},
        }

    def _set_id(self, names: tuple[str, ...]) -> int:
        """The id of a feature set, added on first use (once per process and set)."""
        set_id = self._set_ids.get(names)
        if set_id is not None:
            return set_id
        import sqlalchemy as sa

        key = featurelog.digest(names)
        query = sa.select(self.feature_sets.c.id).where(self.feature_sets.c.digest == key)
        insert = self.feature_sets.insert().values(digest=key, names=list(names))
        with self._lock:
            for _ in range(3):
                try:
                    with self._write_lock, self.engine.begin() as conn:
                        set_id = conn.execute(query).scalar()
                        if set_id is None:
                            set_id = conn.execute(insert).inserted_primary_key[0]
                    break
                except sa.exc.IntegrityError:  # another worker added it first: read it
                    continue
            self._set_ids[names] = set_id
        return set_id

    def feature_names(self) -> dict[int, list[str]]:
        """Every feature set: id -> names of the values rows of that set keep."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            query = sa.select(self.feature_sets.c.id, self.feature_sets.c.names)
            self._set_names.update({i: list(n) for i, n in conn.execute(query)})
        return dict(self._set_names)

    def record_error(self, requests: int, exc: BaseException) -> None:
        """Record that ``requests`` requests failed with ``exc`` (never raises: the caller is
        already handling a failure, possibly of this database)."""
        row = {
            "created_at": utc_naive(datetime.now(UTC)),
            "requests": requests,
            "kind": type(exc).__name__[:200],
            "message": str(exc)[:1000],
        }
        with suppress(Exception), self._write_lock, self.engine.begin() as conn:
            conn.execute(self.errors.insert(), [row])

    def rows(self, request_id: str | None = None, limit: int | None = None) -> list[dict]:
        """Logged predictions (all, or of one request id), oldest first."""
        import sqlalchemy as sa

        query = sa.select(self.predictions).order_by(self.predictions.c.id)
        if request_id is not None:
            query = query.where(self.predictions.c.request_id == request_id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        names = self._set_names
        if any(r["feature_set"] not in names for r in rows if r["feature_set"] is not None):
            names = self.feature_names()
        for row in rows:
            set_id = row.pop("feature_set")
            if set_id is not None and isinstance(row["features"], dict):
                row["features"] = featurelog.join(names[set_id], row["features"])
        return rows

    def prune_records(self, before: datetime) -> int:
        """Delete the raw records of requests answered before ``before``; return how many.

        Predictions, feedback and errors stay: monitoring reads them, and they hold no raw
        record."""
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            done = conn.execute(
                sa.delete(self.records).where(self.records.c.created_at < utc_naive(before))
            )
        return int(done.rowcount or 0)

    def request_ids(self) -> set[str]:
        """Every request id in the log."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(self.predictions.c.request_id)).scalars())

    def count(self) -> int:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(self.predictions)).scalar()
            )

    # -- feedback ------------------------------------------------------------------------------

    def add_feedback(self, rows: list[dict]) -> tuple[int, int]:
        """Insert feedback rows (each with a unique ``key``); returns (inserted, duplicates)."""
        import sqlalchemy as sa

        if not rows:
            return 0, 0
        keys = [r["key"] for r in rows]
        with self._lock, self.engine.begin() as conn:
            known: set[str] = set()
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                query = sa.select(self.feedback.c.key).where(self.feedback.c.key.in_(chunk))
                known.update(conn.execute(query).scalars())
            fresh, seen = [], set(known)
            for row in rows:
                if row["key"] not in seen:
                    seen.add(row["key"])
                    fresh.append(row)
            if fresh:
                conn.execute(self.feedback.insert(), fresh)
        return len(fresh), len(rows) - len(fresh)

    def matched(self, request_ids: list[str], message_ids: list[str]) -> tuple[set, set]:
        """The given request ids and message ids that have a served prediction."""
        import sqlalchemy as sa

        p = self.predictions.c
        found_requests: set[str] = set()
        found_messages: set[str] = set()
        with self.engine.connect() as conn:
            for values, column, out in (
                (request_ids, p.request_id, found_requests),
                (message_ids, p.message_id, found_messages),
            ):
                for i in range(0, len(values), 500):
                    chunk = values[i : i + 500]
                    query = sa.select(column).where(column.in_(chunk), p.served.is_(True))
                    out.update(conn.execute(query).scalars())
        return found_requests, found_messages

    # -- online metrics ------------------------------------------------------------------------

    def online_counts(self, since: datetime, positive: str, negative: str) -> OnlineCounts:
        """Counts of served predictions made since ``since`` and contradicting feedback.

        A prediction matches feedback by request id or by message id. Predictions without
        feedback count as correct, as the contract's online metrics define them.
        """
        import sqlalchemy as sa

        p, f = self.predictions.c, self.feedback.c
        since = utc_naive(since)
        window = sa.and_(p.served.is_(True), p.created_at >= since)
        by_label = sa.select(p.label, sa.func.count()).where(window).group_by(p.label)

        def contradicted(predicted: str, said: str):
            said_rows = sa.or_(
                sa.and_(f.request_id.is_not(None), f.request_id == p.request_id),
                sa.and_(f.message_id.is_not(None), f.message_id == p.message_id),
            )
            exists = sa.exists().where(said_rows, f.label == said)
            query = sa.select(sa.func.count()).select_from(self.predictions)
            return query.where(window, p.label == predicted, exists)

        with self.engine.connect() as conn:
            counts = dict(conn.execute(by_label).all())
            rescued = conn.execute(contradicted(positive, negative)).scalar() or 0
            reported = conn.execute(contradicted(negative, positive)).scalar() or 0
        return OnlineCounts(
            predicted_positive=int(counts.get(positive, 0)),
            predicted_negative=int(counts.get(negative, 0)),
            rescued=int(rescued),
            reported=int(reported),
        )

    def close(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()  # back to the pool, which closes it below
                self._writer = None
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
