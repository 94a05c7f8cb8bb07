"""Predictions to log as columns, not a dict per row: what the server and batch scoring build.

A dict per prediction, copied once more to swap its features for a feature set id and read
back column by column for the database driver, cost more than SQLite's insert of the row.
:class:`PredictionEntries` keeps each column once: a list with a value per row, or a single
value every row shares (the call's time, the model of a call that one model answered).
``PredictionLog.record`` takes them as they are, or as :meth:`PredictionEntries.dicts`, the
rows of the same values, where it needs rows one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from .featurelog import LoggedFeatures


@dataclass(frozen=True, eq=False)
class PredictionEntries:
    """``columns``: each ``predictions`` column an entry fills (all but the key and the
    features, as :func:`entries` names them), a list of one value per row or one shared value;
    ``names``, ``values`` (a row per prediction) and ``signals``: the logged features."""

    columns: dict[str, Any]
    names: tuple[str, ...]
    values: np.ndarray
    signals: list[dict]

    def __len__(self) -> int:
        return len(self.columns["request_id"])

    def column(self, name: str) -> list:
        """One value per row."""
        value = self.columns[name]
        return value if isinstance(value, list) else [value] * len(self)

    def dicts(self) -> list[dict]:
        """The entries as rows (``features``: :class:`LoggedFeatures`)."""
        names = list(self.columns)
        columns = [self.column(name) for name in names]
        return [
            {
                **dict(zip(names, row, strict=True)),
                "features": LoggedFeatures(self.names, self.values[i], self.signals[i]),
            }
            for i, row in enumerate(zip(*columns, strict=True))
        ]


def entries(
    *,
    request_ids: list[str],
    message_ids: list,
    entities: list,
    created_at: datetime,
    received_at: list,
    models,
    served: bool,
    routing: str,
    scores,
    labels,
    latency_ms: float | None,
    names: tuple[str, ...],
    values: np.ndarray,
    signals: list[dict],
) -> PredictionEntries:
    """Entries of scored rows. ``models``: the model that scored every row, or a sequence of
    one per row (``name``, ``version``, ``role``, ``threshold``). Raises ``ValueError`` when a
    per-row argument's length is not the number of request ids: no row is left out unsaid."""
    n = len(request_ids)
    per_row = {
        "message_ids": message_ids,
        "entities": entities,
        "received_at": received_at,
        "scores": scores,
        "labels": labels,
        "values": values,
        "signals": signals,
    }
    if isinstance(models, list | tuple):
        per_row["models"] = models
    for name, given in per_row.items():
        if len(given) != n:
            raise ValueError(f"entries: {len(given)} {name} for {n} request ids")
    if isinstance(models, list | tuple) and len({id(m) for m in models}) == 1:
        models = models[0]  # one model answered the call: its values are shared
    if isinstance(models, list | tuple):
        model_columns = {
            "model_name": [m.name for m in models],
            "model_version": [m.version for m in models],
            "role": [m.role for m in models],
            "threshold": [float(m.threshold) for m in models],
        }
    else:
        model_columns = {
            "model_name": models.name,
            "model_version": models.version,
            "role": models.role,
            "threshold": float(models.threshold),
        }
    columns = {
        "request_id": list(request_ids),
        "message_id": list(message_ids),
        "entity": list(entities),
        "created_at": created_at,
        "received_at": list(received_at),
        **model_columns,
        "served": served,
        "routing": routing,
        "score": np.asarray(scores, dtype=np.float64).tolist(),
        "label": [str(label) for label in labels],
        "latency_ms": latency_ms,
    }
    return PredictionEntries(columns, tuple(names), values, list(signals))
