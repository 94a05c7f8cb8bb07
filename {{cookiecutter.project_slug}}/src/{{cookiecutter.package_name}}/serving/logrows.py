"""How scored rows become prediction-log entries: one way for the server and batch scoring.

The log keeps, per prediction, every feature of the champion's reference (the model's input
where the model computes it, else the raw column of that name) and the per-row input signals
(categories, unseen-token shares): what ``monitor`` compares with the reference. Both the
server (``engine.py``) and batch scoring (``batch.py``) build their entries here, so monitoring
reads the same values whichever path scored a record.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from ..predlog.featurelog import LoggedFeatures
from ..predlog.store import utc_naive
from ..profiles import InputSignals
from ..tables import RecordTable, cells


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # None, pd.NA, text
        return np.nan


# Beyond this decimal exponent the scale 10**k is not exact: such values round one by one.
_MAX_SCALE = 290


def compact(values: np.ndarray) -> list[list[float | None]]:
    """Each value of a 2-D array as a JSON-safe float of 9 significant digits (None where not
    finite): enough to give back the same float32 (the features' precision, which monitoring
    compares in), half the text of 17 digits. Rounded as arrays; equal to
    ``float(f"{value:.9g}")`` but where a product rounds at a tie (a last-digit difference)."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    magnitude = np.abs(np.where(finite, v, 1.0))
    magnitude[magnitude == 0] = 1.0
    k = 8 - np.floor(np.log10(magnitude)).astype(np.int64)
    exact = finite & (np.abs(k) <= _MAX_SCALE)
    k = np.where(exact, k, 0)
    up, down = 10.0 ** np.maximum(k, 0), 10.0 ** np.maximum(-k, 0)
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = np.where(k >= 0, np.round(v * up) / up, np.round(v / down) * down)
    out = rounded.tolist()
    for i, j in np.argwhere(~exact).tolist():
        value = float(v[i, j])
        out[i][j] = float(f"{value:.9g}") if finite[i, j] else None
    return out


class LogRows:
    """The monitored values of scored rows and the log entries they go into."""

    def __init__(self, cfg, reference: dict, routing: str):
        self.id_column = cfg.data.column("id").name
        self.timestamp = cfg.data.timestamp
        self.routing = routing
        self.feature_names = list(reference.get("features", {}))
        self.signals = InputSignals(reference)
        self._columns: dict[tuple[str, int], dict[str, int]] = {}

    def features(self, model, rows: pd.DataFrame | RecordTable, x) -> np.ndarray:
        """The monitored feature values of each row (NaN where missing or not a number)."""
        out = np.full((len(rows), len(self.feature_names)), np.nan)
        dense = isinstance(x, np.ndarray) and x.ndim == 2
        columns = self._model_columns(model) if dense else {}
        for j, name in enumerate(self.feature_names):
            k = columns.get(name)
            if k is not None:
                out[:, j] = x[:, k]
            elif name in rows:
                # Cell by cell: selecting a column of a one-row frame costs more than scoring.
                out[:, j] = [_number(v) for v in cells(rows, name)]
        return out

    def _model_columns(self, model) -> dict[str, int]:
        key = (model.name, model.version)
        columns = self._columns.get(key)
        if columns is None:
            names = model.bundle.metadata.get("feature_names") or []
            columns = self._columns[key] = {n: k for k, n in enumerate(names)}
        return columns

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
    """The log entries' common parts for a set of rows; :meth:`record` makes one entry."""

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
        self.received = [
            None if t is pd.NaT or t is None else utc_naive(t.to_pydatetime())
            for t in (cells(frame, timestamp) if timestamp else [None] * len(frame))
        ]
        self.names = tuple(rows.feature_names)
        self.values = compact(np.asarray(features).reshape(len(frame), len(self.names)))
        self.signals = rows.signals.row_signals(frame)
        self.created = utc_naive(now)
        self.routing = rows.routing

    def subset(self, index: list[int]) -> LogContext:
        """The context of the rows at ``index`` (in that order)."""
        out = object.__new__(LogContext)
        for name in ("request_ids", "message_ids", "entities", "received", "values", "signals"):
            values = getattr(self, name)
            setattr(out, name, [values[i] for i in index])
        out.created, out.routing, out.names = self.created, self.routing, self.names
        return out

    def record(self, i: int, model, score, label, served: bool, latency_ms: float | None):
        return {
            "request_id": self.request_ids[i],
            "message_id": self.message_ids[i],
            "entity": self.entities[i],
            "created_at": self.created,
            "received_at": self.received[i],
            "model_name": model.name,
            "model_version": model.version,
            "role": model.role,
            "served": served,
            "routing": self.routing,
            "score": float(score),
            "label": str(label),
            "threshold": float(model.bundle.threshold),
            "latency_ms": latency_ms,
            "features": LoggedFeatures(self.names, self.values[i], self.signals[i]),
        }
