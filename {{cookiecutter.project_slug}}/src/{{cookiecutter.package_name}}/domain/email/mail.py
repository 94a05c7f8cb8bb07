"""Parse one RFC 822 message (bytes) into the canonical email fields, never raising.

Uses the standard library ``email`` package with the lenient ``compat32`` policy and decodes
headers and bodies here, so that an unknown charset, a broken MIME structure or bad base64
degrades to a quality flag instead of an exception. A message that is not usable at all (empty,
binary, no mail headers) comes back with a ``reason`` for the quarantine.
"""

from __future__ import annotations

import email
import email.header
import email.utils
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.policy import compat32
from hashlib import sha1
from pathlib import PurePath

from ...predlog.store import KEY_MAX_CHARS
from ...timebounds import EARLIEST, LATEST
from .content import decode_bytes, extract_urls, html_to_text, is_binary
from .maildate import arrival
from .mailsource import BOM

UNKNOWN_SENDER = "unknown@unknown.invalid"
# Headers that make a blob of text an email; any one of them is enough.
MAIL_HEADERS = frozenset(
    [
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "received",
        "return-path",
        "reply-to",
        "sender",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "delivered-to",
        "in-reply-to",
        "references",
        "list-id",
        "dkim-signature",
        "authentication-results",
        "x-mailer",
        "x-original-to",
        "envelope-to",
    ]
)
_HEADER_LINE = re.compile(
    rb"^(?:from|to|subject|date|message-id|received|content-type|mime-version):[ \t]",
    re.IGNORECASE | re.MULTILINE,
)
_ADDRESS_SYNTAX = re.compile(r"[<>\"():;\\\[\]]")
_MAX_DEPTH = 40
# Built-in table only, so attachment types do not depend on the machine's /etc/mime.types.
_MIME = mimetypes.MimeTypes()


@dataclass(slots=True)
class ParsedMail:
    """Canonical fields of one message (label excluded) and its quality flags, or a reason."""

    fields: dict[str, object] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    reason: str | None = None
    detail: str = ""


def _unescape(value: str) -> tuple[str, str | None]:
    """Undo the parser's surrogate escapes: raw 8-bit header bytes become real text."""
    try:
        value.encode("utf-8")
        return value, None
    except UnicodeEncodeError:
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "replace")
        return decode_bytes(raw, None)


def _decode_header(value: str, flags: list[str]) -> str:
    """Decode RFC 2047 encoded words; a bad word keeps the raw text and flags a defect."""
    value, flag = _unescape(value)
    _add(flags, flag)
    try:
        chunks = email.header.decode_header(value)
    except Exception:
        _add(flags, "mime:defect")
        return value
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            text, flag = decode_bytes(chunk, charset)
            _add(flags, flag)
            out.append(text)
    return _no_nul("".join(out), flags)


def _no_nul(text: str, flags: list[str]) -> str:
    """Text without NUL characters: transport damage, never content, and a NUL breaks
    consumers that end strings at it (C libraries, PostgreSQL text)."""
    if "\x00" not in text:
        return text
    _add(flags, "nul:removed")
    return text.replace("\x00", "")


def _add(flags: list[str], flag: str | None) -> None:
    if flag and flag not in flags:
        flags.append(flag)


def _headers(msg: Message) -> dict[str, list[str]]:
    """Raw header values by lower-case name, unfolded."""
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        unfolded = re.sub(r"\r?\n[ \t]*", " ", str(value)).strip()
        headers.setdefault(str(name).strip().lower(), []).append(unfolded)
    return headers


def _addresses(values: list[str]) -> list[str]:
    """Lower-case addresses (addr-spec) in address headers; display names are ignored."""
    found = []
    for value in values:
        value = _unescape(value)[0]
        if not _ADDRESS_SYNTAX.search(value):  # bare addresses: no need for the full parser
            bare = [a.strip().lower() for a in value.split(",") if a.strip()]
            if not any(" " in a or "\t" in a for a in bare):
                found.extend(bare)
                continue
        try:
            pairs = email.utils.getaddresses([value])
        except Exception:
            pairs = []
        addrs = [addr.strip().strip("<>").lower() for _, addr in pairs if addr.strip()]
        if not any("@" in a for a in addrs):  # fall back to anything that looks like one
            addrs = [
                a.lower() for a in re.findall(r"[^\s<>,;:\"']{1,200}@[^\s<>,;:\"']+", value[:4000])
            ] or addrs
        found.extend(addrs)
    return found


def _extension(part: Message, ctype: str) -> str:
    """The attachment type: the file name's extension, else one derived from the MIME type."""
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    if "=?" in name:
        name = _decode_header(name, [])
    suffix = PurePath(name.strip().replace("\\", "/")).suffix.lower().lstrip(".")
    if re.fullmatch(r"[a-z0-9]{1,10}", suffix):
        return suffix
    if ctype.startswith("message/"):
        return "eml"
    guessed = _MIME.guess_extension(ctype) or ""
    return guessed.lstrip(".") or re.sub(r"[^a-z0-9]+", "", ctype.split("/")[-1])[:10] or "bin"


class _Walk:
    """Collects bodies, URLs, attachments and inline images from a MIME tree."""

    def __init__(self, flags: list[str]) -> None:
        self.flags = flags
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[str] = []
        self.inline_images = 0
        self.parts: list[Message] = []

    def text(self, part: Message) -> str:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = str(payload or "").encode("utf-8", "surrogateescape")
        try:
            charset = part.get_content_charset()
        except Exception:
            charset = None
        text, flag = decode_bytes(payload, charset)
        _add(self.flags, flag)
        return _no_nul(text, self.flags).replace("\r\n", "\n").replace("\r", "\n")

    def walk(self, part: Message, parent: str = "", depth: int = 0) -> None:
        self.parts.append(part)
        if depth > _MAX_DEPTH:
            _add(self.flags, "mime:defect")
            return
        ctype = part.get_content_type()
        if ctype.startswith("message/"):  # a forwarded message is an attachment, not body text
            self.attachments.append(_extension(part, ctype))
            return
        if part.is_multipart():
            for sub in part.get_payload():
                self.walk(sub, ctype, depth + 1)
            return
        if ctype.startswith("multipart/"):  # declared multipart, no parts: a broken boundary
            recovered = _recover_multipart(part, ctype)
            if recovered is not None:
                self.walk(recovered, parent, depth + 1)
            else:
                self.plain.append(self.text(part))
            return
        disposition = part.get_content_disposition()
        try:
            named = bool(part.get_filename())
        except Exception:
            named = False
        textual = ctype in ("text/plain", "text/html") and disposition != "attachment"
        if textual and (not named or disposition == "inline"):
            (self.plain if ctype == "text/plain" else self.html).append(self.text(part))
            return
        embedded = (
            disposition == "inline" or part.get("Content-ID") or parent == "multipart/related"
        )
        if ctype.startswith("image/") and disposition != "attachment" and embedded:
            self.inline_images += 1
            return
        self.attachments.append(_extension(part, ctype))


def _recover_multipart(part: Message, ctype: str) -> Message | None:
    """Re-parse a multipart whose declared boundary never occurs, using the one that does."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return None
    match = re.search(r"^--([^\s\"]{1,70}?)(?:--)?[ \t]*\r?$", payload, re.MULTILINE)
    if not match:
        return None
    head = f'Content-Type: {ctype}; boundary="{match.group(1)}"\n\n'
    rebuilt = email.message_from_string(head + payload, policy=compat32)
    return rebuilt if rebuilt.is_multipart() else None


Bounds = tuple[datetime, datetime]


def parse_message(
    data: bytes, envelope: str | None = None, bounds: Bounds = (EARLIEST, LATEST)
) -> ParsedMail:
    """Parse one message; never raises (an unexpected error becomes reason ``parse_error``).
    ``bounds`` is the allowed range of the arrival time (see :func:`.maildate.arrival`)."""
    try:
        return _parse(data, envelope, bounds)
    except RecursionError:  # thousands of nested multiparts: the standard parser recurses
        return ParsedMail(reason="mime_too_deep", detail="MIME parts nested too deep to parse")
    except Exception as exc:  # the last line of defence: nothing crashes the run
        return ParsedMail(reason="parse_error", detail=f"{type(exc).__name__}: {exc}"[:300])


def parse_batch(items: list, bounds: Bounds = (EARLIEST, LATEST)) -> list[ParsedMail]:
    """Parse a batch of mail items (worker-process entry point; items carry data/error)."""
    out = []
    for item in items:
        if item.error:
            out.append(ParsedMail(reason=item.error, detail=item.detail))
        else:
            out.append(parse_message(item.data, item.envelope, bounds))
    return out


def _parse(data: bytes, envelope: str | None, bounds: Bounds) -> ParsedMail:
    if not data.strip():
        return ParsedMail(reason="empty")
    if is_binary(data):
        return ParsedMail(reason="binary_content")
    flags: list[str] = []
    raw = data
    data = data.removeprefix(BOM)  # a UTF-8 byte order mark some editors write
    if b"\x00" in data:  # a few stray NULs in otherwise text mail (binary is caught above)
        data = data.replace(b"\x00", b"")
        flags.append("nul:removed")
    msg = email.message_from_bytes(data, policy=compat32)
    headers = _headers(msg)
    if not MAIL_HEADERS.intersection(headers):
        # Mail headers further down mean a damaged header block, not some other document.
        damaged = _HEADER_LINE.search(data[:4096])
        if damaged:
            return ParsedMail(reason="malformed_headers", detail="header block does not parse")
        return ParsedMail(reason="not_an_email", detail="no mail headers")

    message_id = _unescape(headers.get("message-id", [""])[0])[0].strip()
    if not message_id or len(message_id) > KEY_MAX_CHARS["id"]:
        # No header line is longer than 998 characters (RFC 5322): such an id is damage, and
        # cutting it could make two messages one.
        flags.append("invalid:message_id" if message_id else "missing:message_id")
        message_id = f"<{sha1(raw).hexdigest()[:24]}@ingest.invalid>"
    date = headers["date"][0] if "date" in headers else None
    when = arrival(
        None if date is None else _unescape(date)[0],
        (_unescape(v)[0] for v in headers.get("received", [])),
        envelope,
        bounds,
    )
    if when.unrepresentable:
        return ParsedMail(reason="timestamp_out_of_range", detail=when.unrepresentable)
    flags.extend(f for f in when.flags if f not in flags)
    received_at = when.when

    senders = _addresses(headers.get("from", []) or headers.get("sender", []))
    # A display name alone ("From: Bob") or a bare local part is no usable sender key.
    sender = next((a for a in senders if "@" in a and a.rpartition("@")[2].strip(".>")), "")
    if not sender:
        sender = UNKNOWN_SENDER
        flags.extend(["missing:sender", "missing:sender_domain"])
    domain = sender.rpartition("@")[2].strip(".>")
    reply = _addresses(headers.get("reply-to", []))
    recipients = len(_addresses(headers.get("to", []) + headers.get("cc", [])))
    recipients += len(_addresses(headers.get("bcc", [])))
    if recipients == 0:  # undisclosed recipients: at least the mailbox we read it from
        flags.append("missing:recipient_count")
    subject = None
    if "subject" in headers:
        subject = " ".join(_decode_header(headers["subject"][0], flags).split())

    walk = _Walk(flags)
    walk.walk(msg)
    plain = [t.strip() for t in walk.plain if t.strip()]
    urls: list[str] = []
    for text in plain:
        urls.extend(extract_urls(text))
    if plain:
        body, content_type = "\n".join(plain), "text/plain"
    elif any(t.strip() for t in walk.html):
        body, links = html_to_text("\n".join(walk.html))
        body, content_type = body.strip(), "text/html"
        urls.extend(links + extract_urls(body))
    else:
        body, content_type = "", "text/plain"
    if not body:  # none, or HTML that shows no text (an image, a link alone)
        flags.append("missing:body")
    # Defects are recorded while payloads are decoded, so look at them last.
    if any(part.defects for part in walk.parts):
        _add(flags, "mime:defect")

    fields = {
        "message_id": message_id,
        "received_at": received_at,
        "sender": sender,
        "sender_domain": domain,
        "reply_to": reply[0] if reply else None,
        "recipient_count": max(recipients, 1),
        "subject": subject,
        "body": body,
        "content_type": content_type,
        "urls": " ".join(dict.fromkeys(urls)),
        "attachment_count": len(walk.attachments),
        "attachment_types": ",".join(walk.attachments),
        "inline_image_count": walk.inline_images,
    }
    return ParsedMail(fields=fields, flags=flags)
