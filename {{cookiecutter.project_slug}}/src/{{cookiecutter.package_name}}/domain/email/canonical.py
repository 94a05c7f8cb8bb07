"""Mail columns of an ingested table, repaired the way a mail reader would.

``canonical_column`` handles the columns only mail has (by their default names) and the
sender: an address is taken out of a display form (``"Jo" <jo@x.org>``), the sender's domain
comes from the address when missing, ``content_type`` is sniffed from the body when absent or
unknown, ``urls`` are found in the body when the column is missing, and attachment types are
lower case. Any other column is the
core's (``data.canonical``): it returns None.
"""

from __future__ import annotations

import email.utils

from ...data.canonical import as_text, string_values
from .content import extract_urls, looks_like_html
from .mail import UNKNOWN_SENDER


def _address(value: str) -> str:
    value = value.strip()
    if "<" in value or " " in value or '"' in value:
        value = email.utils.parseaddr(value)[1] or value
    return value.strip().strip("<>").lower()


def _bodies(cols, n: int) -> list[str]:
    _, values, missing = cols.get("body", text=True)
    return ["" if m else as_text(v) for v, m in zip(values, missing, strict=True)][:n]


def canonical_column(cfg, col, cols, out: dict) -> list | None:
    """The canonical values of ``col`` when it is a mail column, else None."""
    name, n = col.name, cols.n
    sender_col = cfg.data.entity
    if name == sender_col:
        _, values, missing = cols.get(name)
        cols.flag(missing, f"missing:{name}")
        return [
            UNKNOWN_SENDER if m else _address(as_text(v))
            for v, m in zip(values, missing, strict=True)
        ]
    if name == "sender_domain":
        _, values, missing = cols.get(name)
        senders = out.get(sender_col) or [UNKNOWN_SENDER] * n
        domains = []
        for i, (v, m) in enumerate(zip(values, missing, strict=True)):
            sender = senders[i]
            if not m:
                domains.append(as_text(v).strip().lower())
            elif sender != UNKNOWN_SENDER and "@" in sender:
                domains.append(sender.rpartition("@")[2])
            else:
                domains.append(UNKNOWN_SENDER.partition("@")[2])
                cols.flags[i].append(f"missing:{name}")
        return domains
    if name == "content_type":
        _, values, missing = cols.get(name, text=True)
        allowed = set(col.allowed or ["text/plain", "text/html"])
        given = [
            None if m else str(v).split(";")[0].strip().lower()
            for v, m in zip(values, missing, strict=True)
        ]
        return [
            g if g in allowed else "text/html" if looks_like_html(b) else "text/plain"
            for g, b in zip(given, _bodies(cols, n), strict=True)
        ]
    if name == "reply_to":
        return [t if t is None else _address(t) for t in string_values(col, cols)]
    if name == "attachment_types":
        return [t if t is None else t.lower() for t in string_values(col, cols, ",")]
    if name == "urls":
        _, values, missing = cols.get(name, text=True)
        return [
            " ".join(dict.fromkeys(extract_urls(b))) if m else as_text(v, " ")
            for v, m, b in zip(values, missing, _bodies(cols, n), strict=True)
        ]
    return None
