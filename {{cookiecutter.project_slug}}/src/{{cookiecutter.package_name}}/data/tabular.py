"""Read foreign tables (CSV, JSONL, Parquet) in chunks, never raising on bad content.

A record a reader cannot read becomes a :class:`Rejected` with its location and raw bytes;
:mod:`.canonical` maps the readable ones onto the contract.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

CHUNK_ROWS = 50_000
# The csv module refuses a field over 128 Ki characters by default; a long text (a message
# body, a document) is a value, not a broken line. Beyond this it is one.
CSV_FIELD_LIMIT = 1 << 26
# Records without a timestamp column get one second apart from this instant, in file order,
# so the time split still has an order to follow (flag ``received_at:row_order``).
ROW_ORDER_EPOCH = "2000-01-01T00:00:00Z"
TIMESTAMP_DTYPE = "datetime64[us, UTC]"
_EXCERPT = 300


class Rejected(NamedTuple):
    """A record that cannot be ingested: where it is, why, and its original bytes."""

    index: int
    location: str
    reason: str
    detail: str
    raw: bytes | None


class Skipped(NamedTuple):
    """A tree entry that was not read: a link leaving the tree (its content must not be
    copied), a link to a file already read, a broken link, or something that is not a file."""

    path: str
    reason: str
    detail: str = ""


@dataclass
class Chunk:
    """Readable records (source columns, raw values) plus the records that were rejected."""

    frame: pd.DataFrame
    index: list[int]
    locations: list[str]
    raw: list[bytes] | None = None  # None: rebuilt from the frame when needed
    flags: list[list[str]] | None = None
    rejected: list[Rejected] = field(default_factory=list)
    blank_is_null: bool = False  # CSV cannot tell an empty string from a missing value

    def raw_of(self, i: int) -> bytes:
        """The original record (or a JSON rendering of a typed row) as bytes."""
        if self.raw is not None:
            return self.raw[i]
        row = {k: plain_value(v) for k, v in self.frame.iloc[i].items()}
        return json.dumps(row, default=str, ensure_ascii=False).encode()


def excerpt(raw: bytes | None, detail: str = "") -> str:
    """A short readable excerpt of a rejected record, prefixed with the detail."""
    text = ""
    if raw is not None:
        text = raw[:_EXCERPT].decode("utf-8", errors="replace").replace("\r\n", "\n")
        text = "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text).strip()
    return f"{detail} | {text}" if detail and text else detail or text


def plain_value(value: object) -> object:
    """A numpy scalar or array as a plain Python value or list."""
    if type(value) is str:
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def allow_long_csv_fields() -> None:
    """Raise the csv module's field limit (process-wide) to ``CSV_FIELD_LIMIT``."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)


allow_long_csv_fields()


def _decode_line(raw: bytes) -> tuple[str, bool]:
    """One physical line as text; cp1252 when it is not UTF-8 (returns the fallback flag)."""
    try:
        text, fallback = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, fallback = raw.decode("cp1252", errors="replace"), True
    if text.endswith("\r\n"):
        text = text[:-2] + "\n"
    return text, fallback


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        name = name.strip() or f"column_{i}"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}.{seen[name] - 1}")
    return out


class _Lines:
    """Physical lines of a byte stream as text for the csv module, remembering the raw bytes
    and the line number of the record being read, and whether a line was not UTF-8."""

    def __init__(self, handle) -> None:
        self.handle, self.raw, self.number, self.fallback = handle, [], 0, False

    def __iter__(self) -> Iterator[str]:
        raw_lines = self.raw
        for raw in self.handle:
            self.number += 1
            raw_lines.append(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("cp1252", errors="replace")
                self.fallback = True
            yield text[:-2] + "\n" if text.endswith("\r\n") else text

    def start_record(self) -> int:
        """Forget the previous record; the number of the line the next one starts on."""
        self.raw.clear()
        self.fallback = False
        return self.number + 1


def read_csv(path: Path, delimiter: str | None = None) -> Iterator[Chunk]:
    """CSV records in chunks; a line that does not parse is rejected with its line number.
    An empty field is a missing value (CSV cannot tell them apart)."""
    allow_long_csv_fields()
    with open(path, "rb") as handle:
        feed = _Lines(handle)
        source = iter(feed)
        first = next(source, None)
        while first is not None and not first.strip():
            first = next(source, None)
        if first is None:
            return
        first = first.removeprefix("\ufeff")
        if delimiter is None:  # the header decides: comma unless another separator dominates
            delimiter = max(",\t;|", key=lambda d: (first.count(d), d == ","))
        header = _unique_names(next(csv.reader([first], delimiter=delimiter), []))
        width = len(header)
        reader = csv.reader(source, delimiter=delimiter)
        chunk, rows, count = _new_chunk(blank_is_null=True), [], 0
        while True:
            start = feed.start_record()
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raw = b"".join(feed.raw)
                chunk.rejected.append(
                    Rejected(count, f"line {start}", "unparseable_row", str(exc), raw)
                )
                count += 1
                continue
            if len(fields) != width:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # blank line: not a record
                while len(fields) > width and not fields[-1].strip():
                    fields.pop()  # a trailing separator is not an extra field
            if len(fields) != width:
                detail = f"expected {width} fields, found {len(fields)}"
                raw = b"".join(feed.raw)
                chunk.rejected.append(
                    Rejected(count, f"line {start}", "unparseable_row", detail, raw)
                )
            else:
                rows.append([f or None for f in fields])
                chunk.index.append(count)
                chunk.locations.append(f"line {start}")
                chunk.raw.append(b"".join(feed.raw))
                chunk.flags.append(["charset:fallback"] if feed.fallback else [])
            count += 1
            if len(rows) >= CHUNK_ROWS:
                chunk.frame = pd.DataFrame(rows, columns=header, dtype=object)
                yield chunk
                chunk, rows = _new_chunk(blank_is_null=True), []
        chunk.frame = pd.DataFrame(rows, columns=header, dtype=object)
        yield chunk


def _new_chunk(blank_is_null: bool = False) -> Chunk:
    return Chunk(pd.DataFrame(), [], [], [], [], blank_is_null=blank_is_null)


def read_jsonl(path: Path) -> Iterator[Chunk]:
    """JSON Lines records in chunks; a line that is not a JSON object is rejected."""
    chunk, rows, count = _new_chunk(), [], 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            text, fallback = _decode_line(raw)
            try:
                row = json.loads(text.removeprefix("\ufeff"))
                problem = "" if isinstance(row, dict) else f"a JSON {type(row).__name__}"
            except (ValueError, RecursionError) as exc:
                problem = f"not JSON: {exc}"
            if problem:
                chunk.rejected.append(
                    Rejected(count, f"line {number}", "unparseable_row", problem, raw)
                )
            else:
                rows.append(row)
                chunk.index.append(count)
                chunk.locations.append(f"line {number}")
                chunk.raw.append(raw)
                chunk.flags.append(["charset:fallback"] if fallback else [])
            count += 1
            if len(rows) >= CHUNK_ROWS:
                chunk.frame = pd.DataFrame(rows, dtype=object)
                yield chunk
                chunk, rows = _new_chunk(), []
    chunk.frame = pd.DataFrame(rows, dtype=object)
    yield chunk


def read_parquet(path: Path) -> Iterator[Chunk]:
    """Parquet row batches; a file (or a part of it) that cannot be read is rejected whole."""
    import pyarrow.parquet as pq

    count = 0
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS)
        for batch in batches:
            frame = batch.to_pandas()
            yield Chunk(
                frame=frame,
                index=list(range(count, count + len(frame))),
                locations=[f"row {i}" for i in range(count, count + len(frame))],
            )
            count += len(frame)
    except Exception as exc:  # corrupt file or row group: the rest is quarantined by reference
        where = "whole file" if count == 0 else f"rows {count} and after"
        detail = f"{type(exc).__name__}: {exc}"[:_EXCERPT]
        yield Chunk(
            frame=pd.DataFrame(),
            index=[],
            locations=[],
            rejected=[Rejected(count, where, "unreadable_file", detail, None)],
        )
