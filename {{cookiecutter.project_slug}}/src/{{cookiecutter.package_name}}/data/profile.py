"""Propose the contract's ``data.columns`` from a table the user brings (CSV / TSV / Parquet / JSONL).

:func:`read_sample` (:mod:`.sample`) reads at most ``rows`` records from the start of the file;
:func:`propose` infers each column's dtype, role, nullability and checks, each with a one-line
reason. Only what the rows show is proposed; the user reviews it (``data profile``) before
``--write`` puts it in ``configs/system.yaml`` (:mod:`.contract_write`).

Dtypes follow what validation's coercion reads: text stays text unless its values parse
(``true``/``false``, integers without leading zeros, decimals, ISO 8601 times). Roles come from
the values first and the column name second: ``id`` is unique per row, ``label`` has two values
(the minority is proposed as the positive class), ``timestamp`` is the main time column,
``entity_key`` (optional) repeats ids with many distinct values and a name like ``user`` or
``*_id``. A few strays (at most ``STRAY_SHARE`` of the rows: a typo, "n/a", a repeated id, a
third label value) do not change a proposal: the notes name them, and validation quarantines
their rows.
Ranges are widened so that tomorrow's records still pass: numbers by the observed span on each
side (never below 0 when no negative value was seen), dates from January 1st of the year
before the earliest.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from ..timebounds import EARLIEST, LATEST
from .sample import FORMATS, READ_ROWS, ProfileError, Sample, read_sample

# The readers live in .sample; the CLI and tests reach them through this module too.
__all__ = ["FORMATS", "READ_ROWS", "ProfileError", "Sample", "propose", "read_sample"]

MAX_ALLOWED = 20  # categorical columns with at most this many values get an allowed list
MAX_AHEAD_DAYS = 36_500  # the contract's limit on max_ahead_days
MOSTLY_MARGIN = 0.02  # a nullable column's `mostly` sits this far below the observed share
# A column is proposed as what nearly all its values show when at most this share of the rows
# read breaks it (a typo, "n/a", one duplicate id, one stray label): validation then
# quarantines those rows, and the profile names them, instead of one value turning a number
# into text or taking a column's role away.
STRAY_SHARE = 0.001
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

LABEL_WORDS = {"label", "target", "class", "y", "outcome", "fraud", "fraudulent", "churn"}
LABEL_WORDS |= {"churned", "default", "defaulted", "converted", "clicked", "anomaly", "malicious"}
ID_WORDS = {"id", "uuid", "guid", "ref", "reference", "key", "no", "number", "num", "txn"}
TIME_WORDS = {"ts", "time", "timestamp", "datetime", "date", "at", "created", "occurred", "event"}
ENTITY_WORDS = {"id", "user", "account", "acct", "card", "customer", "client", "member"}
ENTITY_WORDS |= {"device", "author", "merchant", "session", "ip", "login", "phone", "payer"}
ENTITY_WORDS |= {"holder", "owner", "entity", "no", "number", "num", "pan", "iban"}

_INT = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(
    r"^[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)(e[+-]?[0-9]+)?$|^[+-]?(inf|infinity)$", re.I
)
_ISO = re.compile(
    r"^\d{4}-\d{2}(-\d{2})?([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_BOOL = {"true", "false"}
_INT_MAX = 2**62  # past this, ints do not survive the stages' int64 / float handling


@dataclass
class ColumnProposal:
    """One source column: its contract entry (None: left out) and why."""

    source: str
    spec: dict[str, Any] | None
    reason: str
    epoch: bool = False  # a datetime held as epoch numbers: `data ingest` converts it

    @property
    def name(self) -> str:
        return self.spec["name"] if self.spec else self.source


@dataclass
class Profile:
    """The proposal for a whole file."""

    columns: list[ColumnProposal]
    rows: int
    positive_class: str | None = None
    negative_class: str | None = None
    positive_rate: float | None = None
    notes: list[str] = field(default_factory=list)
    padded_label: str | None = None  # the label column, when its values hold outer spaces

    @property
    def specs(self) -> list[dict[str, Any]]:
        return [c.spec for c in self.columns if c.spec]

    def missing_roles(self) -> list[str]:
        """Roles the contract needs exactly once that the proposal lacks (an entity key is
        optional: records without one train without entity history; so is the timestamp:
        records without one are split at random, stratified by label)."""
        roles = [s["role"] for s in self.specs]
        return [r for r in ("id", "label") if r not in roles]

    @property
    def mapping(self) -> dict[str, str]:
        """Source column -> contract name, for the columns whose name had to change."""
        return {c.source: c.spec["name"] for c in self.columns if c.spec and c.source != c.name}

    @property
    def needs_ingest(self) -> list[str]:
        """Why validation cannot read the file as it is (renamed or epoch columns)."""
        why = [f"column {s!r} is renamed {n!r}" for s, n in self.mapping.items()]
        why += [f"{c.source} holds epoch seconds" for c in self.columns if c.epoch]
        if self.padded_label:  # validation compares them as they are; ingest strips them
            why.append(f"the values of {self.padded_label!r} have spaces around them")
        return why


# --------------------------------------------------------------------------- one column


@dataclass
class _Facts:
    """What the values of one column show."""

    dtype: str | None  # None: nothing to propose (empty, nested values)
    why: str = ""  # when dtype is string although some values look typed
    values: pd.Series | None = None  # typed present values (numbers, UTC times, str, bool)
    epoch: bool = False
    strays: int = 0  # present values that are not of ``dtype`` (at most STRAY_SHARE of them)
    stray: str = ""  # one of them


def _allowed_strays(rows: int) -> int:
    return int(rows * STRAY_SHARE)


def _present(series: pd.Series) -> pd.Series:
    """Values that are there: not null, NaN or NaT, nor text holding only whitespace."""
    values = series[series.notna()].astype(object)
    blank = values.map(lambda v: isinstance(v, str) and not v.strip())
    return values[~blank.astype(bool)]


def _kinds(values: pd.Series) -> set[str]:
    def kind(v: object) -> str:
        if isinstance(v, bool | np.bool_):
            return "bool"
        if isinstance(v, int | np.integer):
            return "int"
        if isinstance(v, float | np.floating):
            return "float"
        if isinstance(v, date | pd.Timestamp | np.datetime64):
            return "datetime"
        if isinstance(v, Decimal):
            return "float"
        if isinstance(v, str):
            return "str"
        return "nested"

    return set(values.map(kind))


def _facts(name: str, series: pd.Series) -> _Facts:
    values = _present(series)
    if values.empty:
        return _Facts(None, "empty in every row read")
    kinds = _kinds(values)
    if "nested" in kinds:
        return _Facts(None, "nested values (lists / objects): left out")
    if kinds == {"bool"}:
        return _Facts("bool", values=values.astype(bool))
    if kinds == {"datetime"}:
        return _times(values) or _Facts("string", "times out of range", values.astype(str))
    if kinds <= {"int", "float"}:
        return _numbers(name, values, all_int=kinds == {"int"})
    if kinds != {"str"}:
        shown = ", ".join(sorted(kinds - {"str"}))
        return _Facts("string", f"text mixed with {shown}", values.map(str))
    text = values.map(str.strip)
    if text.str.lower().isin(_BOOL).all():
        return _Facts("bool", values=text.str.lower().eq("true"))
    if text.str.fullmatch(_INT).all():
        return _numbers(name, text.map(int), all_int=True)
    if text.str.fullmatch(_FLOAT).all():
        return _numbers(name, text.map(float), all_int=False)
    if text.str.fullmatch(_ISO).all():
        facts = _times(text)
        if facts is not None:
            return facts
    typed = _nearly_typed(name, text)
    if typed is not None:
        return typed
    looks = text.str.fullmatch(_FLOAT) | text.str.fullmatch(_ISO)
    odd = text[~looks]
    why = ""
    if looks.mean() >= 0.5 and len(odd):
        why = f"mostly numbers or times, but also {odd.iloc[0][:20]!r} ({len(odd):,} such)"
    return _Facts("string", why, values.map(str))


def _nearly_typed(name: str, text: pd.Series) -> _Facts | None:
    """Numbers or times when all but a few values (``STRAY_SHARE``) read as such."""
    allowed = _allowed_strays(len(text))
    if not allowed:
        return None
    readers = (
        (_INT, lambda t: _numbers(name, t.map(int), all_int=True)),
        (_FLOAT, lambda t: _numbers(name, t.map(float), all_int=False)),
        (_ISO, _times),
    )
    for pattern, read in readers:
        match = text.str.fullmatch(pattern).to_numpy(dtype=bool)
        strays = int((~match).sum())
        if 0 < strays <= allowed:
            facts = read(text[match])
            if facts is not None and facts.dtype != "string":
                facts.strays, facts.stray = strays, str(text[~match].iloc[0])[:20]
                return facts
    return None


def _times(values: pd.Series) -> _Facts | None:
    """UTC times, or None when a value does not parse or is beyond what a contract can hold."""
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):
        return None
    if parsed.isna().any():
        return None
    ahead = datetime.now(UTC) + timedelta(days=MAX_AHEAD_DAYS)
    low, high = pd.Timestamp(EARLIEST), pd.Timestamp(min(LATEST, ahead))
    if ((parsed < low) | (parsed > high)).any():
        return None
    return _Facts("datetime", values=parsed)


def _numbers(name: str, values: pd.Series, all_int: bool) -> _Facts:
    if all_int and (values.map(abs) >= _INT_MAX).any():
        return _Facts("string", "integers beyond int64", values.map(str))
    as_float = values.astype(float)
    if all_int:
        epoch = _epoch(name, as_float)
        return epoch or _Facts("int", values=values.astype("int64"))
    finite = as_float[np.isfinite(as_float)]
    if finite.empty:
        return _Facts("string", "no finite number", values.map(str))
    return _epoch(name, as_float) or _Facts("float", values=as_float)


def _epoch(name: str, numbers: pd.Series) -> _Facts | None:
    """Numbers in a time-named column, all within 1973..2286 as epoch seconds."""
    if not _words(name) & TIME_WORDS or not np.isfinite(numbers).all():
        return None
    if not ((numbers >= 1e8) & (numbers < 1e10)).all():
        return None
    return _Facts("datetime", values=pd.to_datetime(numbers, unit="s", utc=True), epoch=True)


def _words(name: str) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return set(re.split(r"[^a-z0-9]+", spaced.lower())) - {""}


def contract_name(name: str, taken: set[str]) -> str:
    """A name the contract accepts (letters, digits, _), unique among ``taken``."""
    if NAME.fullmatch(name):
        base = name
    else:
        base = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "column"
        base = base if re.match(r"[A-Za-z_]", base) else f"c_{base}"
    out, i = base, 2
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    return out


# --------------------------------------------------------------------------- the whole file


def propose(frame: pd.DataFrame, now: datetime | None = None) -> Profile:
    """Propose a contract entry for every column of ``frame`` (see the module docstring)."""
    now = now or datetime.now(UTC)
    n = len(frame)
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    if frame.columns.has_duplicates:
        repeated = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise ProfileError(f"duplicate column names: {', '.join(map(repr, repeated))}")
    facts = {c: _facts(c, frame[c]) for c in frame.columns}
    filled = {c: int(len(f.values)) if f.values is not None else 0 for c, f in facts.items()}
    distinct = {c: int(f.values.nunique()) if f.values is not None else 0 for c, f in facts.items()}
    roles: dict[str, tuple[str, str]] = {}  # column -> (role, reason)

    def pick(role: str, candidates: list[tuple[tuple, str, str]]) -> None:
        if candidates:
            _, column, reason = max(candidates, key=lambda c: c[0])
            roles[column] = (role, reason)

    # label: two values; a name like label / target / is_fraud, or the only such column
    # The classes as `data ingest` reads them: without the spaces around them (", 1").
    raw = {c: _present(frame[c]).map(lambda v: str(v).strip()) for c in facts}
    binary = [c for c, f in facts.items() if f.dtype and _two_values(raw[c]) is not None]
    hinted = [c for c in binary if _words(c) & LABEL_WORDS]
    label = [
        ((c.strip().lower() in LABEL_WORDS, i), c, f"2 values, name {c!r}")
        for i, c in enumerate(hinted)
    ]
    if not label and len(binary) == 1:
        label = [((0,), binary[0], "the only column with 2 values")]
    pick("label", label)
    # id: unique per row, text or integers (an id-like name: a few repeats, quarantined)
    unique = [
        c
        for c, f in facts.items()
        if c not in roles
        and f.dtype in ("string", "int")
        and filled[c] == n
        and (distinct[c] == n or (_words(c) & ID_WORDS and n - distinct[c] <= _allowed_strays(n)))
    ]
    pick(
        "id",
        [
            ((distinct[c] == n, bool(_words(c) & ID_WORDS), -i), c, "unique per row")
            for i, c in enumerate(unique)
        ],
    )
    # timestamp: a time-like name, times of day (not dates alone), fewest gaps, most distinct
    times = [c for c, f in facts.items() if c not in roles and f.dtype == "datetime"]
    pick(
        "timestamp",
        [
            (
                (bool(_words(c) & TIME_WORDS), _has_clock(facts[c].values), filled[c], distinct[c]),
                c,
                _time_reason(c, facts[c]),
            )
            for c in times
        ],
    )
    # entity key: repeated ids with many distinct values and a name like account / user_id;
    # its history is point-in-time, so only records with a time have one
    has_time = "timestamp" in {role for role, _ in roles.values()}
    keys = [
        c
        for c, f in facts.items()
        if has_time
        and c not in roles
        and f.dtype in ("string", "int")
        and _words(c) & ENTITY_WORDS
        and MAX_ALLOWED < distinct[c] < filled[c]
    ]
    pick(
        "entity_key",
        [
            (
                (distinct[c],),
                c,
                f"{distinct[c]:,} values, repeated; name {c!r}",
            )
            for c in keys
        ],
    )

    columns, taken = [], set()
    for column, f in facts.items():
        role, reason = roles.get(column, (None, ""))
        spec, why = _spec(column, f, role, n, filled[column], distinct[column], now)
        if spec is not None:
            spec = {"name": contract_name(column, taken), **spec}
            taken.add(spec["name"])
        columns.append(
            ColumnProposal(column, spec, reason or why, epoch=f.epoch and spec is not None)
        )
    profile = Profile(columns, n)
    for column, f in facts.items():
        label = roles.get(column, ("",))[0] == "label"  # its values are text classes
        if f.strays and not label and column in {c.source for c in columns if c.spec}:
            profile.notes.append(
                f"{column}: {f.strays:,} value(s) not {f.dtype} (e.g. {f.stray!r}): validation "
                "will quarantine their rows"
            )
    for column, (role, _) in roles.items():
        if role == "id" and distinct[column] < n:
            profile.notes.append(
                f"{column}: {n - distinct[column]:,} repeated value(s): validation will "
                "quarantine their rows (unique)"
            )
        if role == "label":
            others = raw[column].value_counts().iloc[2:]
            if len(others):
                profile.notes.append(
                    f"{column}: {int(others.sum()):,} row(s) hold another value than the two "
                    f"classes (e.g. {str(others.index[0])[:20]!r}): validation will quarantine them"
                )
            _classes(profile, raw[column])
            if (_present(frame[column]).map(str) != raw[column]).any():
                profile.padded_label = column
        if role in ("id", "label", "timestamp", "entity_key") and filled[column] < n:
            profile.notes.append(
                f"{column}: {n - filled[column]:,} rows without a value (or unreadable) will be "
                "quarantined"
            )
    return profile


def _two_values(values: pd.Series) -> pd.Series | None:
    """The counts of a column's two values, when all but a few rows hold one of them."""
    counts = values.value_counts()
    if len(counts) < 2 or counts.iloc[2:].sum() > _allowed_strays(len(values)):
        return None
    return counts.iloc[:2]


def _has_clock(times: pd.Series) -> bool:
    """Whether some time is not at midnight: an event's time rather than a day's date."""
    return bool((times != times.dt.normalize()).any())


def _time_reason(column: str, f: _Facts) -> str:
    how = "epoch seconds" if f.epoch else "times"
    return how + (f", name {column!r}" if _words(column) & TIME_WORDS else ", the first")


def _classes(profile: Profile, values: pd.Series) -> None:
    """The minority value is the positive class (on a tie: 1 / true / yes, else the later).
    ``values`` are written as validation's string coercion writes them (``1``, ``True``)."""
    counts = _two_values(values)  # the two classes: a stray value is not one
    ranked = sorted(
        counts.index, key=lambda v: (counts[v], v.lower() not in ("1", "true", "yes"), v)
    )
    positive, negative = ranked[0], ranked[1]
    profile.positive_class, profile.negative_class = positive, negative
    profile.positive_rate = counts[positive] / counts.sum()
    for column in profile.columns:
        if column.spec and column.spec["role"] == "label":
            column.spec["allowed"] = [positive, negative]
            column.reason += f"; minority {positive!r} ({profile.positive_rate:.1%}) positive"


def _spec(
    column: str, f: _Facts, role: str | None, n: int, filled: int, distinct: int, now: datetime
) -> tuple[dict[str, Any] | None, str]:
    """The contract entry of one column (without its name) and why, when no role claimed it."""
    if f.dtype is None:
        return None, f.why
    spec: dict[str, Any] = {"dtype": f.dtype}
    why = f.why
    if role == "label":
        spec["dtype"] = "string"  # the contract's classes are strings
    elif role is None:
        role, why = _other_role(column, f, n, filled, distinct)
        if role is None:
            return None, why
    spec["role"] = role
    spec.update(_nulls(n, filled, role))
    if role == "id":
        spec["unique"] = True
    if role in ("id", "label", "entity_key", "text", "flags"):
        return spec, why
    if f.dtype in ("int", "float"):
        spec.update(_number_range(f.values, f.dtype))
        why = why or _range_reason(f.values, spec)
    elif f.dtype == "datetime":
        spec.update(_time_range(f.values, now, main=role == "timestamp"))
    elif role == "categorical" and f.dtype == "string" and distinct <= MAX_ALLOWED:
        spec["allowed"] = sorted(f.values.unique(), key=str)
    return spec, why


def _other_role(column: str, f: _Facts, n: int, filled: int, distinct: int):
    words = _words(column)
    if f.dtype in ("int", "float"):
        return "numeric", ""
    if f.dtype == "datetime":
        return "datetime", "a time, not the main one"
    if f.dtype == "bool":
        return "categorical", "true / false"
    if "flags" in words and distinct <= max(MAX_ALLOWED, filled // 2):
        return "flags", f"name {column!r}"
    lengths = f.values.str.len()
    spaces = f.values.str.count(r"\s+")
    if lengths.mean() >= 25 and spaces.mean() >= 3 and distinct >= 0.3 * filled:
        return (
            "text",
            f"free text (mean {lengths.mean():.0f} characters, {distinct / filled:.0%} distinct)",
        )
    if distinct == filled == n and n > MAX_ALLOWED:
        return None, "unique per row (another id): left out"
    if distinct <= MAX_ALLOWED:
        return "categorical", f"{distinct} values" + (f" ({f.why})" if f.why else "")
    return "categorical", f"{distinct:,} distinct values" + (f" ({f.why})" if f.why else "")


def _nulls(n: int, filled: int, role: str) -> dict[str, Any]:
    if filled == n or role in ("id", "label", "timestamp", "entity_key"):
        return {"nullable": False}
    mostly = math.floor(max(filled / n - MOSTLY_MARGIN, 0.0) * 100) / 100
    return {"nullable": True, "mostly": mostly}


def _nice(value: float, up: bool) -> float:
    """``value`` rounded outward to two significant digits."""
    if value == 0 or not math.isfinite(value):
        return value
    step = 10.0 ** (math.floor(math.log10(abs(value))) - 1)
    try:
        rounded = (math.ceil if up else math.floor)(value / step) * step
        return float(f"{rounded:.12g}")
    except OverflowError:  # past the largest float: no bound
        return math.inf


def _number_range(values: pd.Series, dtype: str) -> dict[str, Any]:
    finite = values[np.isfinite(values.astype(float))].astype(float)
    if finite.empty:
        return {}
    low, high = float(finite.min()), float(finite.max())
    span = (high - low) or max(abs(high), 1.0)
    lo = 0.0 if low >= 0 else _nice(low - span, up=False)
    hi = _nice(high + span, up=True)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return {}
    if dtype == "int":
        lo, hi = max(math.floor(lo), -_INT_MAX), min(math.ceil(hi), _INT_MAX)
        return {"min": int(lo), "max": int(hi)}
    return {"min": lo, "max": hi}


def _range_reason(values: pd.Series, spec: dict[str, Any]) -> str:
    if "min" not in spec:
        return "numbers too large to widen: no range"
    finite = values[np.isfinite(values.astype(float))].astype(float)
    low, high = finite.min(), finite.max()
    floor = ", none negative: from 0" if spec["min"] == 0 and low >= 0 else ""
    return f"seen {low:g}..{high:g}, widened by the span{floor}"


def _time_range(values: pd.Series, now: datetime, main: bool) -> dict[str, Any]:
    earliest = values.min().to_pydatetime()
    low = max(datetime(max(earliest.year - 1, 1678), 1, 1, tzinfo=UTC), EARLIEST)
    out: dict[str, Any] = {"min": low.date().isoformat()}
    latest = values.max().to_pydatetime()
    ahead = (latest - now).total_seconds() / 86400
    if ahead > 0:  # dates in the future (expiry, schedule): allow as far again
        out["max_ahead_days"] = min(math.ceil(ahead * 2) + 1, MAX_AHEAD_DAYS)
    elif main:
        out["max_ahead_days"] = 1  # clocks run ahead: a day of slack keeps those records
    return out
