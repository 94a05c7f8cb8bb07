"""A hostile raw-mail corpus, generated (never downloaded): the oddities real archives hold.

Each :class:`Case` is one message file with the outcome ingest must reach: kept with a quality
flag (``flag``), quarantined with a reason (``reason``), or not read at all and reported
(``skip``, the symbolic links). ``expect`` holds field values the repaired record must have.
:func:`write_tree` lays the cases out as a labelled folder tree, :func:`mbox_of` packs them
into one mbox, :func:`render` turns a canonical record (e.g. from the synthetic generator) into
an ordinary RFC 822 message, to mix with the hostile ones.
"""

from __future__ import annotations

import base64
import os
import quopri
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pandas as pd

# The hostile messages sit inside the synthetic corpus' month, so a time split keeps them.
BASE = datetime(2025, 3, 12, 9, 30, tzinfo=UTC)
CRLF = b"\r\n"


@dataclass(frozen=True)
class Case:
    """One hostile message and what ingest must make of it."""

    name: str
    data: bytes
    flag: str | None = None
    reason: str | None = None
    skip: str | None = None
    expect: dict[str, object] = field(default_factory=dict)
    # Kept by ingest but out of the contract's time range: validation must quarantine it.
    out_of_range: bool = False


def rfc_date(when: datetime, year: str | None = None) -> str:
    """``Wed, 12 Mar 2025 09:30:00 +0000``, with the year token replaced by ``year``."""
    text = format_datetime(when.astimezone(UTC))
    if year is not None:
        text = text.replace(f" {when.year} ", f" {year} ", 1)
    return text


def received(when: datetime, relay: str = "mx.example.org") -> str:
    return f"from relay.example.net by {relay} with ESMTP id x1; {rfc_date(when)}"


def message(
    headers: list[tuple[str, str | bytes]],
    body: bytes | str = b"An ordinary line of text.",
    *,
    ident: str,
    subject: str | bytes | None = None,
    sender: str = "Sender <sender@hostile.example>",
) -> bytes:
    """Raw bytes of a message: From / To / Subject / Message-ID, then ``headers``, then body."""
    head: list[tuple[str, str | bytes]] = [
        ("From", sender),
        ("To", "victim@example.org"),
        ("Subject", f"hostile {ident}" if subject is None else subject),
        ("Message-ID", f"<{ident}@hostile.example>"),
        *headers,
    ]
    lines = [
        name.encode() + b": " + (value if isinstance(value, bytes) else value.encode("utf-8"))
        for name, value in head
    ]
    raw = body if isinstance(body, bytes) else body.encode("utf-8")
    return CRLF.join(lines) + CRLF + CRLF + raw.replace(b"\r\n", b"\n").replace(b"\n", CRLF)


def _dated(ident: str, date: str | None, hop: datetime | None, **kw) -> bytes:
    headers: list[tuple[str, str | bytes]] = []
    if hop is not None:
        headers.append(("Received", received(hop)))
    if date is not None:
        headers.append(("Date", date))
    return message(headers, ident=ident, **kw)


def _multipart(ident: str, boundary: str, parts: list[bytes], declared: str | None = None):
    body = b"".join(b"--" + boundary.encode() + CRLF + p + CRLF for p in parts)
    body += b"--" + boundary.encode() + b"--" + CRLF
    ctype = f'multipart/mixed; boundary="{declared or boundary}"'
    return message(
        [("Date", rfc_date(BASE)), ("MIME-Version", "1.0"), ("Content-Type", ctype)],
        body,
        ident=ident,
    )


def _part(ctype: str, payload: bytes, encoding: str | None = None) -> bytes:
    head = b"Content-Type: " + ctype.encode() + CRLF
    if encoding:
        head += b"Content-Transfer-Encoding: " + encoding.encode() + CRLF
    return head + CRLF + payload


def _date_cases() -> list[Case]:
    hop = BASE + timedelta(minutes=3)
    two = f"{BASE.year % 100:02d}"
    three = str(BASE.year - 1900)
    return [
        Case(
            "year_three_digits.eml",
            _dated("y3", rfc_date(BASE, three), hop),
            flag="date:obsolete_year",
            expect={"received_at": pd.Timestamp(BASE)},
        ),
        Case(
            "year_three_digits_alone.eml",
            _dated("y3a", rfc_date(BASE, three), None),
            flag="date:obsolete_year",
            expect={"received_at": pd.Timestamp(BASE)},
        ),
        Case(
            "year_two_digits.eml",
            _dated("y2", rfc_date(BASE, two), hop),
            flag="date:obsolete_year",
            expect={"received_at": pd.Timestamp(BASE)},
        ),
        Case(  # 50-99 are 19xx (the standard library alone makes 2055 of "55")
            "year_two_digits_55.eml",
            _dated("y55", rfc_date(BASE.replace(year=1955), "55"), hop),
            flag="date:implausible",
            expect={"received_at": pd.Timestamp(hop)},
        ),
        Case(
            "no_date.eml",
            _dated("nodate", None, hop),
            flag="date:missing",
            expect={"received_at": pd.Timestamp(hop)},
        ),
        Case(
            "no_date_no_received.eml",
            _dated("nothing", None, None),
            flag="missing:received_at",
            expect={"received_at": pd.NaT},
            out_of_range=True,  # null: validation quarantines it
        ),
        Case(
            "unparseable_date.eml",
            _dated("garbled", "the 32nd of Smarch, teatime", hop),
            flag="invalid:date",
            expect={"received_at": pd.Timestamp(hop)},
        ),
        Case(
            "date_1985.eml",
            _dated("old", rfc_date(BASE.replace(year=1985)), hop),
            flag="received_at:received_header",
            expect={"received_at": pd.Timestamp(hop)},
        ),
        Case(
            "date_2099.eml",
            _dated("ahead", rfc_date(BASE.replace(year=2099)), hop),
            flag="date:implausible",
            expect={"received_at": pd.Timestamp(hop)},
        ),
        Case(  # nothing better to go on: kept, and the contract's range keeps it out
            "date_1985_alone.eml",
            _dated("old-alone", rfc_date(BASE.replace(year=1985)), None),
            flag=None,
            expect={"received_at": pd.Timestamp(BASE.replace(year=1985))},
            out_of_range=True,
        ),
        Case(
            "date_2099_alone.eml",
            _dated("ahead-alone", rfc_date(BASE.replace(year=2099)), None),
            flag=None,
            expect={"received_at": pd.Timestamp(BASE.replace(year=2099))},
            out_of_range=True,
        ),
        Case(  # a four-digit year no datetime64[ns] column can hold, and no relay stamp
            "year_0102.eml",
            _dated("y0102", "Mon, 22 Aug 0102 04:07:35 +0000", None),
            reason="timestamp_out_of_range",
        ),
        Case(
            "year_1500_received.eml",
            _dated("y1500", "Mon, 22 Aug 1500 04:07:35 +0000", hop),
            flag="date:implausible",
            expect={"received_at": pd.Timestamp(hop)},
        ),
        Case(  # a plausible year, but two months before the receiving relay stamped it
            "date_far_from_relay.eml",
            _dated("skew", rfc_date(BASE - timedelta(days=60)), hop),
            flag="date:implausible",
            expect={"received_at": pd.Timestamp(hop)},
        ),
        Case(  # a slow relay path or a wrong clock within a week: the sender's Date: stands
            "date_near_relay.eml",
            _dated("near", rfc_date(BASE - timedelta(days=6)), hop),
            expect={"received_at": pd.Timestamp(BASE - timedelta(days=6))},
        ),
        Case(
            "leap_second_and_zone.eml",
            _dated("leap", "Wed, 12 Mar 2025 09:29:60 +9999", hop),
            flag="date:invalid_zone",
            expect={"received_at": pd.Timestamp("2025-03-12T09:29:59Z")},
        ),
    ]


def _content_cases() -> list[Case]:
    date = ("Date", rfc_date(BASE))
    text = "Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9"
    qp = quopri.encodestring(text.encode("utf-8"))
    return [
        Case(
            "nul_in_header.eml",
            message([date], ident="nulh", subject=b"Hel\x00lo th\x00ere"),
            flag="nul:removed",
            expect={"subject": "Hello there"},
        ),
        Case(
            "nul_in_body.eml",
            message([date], b"first\x00 line\nsecond line", ident="nulb"),
            flag="nul:removed",
            expect={"body": "first line\nsecond line"},
        ),
        Case(
            "nul_in_base64.eml",
            message(
                [date, ("Content-Transfer-Encoding", "base64")],
                base64.b64encode(b"decoded\x00 text"),
                ident="nul64",
            ),
            flag="nul:removed",
            expect={"body": "decoded text"},
        ),
        Case(  # UTF-16: half of it NUL bytes
            "utf16_file.eml",
            message([date], "body", ident="u16").decode().encode("utf-16"),
            reason="binary_content",
        ),
        Case(
            "broken_boundary.eml",
            _multipart(
                "boundary",
                "ACTUAL",
                [_part("text/plain", b"text behind a wrong boundary")],
                declared="DECLARED",
            ),
            flag="mime:defect",
            expect={"body": "text behind a wrong boundary"},
        ),
        Case(
            "unterminated_multipart.eml",
            message(
                [date, ("Content-Type", 'multipart/mixed; boundary="B"')],
                b"--B\nContent-Type: text/plain\n\nno closing boundary",
                ident="unterminated",
            ),
            flag="mime:defect",
            expect={"body": "no closing boundary"},
        ),
        Case(
            "unknown_charset.eml",
            message(
                [date, ("Content-Type", "text/plain; charset=x-unheard-of")],
                text.encode("utf-8"),
                ident="charset",
            ),
            flag="charset:unknown",
            expect={"body": text},
        ),
        Case(  # says ASCII, carries UTF-8
            "lying_charset_ascii.eml",
            message(
                [date, ("Content-Type", "text/plain; charset=us-ascii")],
                text.encode("utf-8"),
                ident="lie1",
            ),
            flag="charset:fallback",
            expect={"body": text},
        ),
        Case(  # says UTF-8, carries Windows-1252
            "lying_charset_utf8.eml",
            message(
                [date, ("Content-Type", "text/plain; charset=utf-8")],
                text.encode("cp1252"),
                ident="lie2",
            ),
            flag="charset:fallback",
            expect={"body": text},
        ),
        Case(  # UTF-7 can spell a lone surrogate, which no UTF-8 writer (Parquet) accepts
            "utf7_lone_surrogate.eml",
            message(
                [date, ("Content-Type", "text/plain; charset=utf-7")],
                b"+2D8-tail",
                ident="utf7",
            ),
            flag="charset:fallback",
            expect={"body": "\ufffdtail"},
        ),
        Case(  # a codec that is not a text encoding
            "codec_charset.eml",
            message(
                [date, ("Content-Type", "text/plain; charset=base64")],
                b"plain words",
                ident="codec",
            ),
            flag="charset:unknown",
            expect={"body": "plain words"},
        ),
        Case(  # raw UTF-8 in headers is RFC 6532: read as it is, no repair needed
            "utf8_header.eml",
            message([date], ident="h8", subject=text.encode("utf-8")),
            expect={"subject": text},
        ),
        Case(  # raw Latin-1 in a header is damage: decoded by the fallback
            "latin1_header.eml",
            message([date], ident="h8l", subject=text.encode("latin-1")),
            flag="charset:fallback",
            expect={"subject": text},
        ),
        Case(
            "encoded_word_bad_charset.eml",
            message([date], ident="ew", subject="=?x-klingon?q?Qapla=27?="),
            flag="charset:unknown",
            expect={"subject": "Qapla'"},
        ),
        Case(
            "html_only.eml",
            message(
                [date, ("Content-Type", "text/html; charset=utf-8")],
                "<html><body><p>Visit <a href='https://win.example/x'>us</a></p>"
                "<script>evil()</script></body></html>",
                ident="html",
            ),
            expect={
                "content_type": "text/html",
                "body": "Visit us",
                "urls": "https://win.example/x",
            },
        ),
        Case(
            "base64_body.eml",
            message(
                [
                    date,
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Transfer-Encoding", "base64"),
                ],
                base64.encodebytes(text.encode("utf-8")),
                ident="b64",
            ),
            expect={"body": text},
        ),
        Case(
            "quoted_printable_body.eml",
            message(
                [
                    date,
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Transfer-Encoding", "quoted-printable"),
                ],
                qp,
                ident="qp",
            ),
            expect={"body": text},
        ),
        Case(
            "broken_base64.eml",
            message(
                [date, ("Content-Transfer-Encoding", "base64")],
                b"SGVsbG8gd29y!!!not base64 at all***bGQ",
                ident="bad64",
            ),
            flag="mime:defect",
        ),
        Case(  # attachments are counted, never decoded: their damage changes no field
            "broken_base64_attachment.eml",
            _multipart(
                "bad64att",
                "P",
                [
                    _part("text/plain", b"see attached"),
                    _part("application/pdf; name=x.pdf", b"%%%%", encoding="base64"),
                ],
            ),
            expect={"body": "see attached", "attachment_count": 1, "attachment_types": "pdf"},
        ),
        Case(
            "huge_header.eml",
            message([date], ident="huge", subject="spam " * 60_000),
            expect={"subject": " ".join(["spam"] * 60_000)},
        ),
        Case(
            "many_received.eml",
            message(
                [*[("Received", received(BASE)) for _ in range(3_000)], date],
                ident="hops",
            ),
            expect={"received_at": pd.Timestamp(BASE)},
        ),
        Case(
            "empty_body.eml",
            message([date], b"", ident="emptybody"),
            flag="missing:body",
            expect={"body": ""},
        ),
        Case(  # nested deeper than the standard library's parser can recurse
            "nested_multipart.eml",
            message(
                [date, ("Content-Type", 'multipart/mixed; boundary="b0"')],
                b"".join(
                    b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                    for i in range(3_000)
                ),
                ident="nested",
            ),
            reason="mime_too_deep",
        ),
        Case("empty_file.eml", b"", reason="empty"),
        Case("garbage.eml", bytes(range(256)) * 8, reason="binary_content"),
        Case("not_mail.eml", b"just some notes\nwithout any header\n", reason="not_an_email"),
    ]


def cases() -> list[Case]:
    """Every hostile message (the symbolic links are made by :func:`write_tree`)."""
    return _date_cases() + _content_cases()


LINK_CASES = {
    "link_to_system_file.eml": "link_outside_tree",
    "link_to_outside_mail.eml": "link_outside_tree",
    "link_to_inside_mail.eml": "link_already_read",
    "link_loop": "link_already_read",
    "dangling_link.eml": "broken_link",
}


def write_tree(root: Path, outside: Path, positive: str, negative: str) -> dict[str, Case]:
    """Write the cases into ``root/<positive>`` and ``root/<negative>`` (alternating), plus
    links out of the tree (to a "system" file and an ``.eml`` in ``outside``), a link to a
    message inside, a link back up the tree and a dangling link. Returns path -> case."""
    written: dict[str, Case] = {}
    for i, case in enumerate(cases()):
        folder = root / (positive if i % 2 else negative)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / case.name).write_bytes(case.data)
        written[str(folder / case.name)] = case
    outside.mkdir(parents=True, exist_ok=True)
    secret = outside / "shadow"
    secret.write_bytes(b"root:SECRET-HASH:19000:0:99999:7:::\n")
    stray = outside / "stray.eml"
    stray.write_bytes(message([("Date", rfc_date(BASE))], ident="stray"))
    links = root / positive
    os.symlink(secret, links / "link_to_system_file.eml")
    os.symlink(stray, links / "link_to_outside_mail.eml")
    os.symlink(next(iter(written)), links / "link_to_inside_mail.eml")
    os.symlink(root, links / "link_loop")
    os.symlink(links / "vanished.eml", links / "dangling_link.eml")
    for name, reason in LINK_CASES.items():
        written[str(links / name)] = Case(name, b"", skip=reason)
    return written


def mbox_of(items: list[Case], *, envelope_date: datetime = BASE) -> bytes:
    """The cases as one mbox (mboxrd quoting, LF line ends as mbox files have)."""
    stamp = envelope_date.strftime("%a %b %d %H:%M:%S %Y").encode()
    out = []
    for case in items:
        body = case.data.replace(CRLF, b"\n")
        lines = [
            (b">" + line if line.lstrip(b">").startswith(b"From ") else line)
            for line in body.split(b"\n")
        ]
        out.append(b"From mailer@hostile.example " + stamp + b"\n" + b"\n".join(lines) + b"\n")
    return b"\n".join(out)


def render(row: dict) -> bytes:
    """An ordinary RFC 822 message carrying a canonical record's fields (synthetic corpus)."""
    msg = EmailMessage()
    msg["From"] = row["sender"]
    count = max(int(row["recipient_count"]), 1)
    msg["To"] = ", ".join(f"user{k}@recipients.example" for k in range(count))
    if isinstance(row.get("reply_to"), str) and row["reply_to"]:
        msg["Reply-To"] = row["reply_to"]
    if isinstance(row.get("subject"), str):
        msg["Subject"] = row["subject"]
    when = pd.Timestamp(row["received_at"]).to_pydatetime()
    msg["Received"] = received(when + timedelta(seconds=2))
    msg["Date"] = rfc_date(when)
    msg["Message-ID"] = row["message_id"]
    subtype = "html" if row["content_type"] == "text/html" else "plain"
    msg.set_content(row["body"] or " ", subtype=subtype)
    types = [t for t in str(row.get("attachment_types") or "").split(",") if t]
    for k, ext in enumerate(types):
        msg.add_attachment(
            b"attachment", maintype="application", subtype="octet-stream", filename=f"file{k}.{ext}"
        )
    return msg.as_bytes()
