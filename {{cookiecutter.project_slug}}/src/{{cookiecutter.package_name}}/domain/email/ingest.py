"""Mail sources for ``data ingest``: a folder tree of ``.eml`` / plain message files, or mbox.

Labels come from folder names (``data.label_folders``, the deepest matching folder wins) or
from a labels CSV (``message_id`` or ``file`` + ``label``), which beats them: a message's id
first, then its path under the source, then its file name (the most specific key given wins);
a key the file gives both classes quarantines its messages (``conflicting_label``). Messages are
parsed in batches, in worker processes when there is more than one batch (``mail.parse_batch``);
what cannot be parsed goes to the quarantine with its reason and original bytes.

The core's ingest (``data.ingest``) asks this module through the pack: ``FORMATS``,
``SUFFIXES``, ``ALIASES``, ``FOLDER_FORMAT``, ``sniff`` and ``read``.
"""

from __future__ import annotations

import multiprocessing
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from functools import partial
from itertools import chain, islice
from pathlib import Path

import pandas as pd

from ...config import SystemConfig
from ...data.canonical import to_contract_frame
from ...data.labels import LabelConflict, id_key, label_of, label_table
from . import mail, mailsource
from .content import is_binary
from .mailsource import MailItem

FORMATS = ("eml", "mbox")
SUFFIXES = {".mbox": "mbox", ".mbx": "mbox", ".eml": "eml"}
ALIASES = {"mailbox": "mbox"}
# A folder is a tree of message files.
FOLDER_FORMAT = "eml"
# Messages parsed per task when worker processes are used; one batch never starts a pool.
MAIL_BATCH = 64
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:[ \t]")


def sniff(head: bytes) -> str | None:
    """``mbox`` or ``eml`` when the first bytes of a file look like mail, else None."""
    first = head.removeprefix(mailsource.BOM).split(b"\n", 1)[0].rstrip(b"\r")
    if mailsource.is_separator(first):
        return "mbox"
    if not head.strip() or _HEADER_LINE.match(first) or is_binary(head):
        return "eml"  # a single message; empty or binary content is quarantined as such
    return None


def read(cfg, source: Path, fmt: str, labels, *, workers, quarantine, tick, skip, skipped):
    """Ingest a mail folder or file: (canonical frame, messages read, notes)."""
    items = _mail_items(cfg, source, fmt, skip, skipped)
    return _ingest_mail(cfg, items, labels, workers, quarantine, tick)


def _mail_items(cfg, source: Path, fmt: str, skip: set[Path], skipped) -> Iterator[MailItem]:
    folders = {cls.lower(): cls for cls in (cfg.problem.positive_class, cfg.problem.negative_class)}
    for cls, names in cfg.data.label_folders.items():
        folders.update({n.strip().lower(): cls for n in names})
    if source.is_dir():
        return mailsource.iter_tree(source, folders, skip, skipped)
    return mailsource.iter_file(source, folders, mbox=fmt == "mbox")


def _ingest_mail(cfg, items: Iterable[MailItem], labels, workers, quarantine, tick):
    table = label_table(cfg)
    label_col = cfg.data.column("label").name
    flags_col = next((c.name for c in cfg.data.columns_with("flags")), None)
    rows, read = [], 0
    for item, parsed in _parse_all(items, workers, timestamp_bounds(cfg)):
        read += 1
        tick(1)
        if parsed.reason:
            quarantine.add(item.source, item.location, parsed.reason, parsed.detail, item.data)
            continue
        raw_label = None
        if labels:
            keys = (parsed.fields["message_id"], *item.names)
            raw_label = next((labels[id_key(k)] for k in keys if id_key(k) in labels), None)
        if isinstance(raw_label, LabelConflict):
            quarantine.add(
                item.source, item.location, "conflicting_label", raw_label.detail(), item.data
            )
            continue
        label = item.label if raw_label is None else label_of(table, raw_label)
        if label is None:
            reason = "no_label" if raw_label is None else "unmappable_label"
            detail = "" if raw_label is None else f"label {raw_label!r}"
            quarantine.add(item.source, item.location, reason, detail, item.data)
            continue
        row = dict(parsed.fields)
        row[label_col] = label
        if flags_col:
            row[flags_col] = ",".join(parsed.flags)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else None)
    notes = [] if rows or not read else ["no message could be ingested"]
    return to_contract_frame(cfg, frame), read, notes


def _batches(items: Iterable[MailItem], size: int) -> Iterator[list[MailItem]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def timestamp_bounds(cfg: SystemConfig) -> mail.Bounds:
    """The range the contract allows the timestamp column today: a message's ``Date:``
    outside it gives way to its relays' stamps (validation enforces the same range)."""
    return cfg.data.column("timestamp").time_bounds(datetime.now(UTC))


def _parse_all(items: Iterable[MailItem], workers: int, bounds: mail.Bounds):
    """(item, parsed) pairs in input order; worker processes (fork, Linux) when there is more
    than one batch, at most ``2 * workers`` batches in flight so memory stays flat."""
    parse = partial(mail.parse_batch, bounds=bounds)
    batches = _batches(items, MAIL_BATCH)
    head = list(islice(batches, 2))
    parallel = workers > 1 and len(head) > 1 and sys.platform.startswith("linux")
    if not parallel:
        for batch in chain(head, batches):
            yield from zip(batch, parse(batch), strict=True)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque = deque()
        for batch in chain(head, batches):
            pending.append((batch, pool.submit(parse, batch)))
            if len(pending) >= 2 * workers:
                yield from _collect(*pending.popleft(), parse)
        while pending:
            yield from _collect(*pending.popleft(), parse)


def _collect(batch: list[MailItem], future, parse):
    try:
        parsed = future.result()
    except Exception:  # a worker died (memory, signal): parse this batch here instead
        parsed = parse(batch)
    return zip(batch, parsed, strict=True)
