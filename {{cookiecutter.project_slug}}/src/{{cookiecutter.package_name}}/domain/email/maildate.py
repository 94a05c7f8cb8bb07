"""When a message arrived: its ``Date:`` (``data.dates.parse_date``) checked against the relays.

``Date:`` is written by the sender's software and is often wrong (a broken clock, a forged
spam header, a year written in two or three digits); ``Received:`` lines are stamped by the
relays, the topmost (newest) one by the receiving server. A ``Date:`` far from that hop, or
outside the allowed range, gives way to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ...data.dates import parse_date, representable
from ...timebounds import EARLIEST, LATEST

# A Date: this far from the receiving relay's stamp is a wrong clock or a forged header.
MAX_SKEW = timedelta(days=7)
_SPAN = f"outside the time range the stages can hold ({EARLIEST.date()} .. {LATEST.date()})"


@dataclass(slots=True)
class Arrival:
    """The chosen instant (None when there is none), the flags saying how it was chosen, and
    ``unrepresentable`` naming a date no datetime64[ns] column can hold (the record is
    quarantined for it)."""

    when: datetime | None
    flags: list[str] = field(default_factory=list)
    unrepresentable: str = ""


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
