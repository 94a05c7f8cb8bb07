"""Map foreign records onto the contract's columns: labels, timestamps, defaults and flags.

:func:`canonicalise` renames source columns through ``data.column_mapping``, fills what is
missing with documented defaults and flags it in ``quality_flags`` (``missing:<column>``,
``invalid:<column>``, ``received_at:row_order``), and rejects records without a usable label
or with a timestamp no datetime64[ns] column can hold (another datetime column out of that
range becomes null, flagged ``invalid:<column>``). A contract without a flags column cannot
record a repair: a record that would need one is rejected instead (``missing_value``,
``invalid_value``), never kept with a default that passes for its own value.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from hashlib import sha1

import numpy as np
import pandas as pd

from ..config import Column, SystemConfig
from ..domain import pack_of
from ..timebounds import EARLIEST, LATEST
from .dates import parse_date, partial_dates
from .labels import LabelConflict, label_key, normalise_labels
from .tabular import Chunk, Rejected, plain_value

# Records without a timestamp column get one second apart from this instant, in file order,
# so the time split still has an order to follow (flag ``received_at:row_order``).
ROW_ORDER_EPOCH = "2000-01-01T00:00:00Z"
TIMESTAMP_DTYPE = "datetime64[us, UTC]"


def to_contract_frame(cfg: SystemConfig, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The contract's columns in order with its dtypes: strings as objects (None for null),
    int64, float64, bool, and UTC datetimes. Columns absent from ``frame`` are null."""
    frame = pd.DataFrame() if frame is None else frame.reset_index(drop=True)
    n = len(frame)
    out = {}
    for col in cfg.data.columns:
        if col.name in frame:
            values = frame[col.name]
        else:  # null, or the documented default where the dtype has no null
            values = pd.Series([_default(col) if col.dtype != "string" else None] * n, dtype=object)
        if col.dtype == "datetime":
            if not isinstance(values.dtype, pd.DatetimeTZDtype):
                values = pd.to_datetime(values, utc=True)
            out[col.name] = values.dt.tz_convert("UTC").astype(TIMESTAMP_DTYPE)
        elif col.dtype == "int" and values.isna().any():  # a nullable column's nulls
            out[col.name] = values.astype("Int64")
        elif col.dtype in ("int", "float", "bool"):
            out[col.name] = values.astype({"int": "int64", "float": "float64"}.get(col.dtype, bool))
        else:
            values = values.astype(object)
            out[col.name] = values.where(values.notna(), None)
    return pd.DataFrame(out, index=range(n))


# --------------------------------------------------------------------------- canonical columns


def plan_columns(cfg: SystemConfig, columns: list[str]) -> tuple[dict[str, str], list[str]]:
    """Source column -> contract column (mapping first, then same name in any case); notes."""
    names = [c.name for c in cfg.data.columns]
    lower = {n.lower(): n for n in names}
    rename: dict[str, str] = {}
    ignored, shadowed = [], []
    mapped_targets = {cfg.data.column_mapping[c] for c in columns if c in cfg.data.column_mapping}
    for col in columns:
        target = cfg.data.column_mapping.get(col)
        if target is None and col not in cfg.data.column_mapping:
            target = lower.get(str(col).strip().lower())
            if target in mapped_targets:  # an explicit mapping beats a same-named column
                shadowed.append(str(col))
                continue
        if target is None or target in rename.values():
            ignored.append(str(col))
        else:
            rename[col] = target
    notes = []
    if ignored:
        notes.append(f"ignored columns not in the contract or data.column_mapping: {ignored}")
    if shadowed:
        notes.append(f"columns replaced by a data.column_mapping entry: {shadowed}")
    return rename, notes


def _null_mask(values: pd.Series, blank: bool = True) -> np.ndarray:
    """Null or NaN, and (when ``blank``) a blank string."""
    mask = values.isna().to_numpy(dtype=bool, na_value=True).copy()
    if blank and (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
        mask |= np.array([type(v) is str and not v.strip() for v in values.tolist()], bool)
    return mask


def as_text(value: object, sep: str = " ") -> object:
    """A value as a string; lists are joined (URLs by spaces, types by commas)."""
    if type(value) is str:
        return value
    value = plain_value(value)
    if isinstance(value, list | tuple):
        return sep.join(str(v).strip() for v in value if v is not None and str(v).strip())
    if isinstance(value, dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


# A date written with numbers only, day and month in an order it does not say: "03/04/2025".
_NUMERIC_DATE = re.compile(r"\s*(\d{1,2})[/.-](\d{1,2})[/.-](?:\d{4}|\d{2})(?!\d)")
# Two fill-ins for what a free-text date leaves out: a date part it lacks differs between them.
_FILL_INS = (datetime(2001, 1, 1), datetime(2002, 2, 2))


def day_first(texts) -> bool | None:
    """Whether the numeric dates among ``texts`` put the day first: a first number over 12 says
    yes, a second one over 12 says no. None when none of them says, or they disagree."""
    days_first = months_first = False
    for text in texts:
        match = _NUMERIC_DATE.match(text) if isinstance(text, str) else None
        if match:
            days_first |= int(match[1]) > 12
            months_first |= int(match[2]) > 12
    return None if days_first == months_first else days_first


def _parse_one(value: object, days_first: bool | None = None) -> pd.Timestamp | None:
    """One timestamp the vectorised ISO parser did not read (RFC 2822, free text, objects).
    A numeric date (``03/04/2025``) is read in the order ``days_first`` gives (see
    :func:`day_first`), and refused without one; a text lacking a year, month or day ("March
    2025") is refused rather than completed with today's."""
    value = plain_value(value)
    try:
        if isinstance(value, datetime):
            ts = pd.Timestamp(value)
        elif isinstance(value, str):
            when = parse_date(value)[0]  # RFC 2822, obsolete two- and three-digit years too
            if when is not None:
                ts = pd.Timestamp(when)
            else:
                if not re.search(r"\d{4}", value):
                    return None
                numeric = _NUMERIC_DATE.match(value)
                if numeric and days_first is None:
                    return None  # 03/04/2025: the 3rd of April or the 4th of March
                from dateutil import parser

                first, second = (
                    parser.parse(value, default=fill, dayfirst=bool(days_first))
                    for fill in _FILL_INS
                )
                if first.date() != second.date():
                    return None
                ts = pd.Timestamp(first)
        else:
            return None
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    except Exception:
        return None


def parse_times(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """UTC timestamps from datetimes, ISO 8601 or RFC 2822 strings, or epoch numbers
    (s, ms, us or ns); returns the timestamps and a mask of unparseable, non-null values."""
    null = _null_mask(values)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        s = values if values.dt.tz is not None else values.dt.tz_localize("UTC")
        return s.dt.tz_convert("UTC").astype(TIMESTAMP_DTYPE), np.zeros(len(values), bool)
    obj = values.astype(object).where(~null, None)
    out = pd.Series(pd.NaT, index=values.index, dtype=TIMESTAMP_DTYPE)
    num = pd.to_numeric(obj.map(lambda v: None if isinstance(v, bool) else v), errors="coerce")
    num = num.where(num.abs() >= 1e8)  # smaller numbers are not epochs (years, counts)
    for low, unit in ((1e8, "s"), (1e11, "ms"), (1e14, "us"), (1e17, "ns")):
        sel = (num.abs() >= low) & (num.abs() < low * 1000 if unit != "ns" else True)
        if sel.any():
            converted = pd.to_datetime(num[sel], unit=unit, utc=True, errors="coerce")
            out[sel] = converted.astype(TIMESTAMP_DTYPE)
    text = obj.where(num.isna() & ~null)
    strings = text.map(lambda v: isinstance(v, str), na_action="ignore").fillna(False)
    strings = strings.astype(bool)
    if strings.any():
        iso = pd.to_datetime(text[strings], utc=True, format="ISO8601", errors="coerce")
        out[strings] = iso.astype(TIMESTAMP_DTYPE).where(~partial_dates(text[strings]), pd.NaT)
    rest = out.isna() & ~null
    if rest.any():
        cache: dict[str, pd.Timestamp | None] = {}  # exports repeat the same few formats
        parsed = []
        days_first = day_first(obj[rest])  # one order for the whole column
        for v in obj[rest]:
            if type(v) is not str:
                parsed.append(_parse_one(v))
                continue
            if v not in cache:
                cache[v] = _parse_one(v, days_first)
            parsed.append(cache[v])
        out[rest] = pd.Series(parsed, index=out.index[rest], dtype=object).astype(TIMESTAMP_DTYPE)
    return out, (out.isna() & ~null).to_numpy(dtype=bool)


def _default(column: Column) -> object:
    if column.dtype == "int":
        return int(max(column.min or 0, 0))
    if column.dtype == "float":
        return float(max(column.min or 0, 0))
    if column.dtype == "bool":
        return False
    return None if column.dtype == "datetime" else ""


def _row_id(chunk: Chunk, i: int) -> str:
    values = "\x1f".join(str(plain_value(v)) for v in chunk.frame.iloc[i].tolist())
    return "row-" + sha1(values.encode("utf-8", "replace")).hexdigest()[:20]


class _Columns:
    """The renamed source columns of a chunk, with null masks and the flags being built."""

    def __init__(self, src: pd.DataFrame, flags: list[list[str]], blank_is_null: bool) -> None:
        self.src, self.flags, self.n = src, flags, len(src)
        self.blank_is_null = blank_is_null
        self._cache: dict[tuple[str, bool], tuple] = {}
        # Row -> why its timestamp cannot be held: the row is rejected.
        self.out_of_range: dict[int, str] = {}

    def get(self, name: str, text: bool = False) -> tuple[pd.Series | None, list, np.ndarray]:
        """The column (None if absent), its values as a list, and its null mask. A blank
        string is null, except in a text column of a typed source (Parquet, JSON)."""
        if name not in self.src:
            return None, [None] * self.n, np.ones(self.n, bool)
        blank = self.blank_is_null or not text
        if (name, blank) not in self._cache:
            series = self.src[name].reset_index(drop=True)
            self._cache[name, blank] = series, series.tolist(), _null_mask(series, blank)
        return self._cache[name, blank]

    def flag(self, mask: np.ndarray, name: str) -> None:
        for i in np.flatnonzero(mask):
            self.flags[i].append(name)


def canonicalise(
    cfg: SystemConfig, chunk: Chunk, labels: Callable[[str], object] | None = None
) -> tuple[pd.DataFrame, list[Rejected], list[str]]:
    """Map a chunk onto the contract: canonical records, rejected records, notes.

    ``labels`` looks up a labels-file entry by message id; a hit beats the label column.
    """
    data = cfg.data
    rename, notes = plan_columns(cfg, list(chunk.frame.columns))
    n = len(chunk.frame)
    flags = chunk.flags if chunk.flags else [[] for _ in range(n)]
    cols = _Columns(chunk.frame[list(rename)].rename(columns=rename), flags, chunk.blank_is_null)
    label_col = data.column("label").name
    flags_cols = [c.name for c in data.columns_with("flags")]
    for name in flags_cols:  # re-ingesting our own output keeps its flags
        _, values, missing = cols.get(name)
        for i in np.flatnonzero(~missing):
            flags[i][:0] = [f for f in str(values[i]).split(",") if f]

    out: dict[str, object] = {}
    domain = pack_of(cfg).canonical
    for col in data.columns:
        if col.name not in flags_cols and col.name != label_col:
            values = domain(cfg, col, cols, out) if domain else None
            out[col.name] = (
                values if values is not None else _canonical_column(cfg, col, chunk, cols, out)
            )

    # Labels: a labels-file entry beats the column; nothing is dropped without a reason.
    _, raw_labels, label_missing = cols.get(label_col)
    if labels is not None:
        hits = [labels(i) for i in out[data.column("id").name]]
        raw_labels = [h if h is not None else v for h, v in zip(hits, raw_labels, strict=True)]
        label_missing = _null_mask(pd.Series(raw_labels, dtype=object))
    normalised = normalise_labels(cfg, pd.Series(raw_labels, dtype=object))
    out[label_col] = normalised.tolist()
    rejected = list(chunk.rejected)
    keep = normalised.notna().to_numpy().copy()
    for i, detail in cols.out_of_range.items():
        if keep[i]:
            keep[i] = False
            raw = chunk.raw_of(i)
            rejected.append(
                Rejected(chunk.index[i], chunk.locations[i], "timestamp_out_of_range", detail, raw)
            )
    for i in np.flatnonzero(~keep & normalised.isna().to_numpy()):
        reason = "no_label" if label_missing[i] else "unmappable_label"
        detail = "" if label_missing[i] else f"label {raw_labels[i]!r}"
        if isinstance(raw_labels[i], LabelConflict):
            reason, detail = "conflicting_label", raw_labels[i].detail()
        rejected.append(
            Rejected(chunk.index[i], chunk.locations[i], reason, detail, chunk.raw_of(i))
        )
    if n and label_col not in cols.src and labels is None:
        notes.append(
            f"no '{label_col}' column after data.column_mapping: every row is quarantined "
            "as no_label (map one in configs/system.yaml or pass a labels file)"
        )
    if not flags_cols:
        for i in np.flatnonzero(keep):
            rejection = _unrecorded_repair(data, cols, flags[i], i)
            if rejection is not None:
                keep[i] = False
                rejected.append(
                    Rejected(chunk.index[i], chunk.locations[i], *rejection, chunk.raw_of(i))
                )
    for name in flags_cols:
        out[name] = [",".join(dict.fromkeys(f)) for f in flags]
    # Object columns throughout: pandas would otherwise infer (and convert to) arrow strings.
    frame = pd.DataFrame({c.name: _object(out[c.name]) for c in data.columns})
    rejected.sort(key=lambda r: r.index)
    return frame[keep].reset_index(drop=True), rejected, notes


def _unrecorded_repair(data, cols: _Columns, flags: list[str], i: int) -> tuple[str, str] | None:
    """(reason, detail) for a record that needs a value filled in or dropped, in a contract
    without a flags column: there the default would pass for the record's own value, so the
    record goes to the quarantine instead. None for a record that needs no repair."""
    invalid = [f.removeprefix("invalid:") for f in flags if f.startswith("invalid:")]
    missing = [f.removeprefix("missing:") for f in flags if f.startswith("missing:")]
    if not invalid and not missing:
        return None
    dtypes = {c.name: c.dtype for c in data.columns}
    details = []
    for name in invalid:
        value = str(plain_value(cols.get(name)[1][i]))[:80]
        details.append(f"{name} {value!r} is not a valid {dtypes.get(name, 'value')}")
    details += [f"{name} is missing" for name in missing]
    reason = "invalid_value" if invalid else "missing_value"
    return reason, "; ".join(details) + " (no flags column in the contract to record a default)"


def _object(values: object) -> pd.Series:
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    return pd.Series(values, dtype=object)


def _canonical_column(cfg: SystemConfig, col: Column, chunk: Chunk, cols: _Columns, out: dict):
    """One contract column from the source, with defaults and flags for what is missing."""
    name, n = col.name, cols.n
    keyed = col.role in ("id", "entity_key")
    series, values, missing = cols.get(name, text=col.dtype == "string" and not keyed)
    if name == cfg.data.column("id").name:
        ids = [
            None if m else str(plain_value(v)).strip() for v, m in zip(values, missing, strict=True)
        ]
        for i in np.flatnonzero(missing):
            ids[i] = _row_id(chunk, i)
        cols.flag(missing, f"missing:{name}")
        return ids
    if col.dtype == "datetime":
        if series is None and name == cfg.data.timestamp:
            offsets = pd.to_timedelta(np.asarray(chunk.index, dtype="int64"), unit="s")
            cols.flag(np.ones(n, bool), f"{name}:row_order")
            return pd.Series(pd.Timestamp(ROW_ORDER_EPOCH) + offsets).astype(TIMESTAMP_DTYPE)
        if series is None:
            times, invalid = (
                pd.Series(pd.NaT, index=range(n), dtype=TIMESTAMP_DTYPE),
                missing & False,
            )
        else:
            times, invalid = parse_times(series)
        if not col.nullable or (series is None and col.mostly > 0):
            cols.flag(missing, f"missing:{name}")
        cols.flag(invalid, f"invalid:{name}")
        return _representable(cfg, col, times, values, cols)
    if col.dtype in ("int", "float"):
        return _numbers(col, series, missing, cols)
    if col.dtype == "bool":
        cols.flag(missing, f"missing:{name}")
        return [
            False if m else label_key(v) in ("1", "true", "yes")
            for v, m in zip(values, missing, strict=True)
        ]
    return string_values(col, cols)


def string_values(col: Column, cols: _Columns, sep: str = " ") -> list:
    """A string column's values (lists joined by ``sep``): an absent column that validation
    expects filled gets "" and a ``missing:`` flag."""
    keyed = col.role in ("id", "entity_key")
    series, values, missing = cols.get(col.name, text=not keyed)
    fill = None if col.nullable and (series is not None or col.mostly == 0) else ""
    texts = [fill if m else as_text(v, sep) for v, m in zip(values, missing, strict=True)]
    if fill == "":
        cols.flag(missing, f"missing:{col.name}")
    return texts


def _representable(cfg: SystemConfig, col: Column, times: pd.Series, values: list, cols):
    """Times a datetime64[ns] column can hold: beyond that range the record's timestamp is
    rejected, another datetime column's value becomes null (flagged)."""
    low, high = pd.Timestamp(EARLIEST), pd.Timestamp(LATEST)
    far = ((times < low) | (times > high)).to_numpy(dtype=bool, na_value=False)
    if not far.any():
        return times
    if col.name == cfg.data.timestamp:
        for i in np.flatnonzero(far):
            value = str(plain_value(values[i]))[:80]
            cols.out_of_range[i] = (
                f"{col.name} {value!r} is year {times.iloc[i].year}, outside the time range the "
                f"stages can hold ({EARLIEST.date()} .. {LATEST.date()})"
            )
    else:
        cols.flag(far, f"invalid:{col.name}")
    return times.where(~far, pd.NaT)


def _numbers(col: Column, series: pd.Series | None, missing: np.ndarray, cols: _Columns) -> list:
    # A nullable column keeps a missing or invalid value as null (the latter flagged); a column
    # that validation expects filled gets the documented default, flagged.
    default = None if col.nullable else _default(col)
    if not col.nullable:
        cols.flag(missing, f"missing:{col.name}")
    if series is None:
        return [default] * cols.n
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series):
        num = series.astype("float64")
    else:
        values = series.tolist()
        num = pd.to_numeric(
            pd.Series([None if isinstance(v, bool) else v for v in values], dtype=object),
            errors="coerce",
        )
    good = num.notna().to_numpy()
    if col.dtype == "int":
        good = good & ((num % 1 == 0) & (num.abs() < 2**62)).to_numpy()
    cols.flag(~good & ~missing, f"invalid:{col.name}")
    cast = int if col.dtype == "int" else float
    return [cast(v) if g else default for v, g in zip(num, good, strict=True)]


def distinct_generated_ids(cfg: SystemConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """Generated ids come from the content; repeats of identical records get -2, -3, ..."""
    id_col = cfg.data.column("id").name
    flags = cfg.data.columns_with("flags")
    if frame.empty or not flags:
        return frame
    generated = frame[flags[0].name].fillna("").str.contains(f"missing:{id_col}", regex=False)
    ids = frame.loc[generated, id_col]
    rank = ids.groupby(ids).cumcount()
    repeat = rank[rank > 0]
    if len(repeat):
        frame.loc[repeat.index, id_col] = ids[repeat.index] + "-" + (repeat + 1).astype(str)
    return frame


def flag_notes(cfg: SystemConfig, frame: pd.DataFrame) -> list[str]:
    """One note tallying the quality flags of the kept records (the most common first)."""
    flags = cfg.data.columns_with("flags")
    if frame.empty or not flags:
        return []
    tally = Counter(f for value in frame[flags[0].name] if value for f in value.split(","))
    if not tally:
        return []
    flagged = int((frame[flags[0].name].fillna("") != "").sum())
    top = ", ".join(f"{f} {n:,}" for f, n in tally.most_common(8))
    return [f"{flagged:,} records kept with quality flags: {top}"]
