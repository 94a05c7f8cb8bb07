"""A time window of the prediction log as frames: predictions with their feedback, features, errors.

The log's ``features`` column holds one JSON object per prediction. Parsing a million of them
one by one with ``json.loads`` takes longer than every statistic computed on them, so they are
handed to Arrow's JSON reader in one piece, with a schema from the reference when there is one
(types are then fixed: a feature that is null in the first rows still reads as a number).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

PREDICTION_COLUMNS = (
    "request_id",
    "message_id",
    "entity",
    "model_version",
    "role",
    "served",
    "routing",
    "score",
    "label",
    "threshold",
    "latency_ms",
)
CHUNK_ROWS = 100_000


@dataclass
class Window:
    """The log between ``since`` (inclusive) and ``until`` (exclusive), naive UTC."""

    since: datetime
    until: datetime
    predictions: pd.DataFrame  # PREDICTION_COLUMNS + created_at + feedback (label or None)
    features: pd.DataFrame  # one column per logged feature key, aligned with predictions
    errors: int  # requests that failed in the window (the log's errors table)
    feedback_rows: int  # feedback reports in the database (all time)

    @property
    def served(self) -> pd.DataFrame:
        return self.predictions[self.predictions["served"]]


def feature_schema(reference: dict):
    """The Arrow schema of the logged features the reference describes."""
    import pyarrow as pa

    fields = [pa.field(name, pa.float64()) for name in reference.get("features", {})]
    fields += [pa.field(f"cat.{c}", pa.string()) for c in reference.get("categories", {})]
    for column in reference.get("text", {}):
        fields.append(pa.field(f"text.{column}.unseen", pa.float64()))
        fields.append(pa.field(f"text.{column}.top", pa.list_(pa.int32())))
    return pa.schema(fields)


def parse_features(texts: list, schema=None) -> pd.DataFrame:
    """JSON objects (str, dict or None) -> a frame, one column per key."""
    import pyarrow.json as pj

    if not texts:
        return pd.DataFrame(index=range(0))
    lines = (
        t if isinstance(t, str) else "{}" if t is None else json.dumps(t, allow_nan=False)
        for t in texts
    )
    payload = "\n".join(lines).encode("utf-8") + b"\n"
    parse = pj.ParseOptions(
        explicit_schema=schema,
        unexpected_field_behavior="ignore" if schema is not None else "infer",
    )
    read = pj.ReadOptions(block_size=16 << 20)
    table = pj.read_json(io.BytesIO(payload), read_options=read, parse_options=parse)
    return table.to_pandas()


def _feedback_by_key(conn, table) -> tuple[dict, dict, int]:
    """The latest feedback label per request id and per message id."""
    import sqlalchemy as sa

    f = table.c
    query = sa.select(f.id, f.request_id, f.message_id, f.label, f.reported_at, f.ingested_at)
    frame = pd.DataFrame(
        conn.execute(query).all(), columns=[c.name for c in query.selected_columns]
    )
    if frame.empty:
        return {}, {}, 0
    frame["at"] = frame["reported_at"].fillna(frame["ingested_at"])
    frame = frame.sort_values(["at", "id"], kind="stable")
    by_request = frame.dropna(subset=["request_id"]).drop_duplicates("request_id", keep="last")
    by_message = frame.dropna(subset=["message_id"]).drop_duplicates("message_id", keep="last")
    return (
        dict(zip(by_request["request_id"], by_request["label"], strict=True)),
        dict(zip(by_message["message_id"], by_message["label"], strict=True)),
        len(frame),
    )


def read_window(
    log,
    since: datetime,
    until: datetime,
    *,
    reference: dict | None = None,
    progress: bool = False,
) -> Window:
    """Read the predictions logged in ``[since, until)`` with feedback, features and errors."""
    import sqlalchemy as sa

    from ..serving.predlog import utc_naive

    since, until = utc_naive(since), utc_naive(until)
    p = log.predictions.c
    where = sa.and_(p.created_at >= since, p.created_at < until)
    columns = [getattr(p, c) for c in PREDICTION_COLUMNS]
    # Text, not JSON / DateTime: the driver's strings are parsed in bulk below.
    query = (
        sa.select(
            *columns,
            sa.type_coerce(p.created_at, sa.String).label("created_at"),
            sa.type_coerce(p.features, sa.Text).label("features"),
        )
        .where(where)
        .order_by(p.id)
    )
    schema = feature_schema(reference) if reference else None
    parts, feature_parts = [], []
    with log.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).where(where)).scalar() or 0
        requests, messages, feedback_rows = _feedback_by_key(conn, log.feedback)
        errors = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(log.errors.c.requests), 0)).where(
                log.errors.c.created_at >= since, log.errors.c.created_at < until
            )
        ).scalar()
        result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
        names = list(result.keys())
        with _progress(progress, total) as advance:
            for rows in result.partitions(CHUNK_ROWS):
                # Column-wise, as plain objects: pandas building a frame from row objects and
                # inferring string dtypes took longer than the query.
                data = dict(zip(names, zip(*rows, strict=True), strict=True))
                feature_parts.append(parse_features(list(data.pop("features")), schema))
                parts.append(pd.DataFrame({k: _column(v) for k, v in data.items()}, copy=False))
                advance(len(rows))
    if parts:
        predictions = pd.concat(parts, ignore_index=True)
        features = pd.concat(feature_parts, ignore_index=True)
    else:
        predictions = pd.DataFrame(columns=[n for n in names if n != "features"])
        features = parse_features([], schema)
    predictions["created_at"] = pd.to_datetime(predictions["created_at"], format="ISO8601")
    predictions["served"] = predictions["served"].astype(bool)
    for column in ("score", "threshold", "latency_ms"):
        predictions[column] = pd.to_numeric(predictions[column], errors="coerce").astype(float)
    predictions["feedback"] = _feedback_for(predictions, requests, messages)
    features.index = predictions.index
    return Window(since, until, predictions, features, int(errors or 0), feedback_rows)


def _column(values: tuple) -> np.ndarray | pd.Series:
    """One column of a chunk: numbers as NumPy arrays, anything else as objects."""
    first = next((v for v in values if v is not None), None)
    if isinstance(first, bool):
        return np.array(values, dtype=bool)
    if isinstance(first, int) and None not in values:
        return np.array(values, dtype=np.int64)
    if isinstance(first, int | float):
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    return pd.Series(values, dtype=object)  # not pandas' inferred string dtype: 3x slower


def _feedback_for(predictions: pd.DataFrame, requests: dict, messages: dict) -> pd.Series:
    """The user's label for each prediction: by request id, else by message id, else None."""
    if predictions.empty:
        return pd.Series([], dtype=object)
    by_request = predictions["request_id"].map(requests)
    by_message = predictions["message_id"].map(messages)
    labels = by_request.where(by_request.notna(), by_message)
    return labels.astype(object).where(labels.notna(), None)


class _progress:
    """A rich progress bar over rows read (or nothing)."""

    def __init__(self, show: bool, total: int):
        self.show, self.total = show and total > CHUNK_ROWS, total
        self._bar = None

    def __enter__(self):
        if not self.show:
            return lambda n: None
        from rich.progress import Progress

        self._bar = Progress(transient=True)
        self._bar.__enter__()
        task = self._bar.add_task("Reading the prediction log", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
