"""Ingest real mail or a labelled table into the contract's schema; quarantine what breaks.

Sources: a CSV / TSV, JSONL or Parquet file (columns renamed through ``data.column_mapping``),
a folder tree of ``.eml`` / plain message files, or an mbox file. Labels come from a label
column, from folder names (``data.label_folders``, the deepest matching folder wins), or from a
labels CSV (``message_id`` or ``file`` + ``label``), which beats both.

Malformed input never crashes the run and is never silently dropped: a record that can be
repaired is kept with ``quality_flags``; one that cannot goes to the quarantine with a reason
and its original bytes. ``read == ingested + quarantined`` always holds. Entries of a mail
folder that are not read at all (symbolic links leaving the folder, links to what was
already read, broken links, FIFOs) are listed in ``skipped``, by path, without their content.

Quality flags (comma-separated): ``missing:<column>`` (filled with a documented default, or
null), ``invalid:<column>``, ``received_at:row_order`` (no timestamp column: one second apart
from ``ROW_ORDER_EPOCH`` in file order), the ``Date:`` flags of :func:`.maildate.arrival`
(``date:missing``, ``invalid:date``, ``date:obsolete_year``, ``date:implausible``, ...,
``received_at:received_header``, ``received_at:mbox_separator``), ``nul:removed``,
``charset:unknown``, ``charset:fallback``, ``mime:defect``.
Quarantine reasons: ``unparseable_row``, ``unreadable_file``, ``no_label``, ``unmappable_label``,
``empty``, ``binary_content``, ``not_an_email``, ``malformed_headers``, ``too_large``,
``timestamp_out_of_range`` (no datetime64[ns] column can hold it), ``mime_too_deep``,
``parse_error``.
"""

from __future__ import annotations

import multiprocessing
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import chain, islice
from pathlib import Path

import pandas as pd

from ..config import SystemConfig
from . import mail, mailsource, tabular
from .canonical import (
    ROW_ORDER_EPOCH,
    canonicalise,
    distinct_generated_ids,
    flag_notes,
    to_contract_frame,
)
from .labels import id_key, label_of, label_table, load_labels, normalise_labels
from .mailsource import MailItem, Skipped
from .tabular import excerpt
from .text import is_binary

__all__ = [
    "ROW_ORDER_EPOCH",
    "IngestCounts",
    "IngestResult",
    "Skipped",
    "detect_format",
    "ingest",
    "normalise_labels",
    "quarantine_path",
    "run",
]

FORMATS = ("csv", "tsv", "parquet", "jsonl", "eml", "mbox")
_ALIASES = {"ndjson": "jsonl", "json": "jsonl", "pq": "parquet", "mailbox": "mbox"}
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".mbox": "mbox",
    ".mbx": "mbox",
    ".eml": "eml",
}
QUARANTINE_COLUMNS = ["source", "location", "reason", "excerpt"]
# Messages parsed per task when worker processes are used; one batch never starts a pool.
MAIL_BATCH = 64
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:[ \t]")


@dataclass
class IngestCounts:
    """How many records were read, ingested and quarantined (by reason), and how many
    entries of a mail folder were not read at all (by reason)."""

    read: int = 0
    ingested: int = 0
    quarantined: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line, e.g. ``read 3, ingested 2, quarantined 1 (binary_content 1)``."""
        line = f"read {self.read:,}, ingested {self.ingested:,}, quarantined {self.quarantined:,}"
        line += _reasons(self.by_reason)
        if self.skipped:
            line += f", skipped {self.skipped:,}" + _reasons(self.skipped_by_reason)
        return line


def _reasons(counts: dict[str, int]) -> str:
    if not counts:
        return ""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return " (" + ", ".join(f"{r} {n:,}" for r, n in ordered) + ")"


@dataclass
class IngestResult:
    """Canonical records, the quarantine (one row per rejected record) and the counts."""

    records: pd.DataFrame
    quarantine: pd.DataFrame
    counts: IngestCounts
    notes: list[str] = field(default_factory=list)
    quarantine_raw: list[bytes | None] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    format: str = ""
    seconds: float = 0.0


class _Quarantine:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []
        self.raw: list[bytes | None] = []

    def add(self, source: str, location: str, reason: str, detail: str, raw: bytes | None):
        self.rows.append((source, location, reason, excerpt(raw, detail)))
        self.raw.append(raw)


def quarantine_path(out: str | Path) -> Path:
    """Where :func:`run` writes the quarantine next to ``out``: ``emails.quarantine.parquet``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.quarantine{out.suffix or '.parquet'}")


def detect_format(source: Path, fmt: str | None = None) -> str:
    """The source's format: the ``fmt`` given, else from the suffix, else from the content."""
    if fmt:
        name = _ALIASES.get(fmt.strip().lower().lstrip("."), fmt.strip().lower().lstrip("."))
        if name not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
        if source.is_dir() and name not in ("eml", "mbox"):
            raise ValueError(f"{source} is a folder: format {name} needs a file")
        return name
    if source.is_dir():
        return "eml"
    if source.suffix.lower() in _SUFFIXES:
        return _SUFFIXES[source.suffix.lower()]
    with open(source, "rb") as handle:
        head = handle.read(4096)
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if head.startswith(b"PAR1"):
        return "parquet"
    if mailsource.is_separator(first):
        return "mbox"
    if not head.strip() or _HEADER_LINE.match(first) or is_binary(head):
        return "eml"  # a single message; empty or binary content is quarantined as such
    if head.lstrip()[:1] == b"{":
        return "jsonl"
    if any(sep in first for sep in (b",", b"\t", b";")):
        return "csv"
    raise ValueError(f"cannot tell the format of {source}: pass a format ({', '.join(FORMATS)})")


def ingest(
    cfg: SystemConfig,
    source: str | Path,
    *,
    fmt: str | None = None,
    labels_file: str | Path | None = None,
    workers: int = 1,
    progress: bool = False,
) -> IngestResult:
    """Read ``source`` into the contract's schema (see the module docstring).

    Raises FileNotFoundError for a missing source or labels file and ValueError for an unknown
    format or a labels file without the needed columns; bad content never raises.
    """
    started = time.perf_counter()
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    name = detect_format(source, fmt)
    labels = load_labels(cfg, Path(labels_file)) if labels_file is not None else None
    quarantine = _Quarantine()
    skipped: list[Skipped] = []
    with _progress(progress, f"ingesting {source.name or source}") as tick:
        if name in ("eml", "mbox"):
            skip = {Path(labels_file).resolve()} if labels_file is not None else set()
            items = _mail_items(cfg, source, name, skip, skipped)
            frame, read, notes = _ingest_mail(cfg, items, labels, workers, quarantine, tick)
        else:
            frame, read, notes = _ingest_table(cfg, source, name, labels, quarantine, tick)
    frame = distinct_generated_ids(cfg, frame)
    reasons = Counter(row[2] for row in quarantine.rows)
    counts = IngestCounts(read, len(frame), len(quarantine.rows), dict(sorted(reasons.items())))
    counts.skipped = len(skipped)
    counts.skipped_by_reason = dict(sorted(Counter(s.reason for s in skipped).items()))
    notes = list(dict.fromkeys(notes)) + flag_notes(cfg, frame)
    return IngestResult(
        records=frame,
        quarantine=pd.DataFrame(quarantine.rows, columns=QUARANTINE_COLUMNS, dtype=object),
        counts=counts,
        notes=notes,
        quarantine_raw=quarantine.raw,
        skipped=skipped,
        format=name,
        seconds=time.perf_counter() - started,
    )


def run(
    cfg: SystemConfig,
    source: str | Path,
    out: str | Path,
    *,
    fmt: str | None = None,
    labels_file: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> IngestResult:
    """Ingest ``source`` and write the records to ``out`` (Parquet, contract schema) and the
    quarantine, with reason and raw bytes, to :func:`quarantine_path` (removed when empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    result = ingest(
        cfg, source, fmt=fmt, labels_file=labels_file, workers=workers, progress=progress
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema(
        [(c.name, types.get(c.dtype, pa.timestamp("us", tz="UTC"))) for c in cfg.data.columns]
    )
    _write(pa.Table.from_pandas(result.records, schema=schema, preserve_index=False), out, pq)
    side = quarantine_path(out)
    if result.counts.quarantined:
        table = pa.table(
            {
                **{
                    c: pa.array(result.quarantine[c].tolist(), pa.string())
                    for c in QUARANTINE_COLUMNS
                },
                "raw": pa.array(result.quarantine_raw, pa.binary()),
            }
        )
        _write(table, side, pq)
    else:
        side.unlink(missing_ok=True)  # a stale quarantine must not pass for this run's
    return result


def _write(table, path: Path, pq) -> None:
    # Write then rename: a reader never sees half a file.
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial)
    partial.replace(path)


# --------------------------------------------------------------------------- tables


def _ingest_table(cfg, source: Path, fmt: str, labels, quarantine: _Quarantine, tick):
    readers = {
        "csv": tabular.read_csv,
        "tsv": lambda p: tabular.read_csv(p, delimiter="\t"),
        "jsonl": tabular.read_jsonl,
        "parquet": tabular.read_parquet,
    }
    lookup = (lambda mid: labels.get(id_key(mid))) if labels is not None else None
    frames, notes, read = [], [], 0
    for chunk in readers[fmt](source):
        frame, rejected, chunk_notes = canonicalise(cfg, chunk, lookup)
        frames.append(frame)
        notes.extend(chunk_notes)
        for r in rejected:
            quarantine.add(str(source), r.location, r.reason, r.detail, r.raw)
        read += len(chunk.index) + len(chunk.rejected)
        tick(len(chunk.index) + len(chunk.rejected))
    frames = [f for f in frames if len(f)]
    return to_contract_frame(cfg, pd.concat(frames) if frames else None), read, notes


# --------------------------------------------------------------------------- mail


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


# --------------------------------------------------------------------------- shared


@contextmanager
def _progress(enabled: bool, description: str) -> Iterator[Callable[[int], None]]:
    """A records counter on stderr; no refresh thread, so forking worker processes is safe."""
    if not enabled:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}: {task.completed:,.0f} records"))
    with Progress(
        *columns,
        TimeElapsedColumn(),
        console=Console(stderr=True),
        auto_refresh=False,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        last = [0.0]

        def tick(n: int = 1) -> None:
            bar.advance(task, n)
            now = time.monotonic()
            if now - last[0] > 0.2:
                last[0] = now
                bar.refresh()

        yield tick
        bar.refresh()
