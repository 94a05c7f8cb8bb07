"""Read at most a number of records from the start of a user's table (CSV / TSV / Parquet /
JSONL) for :mod:`.profile`, saying how much was read and why validation cannot read the file
as it is (another separator, malformed lines), so that the contract sends it through
`data ingest` instead.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .tabular import allow_long_csv_fields

READ_ROWS = 100_000
FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
FORMATS |= {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class ProfileError(ValueError):
    """The file cannot be profiled: one line naming the file and the problem."""


@dataclass
class Sample:
    """The rows read, how many, and whether the file has more."""

    frame: pd.DataFrame
    fmt: str
    truncated: bool
    total_rows: int | None = None  # known without reading everything (Parquet) or None
    sep: str = ","
    malformed: int = 0  # CSV lines with more fields than the header, left out of the sample

    @property
    def needs_ingest(self) -> str | None:
        """Why validation cannot read the file as it is (it reads comma-separated CSV and
        refuses the whole file at a malformed line; `data ingest` quarantines such lines)."""
        why = []
        if self.fmt in ("csv", "tsv") and self.sep != ",":
            why.append(
                f"validation reads comma-separated files, this one is separated by {self.sep!r}"
            )
        if self.malformed:
            why.append(f"{self.malformed:,} malformed lines")
        return "; ".join(why) or None

    def describe(self, path: Path) -> str:
        n = len(self.frame)
        bad = f"; skipped {self.malformed:,} malformed lines" if self.malformed else ""
        if not self.truncated:
            return f"read all {n:,} rows of {path}{bad}"
        total = f" of {self.total_rows:,}" if self.total_rows else ""
        return (
            f"read the first {n:,}{total} rows of {path}{bad}: ranges and allowed values come "
            "from these rows (--rows reads more)"
        )


def read_sample(path: str | Path, rows: int = READ_ROWS) -> Sample:
    """At most ``rows`` records of ``path``; :class:`ProfileError` for a file that cannot be
    read, has no rows, or repeats a column name."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise ProfileError(f"{path}: unknown format {path.suffix or '(no suffix)'!r} ({known})")
    if not path.is_file():
        raise ProfileError(f"{path}: no such file")
    try:
        reader = {"csv": _read_csv, "tsv": _read_csv, "parquet": _read_parquet}
        sample = reader.get(fmt, _read_jsonl)(path, rows)
    except ProfileError:
        raise
    except (OSError, ValueError, UnicodeError, csv.Error, RecursionError) as exc:
        raise ProfileError(f"{path}: cannot read as {fmt}: {_first_line(exc)}") from None
    except Exception as exc:  # pyarrow and pandas raise their own kinds on corrupt files
        raise ProfileError(f"{path}: cannot read as {fmt}: {_first_line(exc)}") from None
    sample.fmt = fmt
    if not len(sample.frame.columns):
        raise ProfileError(f"{path}: no columns")
    if not len(sample.frame):
        raise ProfileError(f"{path}: no rows, only a header")
    return sample


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _check_names(path: Path, names: list[str]) -> None:
    for i, name in enumerate(names, start=1):
        if not str(name).strip():
            raise ProfileError(f"{path}: column {i} has no name")
    seen = [str(n).strip() for n in names]
    repeated = sorted({n for n in seen if seen.count(n) > 1})
    if repeated:
        raise ProfileError(f"{path}: duplicate column names: {', '.join(map(repr, repeated))}")


def _read_csv(path: Path, rows: int) -> Sample:
    allow_long_csv_fields()
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        first = handle.readline()
        if not first.strip():
            raise ProfileError(f"{path}: empty file (no header line)")
        sep = "\t" if path.suffix.lower() == ".tsv" else max(",\t;|", key=first.count)
        handle.seek(0)
        header = next(csv.reader(handle, delimiter=sep))  # a quoted name may hold a newline
    _check_names(path, header)
    malformed: list[list[str]] = []
    frame = pd.read_csv(
        path,
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        nrows=rows + 1,
        encoding="utf-8-sig",
        encoding_errors="replace",
        skip_blank_lines=True,
        # Counted, not read: such a file goes through `data ingest`, which quarantines them.
        on_bad_lines=lambda fields: malformed.append(fields) and None,
        engine="python",
    )
    # The names as validation reads them: a name that is not a contract name (" ts") is mapped.
    frame.columns = header
    return Sample(
        frame.iloc[:rows], "csv", truncated=len(frame) > rows, sep=sep, malformed=len(malformed)
    )


def _read_parquet(path: Path, rows: int) -> Sample:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    _check_names(path, source.schema_arrow.names)
    batches, count = [], 0
    for batch in source.iter_batches(batch_size=min(rows, 65_536)):
        batches.append(batch)
        count += batch.num_rows
        if count >= rows:
            break
    table = pa.Table.from_batches(batches, schema=source.schema_arrow).slice(0, rows)
    total = source.metadata.num_rows
    frame = table.to_pandas(types_mapper=None, maps_as_pydicts="strict")
    return Sample(frame, "parquet", truncated=total > rows, total_rows=total)


def _read_jsonl(path: Path, rows: int) -> Sample:
    records, bad, truncated = [], 0, False
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if len(records) == rows:
                truncated = True
                break
            try:
                record = json.loads(line, object_pairs_hook=_no_repeats)
            except ValueError as exc:
                if isinstance(exc, ProfileError):
                    raise ProfileError(f"{path}: line {number}: {exc}") from None
                bad += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                bad += 1
    if bad and not records:
        raise ProfileError(f"{path}: no line is a JSON object ({bad:,} lines tried)")
    names = list(dict.fromkeys(k for r in records for k in r))
    _check_names(path, names)
    # Object columns: pandas would turn integers with a null into floats.
    frame = pd.DataFrame({k: pd.Series([r.get(k) for r in records], dtype=object) for k in names})
    return Sample(frame, "jsonl", truncated=truncated)


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        raise ProfileError(f"duplicate column names: {', '.join(map(repr, repeated))}")
    return dict(pairs)
