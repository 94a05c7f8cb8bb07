"""Ingest a labelled table, or the domain pack's own sources, into the contract's schema.

Sources: a CSV / TSV, JSONL or Parquet file (columns renamed through ``data.column_mapping``),
or a file or folder in a format the domain pack reads (``DomainPack.reader``). Labels come from
a label column (or the pack's own way, such as folder names), or from a labels CSV (the id
column or ``file``, + ``label``), which beats both.

Malformed input never crashes the run and is never silently dropped: a record that can be
repaired is kept with ``quality_flags``; one that cannot goes to the quarantine with a reason
and its original bytes. ``read == ingested + quarantined`` always holds. Entries of a folder
that are not read at all (links leaving the folder, links to what was already read, broken
links, FIFOs) are listed in ``skipped``, by path, without their content.

Quality flags (comma-separated): ``missing:<column>`` (filled with a documented default, or
null), ``invalid:<column>``, ``<timestamp>:row_order`` (no timestamp column: one second apart
from ``ROW_ORDER_EPOCH`` in file order), and the pack reader's own.
Quarantine reasons: ``unparseable_row``, ``unreadable_file``, ``no_label``, ``unmappable_label``,
``conflicting_label`` (the labels file gives its id both classes), ``timestamp_out_of_range`` (no
datetime64[ns] column can hold it), ``missing_value`` and ``invalid_value`` (a repair a contract
without a flags column could not record), and the pack reader's own.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config import SystemConfig
from ..domain import pack_of
from . import tabular
from .canonical import (
    ROW_ORDER_EPOCH,
    canonicalise,
    distinct_generated_ids,
    flag_notes,
    to_contract_frame,
)
from .labels import id_key, load_labels, normalise_labels
from .tabular import Skipped, excerpt

__all__ = [
    "ROW_ORDER_EPOCH",
    "IngestCounts",
    "IngestResult",
    "Skipped",
    "detect_format",
    "formats",
    "ingest",
    "normalise_labels",
    "quarantine_path",
    "run",
]

TABLE_FORMATS = ("csv", "tsv", "parquet", "jsonl")
_ALIASES = {"ndjson": "jsonl", "json": "jsonl", "pq": "parquet"}
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
QUARANTINE_COLUMNS = ["source", "location", "reason", "excerpt"]


@dataclass
class IngestCounts:
    """How many records were read, ingested and quarantined (by reason), and how many
    entries of a folder were not read at all (by reason)."""

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
    """Where :func:`run` writes the quarantine next to ``out``: ``<name>.quarantine.parquet``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.quarantine{out.suffix or '.parquet'}")


def _reader(cfg: SystemConfig | None):
    """The domain pack's source reader (None without a pack, or when it reads only tables)."""
    pack = pack_of(cfg) if cfg is not None else None
    return pack.reader() if pack is not None and pack.reader is not None else None


def formats(cfg: SystemConfig | None = None) -> tuple[str, ...]:
    """The formats ``data ingest`` reads under this contract: tables, then the pack's."""
    reader = _reader(cfg)
    return TABLE_FORMATS + (tuple(reader.FORMATS) if reader else ())


def detect_format(source: Path, fmt: str | None = None, cfg: SystemConfig | None = None) -> str:
    """The source's format: the ``fmt`` given, else from the suffix, else from the content
    (the pack's formats count when ``cfg`` is given)."""
    reader = _reader(cfg)
    aliases = {**_ALIASES, **(reader.ALIASES if reader else {})}
    suffixes = {**_SUFFIXES, **(reader.SUFFIXES if reader else {})}
    known = formats(cfg)
    if fmt:
        name = aliases.get(fmt.strip().lower().lstrip("."), fmt.strip().lower().lstrip("."))
        if name not in known:
            raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(known)}")
        if source.is_dir() and name in TABLE_FORMATS:
            raise ValueError(f"{source} is a folder: format {name} needs a file")
        return name
    if source.is_dir():
        if reader is None or reader.FOLDER_FORMAT is None:
            raise ValueError(f"{source} is a folder: pass a file ({', '.join(known)})")
        return reader.FOLDER_FORMAT
    if source.suffix.lower() in suffixes:
        return suffixes[source.suffix.lower()]
    with open(source, "rb") as handle:
        head = handle.read(4096)
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if head.startswith(b"PAR1"):
        return "parquet"
    sniffed = reader.sniff(head) if reader else None
    if sniffed:
        return sniffed
    if head.lstrip()[:1] == b"{":
        return "jsonl"
    if any(sep in first for sep in (b",", b"\t", b";")):
        return "csv"
    raise ValueError(f"cannot tell the format of {source}: pass a format ({', '.join(known)})")


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
    name = detect_format(source, fmt, cfg)
    labels = load_labels(cfg, Path(labels_file)) if labels_file is not None else None
    quarantine = _Quarantine()
    skipped: list[Skipped] = []
    with _progress(progress, f"ingesting {source.name or source}") as tick:
        if name not in TABLE_FORMATS:
            skip = {Path(labels_file).resolve()} if labels_file is not None else set()
            frame, read, notes = _reader(cfg).read(
                cfg,
                source,
                name,
                labels,
                workers=workers,
                quarantine=quarantine,
                tick=tick,
                skip=skip,
                skipped=skipped,
            )
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
