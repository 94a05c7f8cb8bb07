"""Dates as people and programs write them: RFC 2822 (obsolete years too) or ISO 8601.

``parse_date`` reads one value into UTC and says what it had to repair; the ingest of tables
(``canonical.py``) and the domain packs' readers use it. Never raises.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from ..timebounds import EARLIEST, LATEST

_NUMBER = re.compile(r"(?<![\d:])\d+(?![\d:])")
_ZONE = re.compile(r"[+-]\d{4}(?!\d)")
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2}(?!\d))?"
)
# A zone the standard library reads: an offset, or a name it knows. "-0000" says the zone is
# unknown (RFC 5322 3.3), as does any other name: it reads them all as +0000.
_KNOWN_ZONE = re.compile(
    r"(?<![\w+-])(?:[+-](?!0000)\d{4}|\+0000|UTC?|GMT|Z|[ECMP][SD]T)(?!\w)", re.IGNORECASE
)
# A year, or a year and a month, alone.
_PARTIAL = re.compile(r"\s*\d{4}(?:-\d{1,2})?\s*")
# After an ISO time: nothing, a zone name or a comment, e.g. " UTC" or " (GMT)".
_ZONE_NOTE = re.compile(r"\s*(?:\(?(?:UTC|GMT|UT|Z)\)?|\([^()]*\))?\s*", re.IGNORECASE)


def _python_year(token: int) -> int:
    """The year the standard library makes of a year token (POSIX rule for two digits)."""
    if token < 100:
        return token + (1900 if token > 68 else 2000)
    return token


def _rfc_year(value: str, year: int) -> tuple[int, bool]:
    """The year as RFC 2822 section 4.3 reads it, and whether it was an obsolete form.

    Two digits: 00-49 are 20xx, 50-99 are 19xx; three digits add 1900. The standard library
    maps 50-68 to 20xx and leaves three digits as they are, so the token is looked up again.
    """
    numbers = _NUMBER.findall(_ZONE.sub(" ", value))
    tokens = [t for t in numbers if _python_year(int(t)) == year]
    if not tokens or len(tokens[-1]) >= 4:
        return year, False
    token = int(tokens[-1])
    if len(tokens[-1]) == 3:
        return token + 1900, True
    return token + (2000 if token < 50 else 1900), True


def parse_date(value: str) -> tuple[datetime | None, list[str]]:
    """A date header value as UTC (None when unparseable or no real calendar date) and the
    repairs it needed: ``date:obsolete_year``, ``date:no_zone`` (none, ``-0000`` or a name it
    does not know: taken as UTC, hours off if the writer meant local time), ``date:invalid_zone``
    (beyond +-24 h: taken as UTC too), ``date:nonstandard`` (ISO 8601, not RFC 2822). Never
    raises."""
    value = value.replace("\x00", " ")[:400]
    try:
        parts = email.utils.parsedate_tz(value)
    except Exception:  # the standard library raises on some garbage instead of returning None
        parts = None
    if parts is None:
        when = _iso(value)
        return when, [] if when is None else ["date:nonstandard"]
    year, obsolete = _rfc_year(value, parts[0])
    flags = ["date:obsolete_year"] if obsolete else []
    offset = parts[9] or 0
    if not _KNOWN_ZONE.search(value):
        flags.append("date:no_zone")
    elif abs(offset) >= 86_400:
        offset = 0
        flags.append("date:invalid_zone")
    try:
        # A leap second (":60") is a real instant; datetime has no room for it.
        naive = datetime(year, parts[1], parts[2], parts[3], parts[4], min(parts[5], 59))
        return naive.replace(tzinfo=UTC) - timedelta(seconds=offset), flags
    except (ValueError, OverflowError):
        return None, flags


def _iso(value: str) -> datetime | None:
    match = _ISO.search(value)
    # What follows the time may only say its zone again: "PM" or a second time would change it.
    if not match or not _ZONE_NOTE.fullmatch(value[match.end() :]):
        return None
    try:
        parsed = datetime.fromisoformat(match.group(0).replace(" ", "T"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def partial_dates(texts: pd.Series) -> np.ndarray:
    """True where a value is text naming only a year or a month ("2025", "2025-03"): ISO 8601
    reads them as its first instant, a time the record never had."""
    if texts.dtype != object and not pd.api.types.is_string_dtype(texts.dtype):
        return np.zeros(len(texts), dtype=bool)
    partial = texts.map(lambda v: isinstance(v, str) and bool(_PARTIAL.fullmatch(v)))
    return partial.fillna(False).to_numpy(dtype=bool)


def representable(when: datetime) -> bool:
    """True when a datetime64[ns] column can hold ``when``."""
    return EARLIEST <= when <= LATEST
