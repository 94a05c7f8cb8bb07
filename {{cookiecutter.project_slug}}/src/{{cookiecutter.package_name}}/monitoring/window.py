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

from ..predlog.featurelog import VALUES_KEY

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
    """The Arrow schema of the stored features (``featurelog``) the reference describes."""
    import pyarrow as pa

    fields = [pa.field(VALUES_KEY, pa.list_(pa.float64()))]
    fields += [pa.field(f"cat.{c}", pa.string()) for c in reference.get("categories", {})]
    for column in reference.get("text", {}):
        fields.append(pa.field(f"text.{column}.unseen", pa.float64()))
        fields.append(pa.field(f"text.{column}.top", pa.list_(pa.int32())))
    return pa.schema(fields)


def parse_features(
    texts: list, set_ids: list, names: dict[int, list[str]], schema=None
) -> pd.DataFrame:
    """Stored features (JSON text, dict or None) and their feature set ids -> a frame with one
    column per feature name and per signal."""
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
    values = None
    if VALUES_KEY in table.column_names:
        values = table.column(VALUES_KEY).combine_chunks()
        table = table.drop_columns([VALUES_KEY])
    frame = table.to_pandas()
    if values is None or not len(values):
        return frame
    return pd.concat([_value_columns(values, set_ids, names), frame], axis=1)


def _value_columns(values, set_ids: list, names: dict[int, list[str]]) -> pd.DataFrame:
    """The ``v`` lists as named float columns: one matrix per feature set, by fancy indexing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(values.type):  # every row without values
        return pd.DataFrame(index=range(len(values)))
    lengths = pc.list_value_length(values).fill_null(0).to_numpy()
    flat = pc.list_flatten(values).to_numpy(zero_copy_only=False).astype(float)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ids = np.array([-1 if s is None else s for s in set_ids])
    columns: dict[str, np.ndarray] = {}
    for set_id in np.unique(ids[ids >= 0]):
        set_names = names.get(int(set_id), [])
        rows = np.flatnonzero((ids == set_id) & (lengths == len(set_names)))
        if not set_names or not rows.size:
            continue
        matrix = flat[starts[rows, None] + np.arange(len(set_names))]
        for j, name in enumerate(set_names):
            column = columns.setdefault(name, np.full(len(values), np.nan))
            column[rows] = matrix[:, j]
    return pd.DataFrame(columns)


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
    with_features: bool = True,
    progress: bool = False,
) -> Window:
    """Read the predictions logged in ``[since, until)`` with feedback, features and errors.

    ``with_features=False`` skips the stored features (most of the bytes): ``Window.features``
    is then an empty frame, for callers that only need the predictions and labels.
    """
    import sqlalchemy as sa

    from ..predlog.store import utc_naive

    since, until = utc_naive(since), utc_naive(until)
    p = log.predictions.c
    where = sa.and_(p.created_at >= since, p.created_at < until)
    columns = [getattr(p, c) for c in PREDICTION_COLUMNS]
    # Text, not JSON / DateTime: the driver's strings are parsed in bulk below.
    columns.append(sa.type_coerce(p.created_at, sa.String).label("created_at"))
    if with_features:
        columns += [p.feature_set, sa.type_coerce(p.features, sa.Text).label("features")]
    query = sa.select(*columns).where(where).order_by(p.id)
    schema = feature_schema(reference) if reference else None
    names_by_set = log.feature_names()
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
                if with_features:
                    texts, sets = data.pop("features"), data.pop("feature_set")
                    feature_parts.append(parse_features(list(texts), sets, names_by_set, schema))
                parts.append(pd.DataFrame({k: _column(v) for k, v in data.items()}, copy=False))
                advance(len(rows))
    if parts:
        predictions = pd.concat(parts, ignore_index=True)
        if feature_parts:
            features = pd.concat(feature_parts, ignore_index=True)
        else:
            features = pd.DataFrame(index=range(len(predictions)))
    else:
        stored = ("features", "feature_set")
        predictions = pd.DataFrame(columns=[n for n in names if n not in stored])
        features = parse_features([], [], names_by_set, schema)
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
