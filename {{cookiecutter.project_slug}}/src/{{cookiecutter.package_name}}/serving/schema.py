"""Request and response models of the HTTP API, built from the contract's raw schema.

``record_model(cfg)`` turns ``data.columns`` (minus the label) into a pydantic model named
after the domain pack's record (``Record`` without a pack). ``required_columns`` says which
fields a request must carry: the entity key and the non-nullable text columns; in a contract
without a flags column, every non-nullable column but the id and the timestamp, because there a
default would pass for the record's own value (``data ingest`` quarantines such a record for the
same reason). Every other field is optional with a default (now for the timestamp, the range
minimum for counts, the first allowed value for categories, null for nullable fields, and what
the pack derives). Unknown fields are refused, so a misspelled field is a 400, not a silently
ignored value. Types are strict: a number is not taken from a string or a boolean (``false`` is
not 0), a time only from an ISO 8601 string (``"1"`` and ``0.0`` are not 1970), a non-nullable
string must hold a non-whitespace character (but text in a contract with a flags column: see
``record_model``), and a key (the id, the entity key) no NUL character nor more characters than
the log's column holds. ``FrameBuilder`` turns validated records into the raw canonical rows the
model bundle scores.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    create_model,
)

from ..data.coerce import KEY_ROLES, MAX_TEXT_CHARS, blank_cells
from ..domain import pack_of
from ..predlog.store import KEY_MAX_CHARS
from ..tables import SMALL_FRAME, RecordTable
from ..timebounds import as_utc

# Items per /classify_batch request (the body size limit applies as well). A request is scored
# and logged whole (batcher.py): the limit keeps one request within the end-to-end latency
# budget on one core with the sample model, with room for a group queued ahead of it. A list
# over it is a 413 naming it.
MAX_BATCH_ITEMS = 200
# A non-nullable string holds something besides whitespace (the OpenAPI schema says so too).
NOT_BLANK = r"\S"
# The start of an ISO 8601 date: what a time string must begin with.
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Prediction(BaseModel):
    """The answer for one record."""

    request_id: str = Field(description="Id of this prediction; key for feedback")
    message_id: str | None = Field(None, description="The record's message id, when sent")
    label: str = Field(description="Predicted class (the contract's positive or negative class)")
    score: float = Field(description="Probability of the positive class")
    threshold: float = Field(description="Decision threshold of the answering model")
    model_version: int = Field(description="Registry version of the answering model")
    role: Literal["champion", "challenger"] = Field(description="Which model answered")


class DuplicateRequestId(ValueError):
    """A request id that already has a served prediction (a 409: feedback keys on it)."""

    def __init__(self, request_id: str):
        super().__init__(
            f"X-Request-ID {request_id!r} was already used: send each request with a new id"
        )
        self.request_id = request_id


def _time_type(column) -> Any:
    """A datetime field held to the column's bounds in the contract, as validation holds the
    training data (``Column.time_bounds``: the upper bound follows the server's clock)."""

    def within(value: datetime) -> datetime:
        # A naive time is taken as UTC, like everywhere else in the project.
        value = as_utc(value)
        low, high = column.time_bounds(datetime.now(UTC))
        if value < low:
            raise ValueError(f"must not be before {low.isoformat()}")
        if value > high:
            raise ValueError(f"must not be after {high.isoformat()} ({_ahead(column)})")
        return value

    return Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(within)]


def _ahead(column) -> str:
    days = column.max_ahead_days or 0
    return f"the server's clock + {days:g} day{'' if days == 1 else 's'}"


def _iso_text(value):
    # pydantic would read a number, or a string of one, as seconds since 1970.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2024-05-01T12:00:00Z")
    return value


def _key(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (a key is stored as text)")
    return value


def _field(column, required: bool, blank: bool = False) -> tuple[Any, Any]:
    """(annotation, default) of one contract column; ``blank``: its value may be blank text
    (see :func:`record_model`)."""
    kind = {
        "string": Annotated[str, Strict()],
        "int": Annotated[int, Strict()],
        "float": Annotated[float, Strict()],  # still takes a JSON integer
        "bool": Annotated[bool, Strict()],
    }
    annotation: Any = _time_type(column) if column.dtype == "datetime" else kind[column.dtype]
    constraints: dict[str, Any] = {}
    if column.dtype == "string":
        constraints["max_length"] = MAX_TEXT_CHARS
        if not column.nullable and not blank:
            constraints["min_length"] = 1
            constraints["pattern"] = NOT_BLANK
        if column.role in KEY_ROLES:  # stored as text in a column of a set width
            width = StringConstraints(max_length=KEY_MAX_CHARS[column.role])
            annotation = Annotated[annotation, width, AfterValidator(_key)]
            del constraints["max_length"]
        if column.allowed:
            annotation = Literal[tuple(column.allowed)]
            constraints = {}
    if column.dtype in ("int", "float"):
        if column.min is not None:
            constraints["ge"] = column.min
        if column.max is not None:
            constraints["le"] = column.max
    if column.dtype == "float":
        constraints["allow_inf_nan"] = False
    if column.dtype == "datetime":
        low, _ = column.time_bounds(datetime.now(UTC))
        constraints["description"] = (
            f"ISO 8601 date-time, from {low.date()} to {_ahead(column)} (configs/system.yaml)"
        )
    if required:
        return annotation, Field(..., **constraints)
    # Optional fields: null is accepted and means "use the default" for non-nullable ones.
    return annotation | None, Field(None, **constraints)


def record_model(cfg) -> type[BaseModel]:
    """The pydantic model of one record: the contract's raw columns without the label.

    With a flags column, a text field that must be sent may be sent blank: ingest gives a record
    without that text the empty string, flagged ``missing:<field>`` (:class:`FrameBuilder` flags
    it the same way), so the model has learnt such records, and one is scored rather than
    refused. Without one, blank text is missing there (``data.coerce``), and refused here.
    """
    label = cfg.data.column("label").name
    required = set(required_columns(cfg))
    _, blank_texts = flag_targets(cfg)
    fields = {
        column.name: _field(column, column.name in required, column.name in blank_texts)
        for column in cfg.data.columns
        if column.name != label
    }
    return create_model(
        pack_of(cfg).record,
        __config__=ConfigDict(extra="forbid", str_max_length=MAX_TEXT_CHARS),
        __doc__="One raw record in the contract's schema (data.columns, without the label).",
        **fields,
    )


def required_columns(cfg) -> list[str]:
    """The fields every request must carry, in contract order (see the module docstring)."""
    data = cfg.data
    recorded = bool(data.columns_with("flags"))
    optional = {data.column("label").name, data.column("id").name, data.timestamp}
    return [
        c.name
        for c in data.columns
        if c.name == data.entity
        or (not c.nullable and c.name not in optional and (c.role == "text" or not recorded))
    ]


def defaults(cfg) -> dict[str, Any]:
    """The value a missing non-nullable optional field takes (see the module docstring)."""
    out: dict[str, Any] = {}
    for column in cfg.data.columns:
        if column.nullable:
            continue
        if column.allowed:
            out[column.name] = column.allowed[0]
        elif column.dtype in ("int", "float"):
            low = column.min if column.min is not None else 0
            high = column.max if column.max is not None else max(low, 0)
            value = min(max(0, low), high)
            out[column.name] = int(value) if column.dtype == "int" else float(value)
        elif column.dtype == "bool":
            out[column.name] = False
    return out


def flag_targets(cfg) -> tuple[str | None, list[str]]:
    """The flags column (None without one) and the text columns whose blank value it flags."""
    flags = next((c.name for c in cfg.data.columns_with("flags")), None)
    return flags, [c.name for c in cfg.data.columns_with("text") if flags and not c.nullable]


def with_missing(cell: str | None, names) -> str:
    """A flags cell with ``missing:<name>`` added for each of ``names`` (once each)."""
    flags = [f for f in (cell or "").split(",") if f]
    return ",".join(dict.fromkeys([*flags, *(f"missing:{name}" for name in names)]))


class FrameBuilder:
    """Validated records -> raw canonical rows (contract column order, UTC timestamps)."""

    def __init__(self, cfg):
        label = cfg.data.column("label").name
        self.columns = [c for c in cfg.data.columns if c.name != label]
        self.names = [c.name for c in self.columns]
        self._index = pd.Index(self.names)
        self.timestamp = cfg.data.timestamp
        self.entity = cfg.data.entity
        self.datetimes = [c.name for c in self.columns if c.dtype == "datetime"]
        self.defaults = {k: v for k, v in defaults(cfg).items() if k != label}
        self.complete = pack_of(cfg).complete
        self.flags, self.blank_texts = flag_targets(cfg)

    def values(self, item: BaseModel, now: datetime) -> dict[str, Any]:
        """The raw values of one validated record, with defaults filled in (and flagged
        ``missing:<field>`` as ingest flags them, with blank text, where there is a flags
        column: the model learnt from those flags)."""
        record = {name: getattr(item, name, None) for name in self.names}
        filled = []
        for name, value in self.defaults.items():
            if record.get(name) is None:
                record[name] = value
                filled.append(name)
        for name in self.blank_texts:  # only with a flags column
            text = record[name]
            if text is not None and (not text or text.isspace()):
                filled.append(name)
        if filled and self.flags:
            record[self.flags] = with_missing(record[self.flags], filled)
        if self.timestamp and record.get(self.timestamp) is None:
            record[self.timestamp] = now
        if self.complete is not None:
            self.complete(record, self.entity)
        return record

    def table(self, records: list[BaseModel], now: datetime | None = None) -> RecordTable:
        """One row per record, without pandas (the request path): the cells ``frame`` gives a
        few rows, whatever the number of records. Datetime cells are ``pd.Timestamp`` (or
        ``NaT``)."""
        now = now or datetime.now(UTC)
        raw = [self.values(r, now) for r in records]
        data = {name: [r[name] for r in raw] for name in self.names}
        # The records a call stamps with its time share one Timestamp (converted once, and
        # the log converts it back once: ``logrows.LogContext``).
        stamped = pd.Timestamp(now)
        for name in self.datetimes:
            data[name] = [
                pd.NaT if v is None else stamped if v is now else pd.Timestamp(v)
                for v in data[name]
            ]
        return RecordTable(data, len(raw))

    def frame(self, records: list[BaseModel], now: datetime | None = None) -> pd.DataFrame:
        """One row per record. Datetime cells are UTC ``pd.Timestamp`` (or ``NaT``).

        A few rows (a single request) become an object-dtype frame: inferring pandas' string
        and datetime dtypes costs ~1.5 ms, more than scoring, and the feature code reads small
        frames cell by cell anyway. Larger frames get the same dtypes as training data.
        """
        now = now or datetime.now(UTC)
        raw = [self.values(r, now) for r in records]
        if len(raw) <= SMALL_FRAME:
            # One 2-D object block: ~20 us, where a frame built column by column costs ~350 us.
            table = np.empty((len(raw), len(self.names)), dtype=object)
            for i, record in enumerate(raw):
                for name in self.datetimes:
                    value = record[name]
                    record[name] = pd.NaT if value is None else pd.Timestamp(value)
                for j, name in enumerate(self.names):
                    table[i, j] = record[name]  # one cell at a time: a list value stays a cell
            return pd.DataFrame(table, columns=self._index, dtype=object, copy=False)
        data = {name: [r[name] for r in raw] for name in self.names}
        for name in self.datetimes:
            data[name] = pd.to_datetime(data[name], utc=True)
        return pd.DataFrame(data, columns=self.names)


def fill_omitted(cfg, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """``frame`` (records as a file holds them) with what a request may omit filled in as
    :class:`FrameBuilder` fills it, and how many cells of each column were filled.

    An optional non-nullable field (not in :func:`required_columns`) takes its default where
    the column is absent or the cell null (a request's null means "use the default"), flagged
    as the server flags it (blank text too), and the pack completes the others where it fills
    a request's (``complete``: a value derived from another). The id and the time are left
    alone: a request's missing time is its arrival, which a file does not have.
    """
    data = cfg.data
    required = set(required_columns(cfg))
    kept = {data.column("id").name, data.column("label").name, data.timestamp, *required}
    optional = [c for c in data.columns if not c.nullable and c.name not in kept]
    flags, blank_texts = flag_targets(cfg)
    if frame.empty or not (optional or blank_texts):
        return frame, {}
    out = frame.copy()
    out.attrs = frame.attrs  # the lines the reader could not parse
    filled: dict[str, int] = {}

    def empty(name: str, blank: bool = False) -> np.ndarray:
        if name not in out:
            return np.ones(len(out), dtype=bool)
        missing = out[name].isna().to_numpy(dtype=bool)
        if blank:  # what the pack's complete may take for omitted too
            missing = missing | out[name].map(lambda v: isinstance(v, str) and not v).to_numpy(bool)
        return missing

    given = defaults(cfg)
    marks: dict[str, np.ndarray] = {}  # the cells to flag missing:<column>
    for column in optional:
        if column.name in given and (missing := empty(column.name)).any():
            values = out[column.name] if column.name in out else pd.Series(None, index=out.index)
            out[column.name] = values.astype(object).where(~missing, given[column.name])
            filled[column.name] = int(missing.sum())
            marks[column.name] = missing
    for name in (n for n in blank_texts if n in out):
        marks[name] = blank_cells(out[name])
    flagged = np.flatnonzero(np.any(list(marks.values()), axis=0)) if flags and marks else []
    if len(flagged):
        cells = out[flags].to_numpy(dtype=object).copy() if flags in out else [None] * len(out)
        for i in flagged:
            cell = cells[i] if isinstance(cells[i], str) else None
            cells[i] = with_missing(cell, [name for name, mask in marks.items() if mask[i]])
        out[flags] = cells
    complete = pack_of(cfg).complete
    rest = [c.name for c in optional if c.name not in given]
    if complete is not None and rest:
        for name in rest:
            out[name] = out[name].astype(object) if name in out else None
        wanting = np.flatnonzero(np.any([empty(name, blank=True) for name in rest], axis=0))
        columns = [c.name for c in data.columns if c.name in out]
        # The wanting rows' cells as a request holds them (None where missing), by column.
        wanted = out.iloc[wanting][columns].astype(object)
        wanted = wanted.where(wanted.notna(), None)
        cells = {name: values.to_numpy() for name, values in wanted.items()}
        # Only records whose text values a request could hold: the rest is validation's to name.
        typed = np.ones(len(wanting), dtype=bool)
        for name in (c.name for c in data.columns if c.dtype == "string" and c.name in out):
            text = (v is None or isinstance(v, str) for v in cells[name])
            typed &= np.fromiter(text, dtype=bool, count=len(wanting))
        completed = {name: out[name].to_numpy(dtype=object).copy() for name in rest}
        for j in np.flatnonzero(typed):
            record = {name: cells[name][j] for name in columns}
            complete(record, data.entity)
            for name in rest:
                if record[name] is not None and record[name] != cells[name][j]:
                    completed[name][wanting[j]] = record[name]
                    filled[name] = filled.get(name, 0) + 1
        for name in rest:
            out[name] = completed[name]
    return out, filled
