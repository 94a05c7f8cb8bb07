"""Cast raw records to the contract's dtypes, flagging the values that do not parse.

Shared by the data stages: whatever reads text (CSV, JSON lines, a pack's own sources) can hand its
values here; validation reports each unparseable cell as a failed ``type`` check and quarantines
its row instead of guessing.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from ..config import SystemConfig
from ..predlog.store import KEY_MAX_CHARS
from .dates import partial_dates

# Roles whose string values are keys, stored as text in columns of a set width in the log and
# the entity store: a value with a NUL character (PostgreSQL cannot hold it) or longer than its
# column does not parse, as the API refuses it.
KEY_ROLES = tuple(KEY_MAX_CHARS)
# Longest text value, in characters: the API refuses a longer field (a request's body size limit
# bounds the rest) and validation quarantines it, so training never keeps what serving refuses.
MAX_TEXT_CHARS = 1_000_000
# Pandas dtypes the contract's dtypes are coerced to (nullable, so a missing value stays missing).
PANDAS_DTYPES = {
    "string": "str",
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "datetime": "datetime64[us, UTC]",
}
# Values of an object column that no text column takes (JSON booleans, lists and objects).
_NOT_TEXT = (bool, np.bool_, list, tuple, dict, np.ndarray)
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def blank_cells(values: pd.Series) -> np.ndarray:
    """True where a value is text holding only whitespace: in a typed column, that is missing."""
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return values.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
    blank = np.zeros(len(values), dtype=bool)
    if values.dtype == object:
        present = values.notna().to_numpy()
        blank[present] = [isinstance(v, str) and not v.strip() for v in values.to_numpy()[present]]
    return blank


def key_problem(value: object, role: str) -> str | None:
    """Why a key's text cannot be stored (see ``KEY_ROLES``), or None."""
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "a NUL character"
    if len(value) > KEY_MAX_CHARS[role]:
        return f"{len(value):,} characters, over the {KEY_MAX_CHARS[role]:,} of a key"
    return None


def text_problem(value: object, role: str) -> str | None:
    """Why a string column's value is refused (a key's own rules, a length over
    ``MAX_TEXT_CHARS``, no text at all), or None."""
    if isinstance(value, _NOT_TEXT):
        return "not text"
    if role in KEY_ROLES and (problem := key_problem(value, role)):
        return problem
    if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
        return f"{len(value):,} characters, over the {MAX_TEXT_CHARS:,} a value holds"
    return None


def _too_long(values: pd.Series) -> np.ndarray:
    if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
        return np.zeros(len(values), dtype=bool)
    try:
        lengths = values.str.len()  # NaN where a value is no text (a number in JSON lines)
    except AttributeError:  # no value is text: none is too long
        return np.zeros(len(values), dtype=bool)
    return (lengths > MAX_TEXT_CHARS).fillna(False).to_numpy(dtype=bool)


def _of_types(values: pd.Series, types: tuple[type, ...]) -> np.ndarray:
    """True where a value of an object column (JSON lines, Parquet) is one of ``types``."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.notna().to_numpy(dtype=bool) if bool in types else np.zeros(len(values), bool)
    if values.dtype != object:
        return np.zeros(len(values), dtype=bool)
    return np.fromiter((isinstance(v, types) for v in values), dtype=bool, count=len(values))


def _coerce_column(values: pd.Series, dtype: str) -> tuple[pd.Series, np.ndarray]:
    """``values`` as the contract's dtype, and a mask of present values that did not parse."""
    if dtype == "string":
        # Text, and a number written as one ("12345" as 12345); empty text (an empty body) is a
        # value. A boolean or a list is no text: its repr would pass for the record's value.
        return values.astype("str"), _of_types(values, _NOT_TEXT) | _too_long(values)
    present = values.notna().to_numpy() & ~blank_cells(values)
    if dtype == "datetime":
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            out = pd.to_datetime(values, utc=True)
        else:
            out = pd.to_datetime(values.where(present), utc=True, format="ISO8601", errors="coerce")
            out = out.where(~partial_dates(values))  # "2025" is no instant of a record
        out = out.dt.as_unit("us")
        return out, present & out.isna().to_numpy()
    if dtype == "bool":
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("boolean"), np.zeros(len(values), dtype=bool)
        text = values.where(present).map(lambda v: str(v).strip().lower(), na_action="ignore")
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[text.isin(_TRUE).to_numpy()] = True
        out[text.isin(_FALSE).to_numpy()] = False
        return out, present & out.isna().to_numpy()
    if dtype == "int" and pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("Int64"), np.zeros(len(values), dtype=bool)
    # int or float from text or mixed objects: parse as numbers, then check integrality.
    text = values.where(present)
    if text.dtype == object or pd.api.types.is_string_dtype(text.dtype):
        text = text.map(lambda v: v.strip() if isinstance(v, str) else v, na_action="ignore")
    number = pd.to_numeric(text, errors="coerce").astype("float64")
    # true is no count or amount (to_numeric makes it 1), as the API says.
    bad = present & (np.isnan(number.to_numpy()) | _of_types(values, (bool, np.bool_)))
    if dtype == "float":
        return number.where(~bad).astype("Float64"), bad
    raw = number.to_numpy()
    with np.errstate(invalid="ignore"):
        fractional = (np.mod(raw, 1) != 0) | (np.abs(raw) >= 2.0**63)
    bad |= present & fractional
    return number.where(~bad).astype("Int64"), bad


def coerce_to_contract(cfg: SystemConfig, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cast the contract's columns to their dtypes; return (typed frame, mask of unparseable cells).

    Text such as ``"3"`` or ``"2024-05-01 11:00"`` parses (naive times are UTC); blank text is
    missing in a typed column. In a string column it stays text where the contract has a flags
    column (ingest's flagged default for a missing string is ""); without one it is missing
    there too, as an empty CSV cell is and as the API refuses it. A value that does not parse
    (``"many"`` in an int column) becomes missing in the typed frame and True in the mask; a
    key (id, entity key) holding a NUL character is True in the mask too. Columns outside the
    contract pass through unchanged.
    """
    typed = raw.copy()
    bad = pd.DataFrame(index=raw.index)
    blank_is_missing = not cfg.data.columns_with("flags")
    for column in cfg.data.columns:
        if column.name not in raw.columns:
            continue
        typed[column.name], bad[column.name] = _coerce_column(raw[column.name], column.dtype)
        if blank_is_missing and column.dtype == "string":
            typed[column.name] = typed[column.name].where(~blank_cells(raw[column.name]))
        if column.role in KEY_ROLES and column.dtype == "string":
            problem = partial(key_problem, role=column.role)
            problems = raw[column.name].map(problem, na_action="ignore")
            bad[column.name] |= problems.notna().to_numpy(dtype=bool)
    return typed, bad
