"""How scored rows become prediction-log entries: one way for the server and batch scoring.

The log keeps, per prediction, every feature of the champion's reference (the model's input
where the model computes it, else the raw column of that name) and the per-row input signals
(categories, unseen-token shares): what ``monitor`` compares with the reference. Both the
server (``engine.py``) and batch scoring (``batch.py``) build their entries here, so monitoring
reads the same values whichever path scored a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from ..predlog.entries import PredictionEntries, entries
from ..predlog.store import utc_naive
from ..profiles import InputSignals
from ..tables import RecordTable, cells


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # None, pd.NA, text
        return np.nan


def logged_values(features, rows: int, columns: int) -> np.ndarray:
    """The monitored values as the log keeps them: float32, the features' precision (monitoring
    compares in it), which the log writes in its shortest form (``predlog.store.dumps``), a
    third of float64's digits. A value float32 cannot hold (beyond its range, or so small it
    would become 0) keeps float64, with the rest of its call: never logged as null or 0."""
    wide = np.asarray(features, dtype=np.float64).reshape(rows, columns)
    with np.errstate(over="ignore"):
        narrow = wide.astype(np.float32)
    # Casting only adds infinities (overflow) and zeros (underflow): counting them finds either.
    same_infinities = np.count_nonzero(np.isinf(narrow)) == np.count_nonzero(np.isinf(wide))
    if same_infinities and np.count_nonzero(narrow) == np.count_nonzero(wide):
        return narrow
    return np.ascontiguousarray(wide)


def _naive_times(stamps: list) -> list[datetime | None]:
    """Timestamps as the log stores them; a run of one object (a call's records stamped with
    its time) is converted once."""
    out: list[datetime | None] = []
    last, naive = None, None
    for t in stamps:
        if t is not last:
            last = t
            naive = None if t is pd.NaT or t is None else utc_naive(t.to_pydatetime())
        out.append(naive)
    return out


@dataclass(frozen=True)
class ModelStamp:
    """What a log entry says of the model that scored it (``loading.ServedModel`` has the same
    attributes): what a process that writes the log without the model needs of it."""

    name: str
    version: int
    role: str
    threshold: float

    @classmethod
    def of(cls, model) -> ModelStamp:
        return cls(model.name, int(model.version), model.role, float(model.threshold))


class LogRows:
    """The monitored values of scored rows and the log entries they go into."""

    def __init__(self, cfg, reference: dict, routing: str):
        self.id_column = cfg.data.column("id").name
        self.timestamp = cfg.data.timestamp
        self.routing = routing
        self.feature_names = list(reference.get("features", {}))
        self.signals = InputSignals(reference)
        self._plans: dict = {}

    def features(self, model, rows: pd.DataFrame | RecordTable, x) -> np.ndarray:
        """The monitored feature values of each row (NaN where missing or not a number)."""
        out = np.full((len(rows), len(self.feature_names)), np.nan)
        dense = isinstance(x, np.ndarray) and x.ndim == 2
        targets, sources, raw = self._plan(model if dense else None)
        if len(targets):
            out[:, targets] = x[:, sources]  # the model's inputs, in one copy
        for j, name in raw:
            if name in rows:
                # Cell by cell: selecting a column of a one-row frame costs more than scoring.
                out[:, j] = [_number(v) for v in cells(rows, name)]
        return out

    def source_columns(self, rows: pd.DataFrame | RecordTable) -> list[str]:
        """The raw columns of ``rows`` that :meth:`context` reads (time, input signals)."""
        wanted = [self.timestamp, *self.signals.columns]
        return [c for c in dict.fromkeys(wanted) if c and c in rows]

    def _plan(self, model) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """(positions in the monitored features, columns of the model's input) of what the
        model computes, and the (position, name) of the rest, read from the raw rows; kept
        per model (``None``: a model whose input is not an array, all read raw)."""
        key = None if model is None else (model.name, model.version)
        plan = self._plans.get(key)
        if plan is None:
            names = (model.bundle.metadata.get("feature_names") or []) if model else []
            columns = {n: k for k, n in enumerate(names)}
            found = [(j, columns[n]) for j, n in enumerate(self.feature_names) if n in columns]
            plan = self._plans[key] = (
                np.array([j for j, _ in found], dtype=np.intp),
                np.array([k for _, k in found], dtype=np.intp),
                [(j, n) for j, n in enumerate(self.feature_names) if n not in columns],
            )
        return plan

    def context(
        self,
        request_ids,
        message_ids,
        entities,
        frame: pd.DataFrame | RecordTable,
        features,
        now: datetime,
    ) -> LogContext:
        """What the log rows of these scored rows share (answered and shadow rows alike)."""
        return LogContext(self, request_ids, message_ids, entities, frame, features, now)


class LogContext:
    """The log entries' common parts for a set of rows; :meth:`entries` makes the entries."""

    def __init__(
        self,
        rows: LogRows,
        request_ids,
        message_ids,
        entities,
        frame: pd.DataFrame | RecordTable,
        features,
        now: datetime,
    ):
        self.request_ids = list(request_ids)
        self.message_ids = list(message_ids)
        self.entities = list(entities)
        timestamp = rows.timestamp
        self.received = _naive_times(cells(frame, timestamp) if timestamp else [None] * len(frame))
        self.names = tuple(rows.feature_names)
        self.values = logged_values(features, len(frame), len(self.names))
        self.signals = rows.signals.row_signals(frame)
        self.created = utc_naive(now)
        self.routing = rows.routing

    def subset(self, index: list[int]) -> LogContext:
        """The context of the rows at ``index`` (in that order)."""
        out = object.__new__(LogContext)
        for name in ("request_ids", "message_ids", "entities", "received", "signals"):
            values = getattr(self, name)
            setattr(out, name, [values[i] for i in index])
        out.values = self.values[index]
        out.created, out.routing, out.names = self.created, self.routing, self.names
        return out

    def entries(
        self, models, scores, labels, served: bool, latency_ms: float | None
    ) -> PredictionEntries:
        """The log entries of these rows, scored by ``models`` (one model, or one per row)."""
        return entries(
            request_ids=self.request_ids,
            message_ids=self.message_ids,
            entities=self.entities,
            created_at=self.created,
            received_at=self.received,
            models=models,
            served=served,
            routing=self.routing,
            scores=scores,
            labels=labels,
            latency_ms=latency_ms,
            names=self.names,
            values=self.values,
            signals=self.signals,
        )
