"""When a message arrived: RFC 2822 dates with obsolete years, checked against the relays.

``Date:`` is written by the sender's software and is often wrong (a broken clock, a forged
spam header, a year written in two or three digits); ``Received:`` lines are stamped by the
relays, the topmost (newest) one by the receiving server. A ``Date:`` far from that hop, or
outside the allowed range, gives way to it.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..timebounds import EARLIEST, LATEST

# A Date: this far from the receiving relay's stamp is a wrong clock or a forged header.
MAX_SKEW = timedelta(days=7)
_SPAN = f"outside the time range the stages can hold ({EARLIEST.date()} .. {LATEST.date()})"
_NUMBER = re.compile(r"(?<![\d:])\d+(?![\d:])")
_ZONE = re.compile(r"[+-]\d{4}(?!\d)")
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2}(?!\d))?"
)


@dataclass(slots=True)
class Arrival:
    """The chosen instant (None when there is none), the flags saying how it was chosen, and
    ``unrepresentable`` naming a date no datetime64[ns] column can hold (the record is
    quarantined for it)."""

    when: datetime | None
    flags: list[str] = field(default_factory=list)
    unrepresentable: str = ""


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
    repairs it needed: ``date:obsolete_year``, ``date:invalid_zone`` (beyond +-24 h: taken as
    UTC, like a missing zone), ``date:nonstandard`` (ISO 8601, not RFC 2822). Never raises."""
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
    if abs(offset) >= 86_400:
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
    if not match:
        return None
    try:
        parsed = datetime.fromisoformat(match.group(0).replace(" ", "T"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def representable(when: datetime) -> bool:
    """True when a datetime64[ns] column can hold ``when``."""
    return EARLIEST <= when <= LATEST


def arrival(
    date: str | None,
    received: Iterable[str],
    envelope: str | None = None,
    bounds: tuple[datetime, datetime] = (EARLIEST, LATEST),
) -> Arrival:
    """Choose when a message arrived from its ``Date:``, ``Received:`` lines (in header order,
    newest first) and mbox ``From `` line, never raising.

    The ``Date:`` wins when it lies within ``bounds`` and within :data:`MAX_SKEW` of the newest
    relay stamp that itself lies within ``bounds``; otherwise that stamp (else the mbox
    separator's date) is used. Flags: ``date:missing``, ``invalid:date`` (unparseable), the
    repairs of :func:`parse_date`, ``date:implausible`` (out of bounds, or too far from the
    relay), ``received_at:received_header`` or ``received_at:mbox_separator`` (the relay's
    stamp was used), ``missing:received_at`` (nothing usable: null).
    """
    low, high = max(bounds[0], EARLIEST), min(bounds[1], LATEST)
    out = Arrival(None)
    stated = None
    if date is None:
        out.flags.append("date:missing")
    else:
        stated, repairs = parse_date(date)
        out.flags.extend(repairs if stated is not None else ["invalid:date"])
    relay, source = _relay(received, envelope, low, high)
    in_bounds = stated is not None and low <= stated <= high
    if in_bounds and (relay is None or abs(stated - relay) <= MAX_SKEW):
        out.when = stated
        return out
    if stated is not None:
        out.flags.append("date:implausible")
    if relay is not None:
        out.when = relay
        out.flags.append(source)
        return out
    if stated is not None and representable(stated):
        out.when = stated  # out of the contract's range: validation quarantines it by name
    elif stated is not None:
        out.unrepresentable = f"Date: {date.strip()[:80]!r} is year {stated.year}, {_SPAN}"
    else:
        out.flags.append("missing:received_at")
    return out


def _relay(received: Iterable[str], envelope: str | None, low: datetime, high: datetime):
    """The newest relay stamp within bounds: the first usable ``Received:`` line, else the
    mbox separator's date; and the flag naming which one it was."""
    for line in received:
        if ";" not in line:
            continue
        when, _ = parse_date(line.rpartition(";")[2])
        if when is not None and low <= when <= high:
            return when, "received_at:received_header"
    if envelope:
        when, _ = parse_date(" ".join(envelope.split()[2:]))
        if when is not None and low <= when <= high:
            return when, "received_at:mbox_separator"
    return None, ""
