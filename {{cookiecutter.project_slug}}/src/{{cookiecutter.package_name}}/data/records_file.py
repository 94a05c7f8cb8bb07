"""Read a file of records for validation and scoring: Parquet, CSV or JSON lines.

The common file is read by pandas' parsers, CSV and JSON values as text for the coercion to
judge. A file they refuse (a line with too many fields, a broken JSON line, a byte order mark
before JSON, a line that is not UTF-8) is read again line by line (``tabular.py``, the readers
``data ingest`` uses): a line that does not parse keeps its place as an empty row, listed in
``frame.attrs[UNPARSED]`` (position -> line and why), which validation quarantines as
``parse``; a line that is not UTF-8 is read as cp1252, its row listed in
``frame.attrs[RECODED]``. Nothing is dropped unseen.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import tabular

UNPARSED = "unparsed_lines"
RECODED = "cp1252_rows"
FORMATS = ".parquet / .pq, .csv, .jsonl / .ndjson / .json"


def read_table(path: Path) -> pd.DataFrame:
    """The records of ``path``, in file order (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except pd.errors.EmptyDataError as exc:
            raise ValueError(f"{path}: empty file, no header") from exc
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError):
            return _line_by_line(path, tabular.read_csv)
    if suffix in (".jsonl", ".json", ".ndjson"):
        try:
            # Exact floats, as ``json.loads`` (the line-by-line reader) reads them: a record's
            # request id in batch scoring hashes its values.
            return pd.read_json(
                path, lines=True, dtype=False, convert_dates=False, precise_float=True
            )
        except (ValueError, UnicodeDecodeError):
            return _line_by_line(path, tabular.read_jsonl)
    raise ValueError(f"{path}: unknown format '{suffix}' (expected {FORMATS})")


def _line_by_line(path: Path, reader) -> pd.DataFrame:
    frames, unparsed, recoded = [], {}, []
    for chunk in reader(path):
        frame = chunk.frame.copy()
        frame.index = chunk.index
        frames.append(frame)
        for row, flags in zip(chunk.index, chunk.flags or (), strict=False):
            if "charset:fallback" in flags:
                recoded.append(int(row))
        for rejected in chunk.rejected:
            unparsed[rejected.index] = f"{rejected.location}: {rejected.detail}"
    rows = [f for f in frames if len(f)]
    good = pd.concat(rows) if rows else pd.DataFrame()
    if not unparsed and good.empty:
        raise ValueError(f"{path}: no records")
    # Every record's place in the file: an unparseable line is an empty row where it was.
    total = max([*good.index, *unparsed], default=-1) + 1
    out = good.reindex(range(total)).astype(object)
    out = out.where(out.notna(), None)
    out.attrs[UNPARSED] = {int(k): v for k, v in sorted(unparsed.items())}
    out.attrs[RECODED] = recoded
    return out
