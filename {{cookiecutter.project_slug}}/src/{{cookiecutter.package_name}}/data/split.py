"""Split validated records by received time into train / validation / test.

Oldest records train, the newest test: the model is always judged on a future it has not seen,
as in production. Rows are never shuffled across time, and the parts do not overlap: records
sharing a timestamp on a boundary all go to one side (the side that keeps the part sizes
closest to the contract's fractions), so no instant is both seen in training and judged later.

Point-in-time entity history (what was known about an entity when a record arrived) is computed
by ``entity_history.point_in_time_history``; the features stage applies it per part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import SystemConfig
from ..timebounds import out_of_range

PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitResult:
    """Where the parts were written and what each holds (rows, time range, positive rate)."""

    paths: dict[str, Path]
    summary_path: Path
    parts: dict[str, dict[str, Any]]

    def summary(self) -> str:
        """One line per part: rows, time range and positive rate."""
        lines = []
        for name, info in self.parts.items():
            lines.append(
                f"{name:<10} {info['rows']:>9,} rows  {info['start'][:19]} .. "
                f"{info['end'][:19]}  positive {info['positive_rate']:.1%}  -> {self.paths[name]}"
            )
        return "\n".join(lines)


def _times(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        raise ValueError(f"no timestamp column '{column}' to split on")
    times = df[column]
    if not pd.api.types.is_datetime64_any_dtype(times.dtype):
        times = pd.to_datetime(times, utc=True, format="ISO8601")
    if times.isna().any():
        raise ValueError(
            f"{int(times.isna().sum())} rows have no {column}: validate the data before splitting"
        )
    return times


def _nearest_boundary(boundaries: np.ndarray, target: float, low: int, high: int) -> int | None:
    """The boundary in ``(low, high)`` nearest to ``target``; the earlier one on a tie."""
    inside = boundaries[(boundaries > low) & (boundaries < high)]
    if inside.size == 0:
        return None
    return int(inside[np.argmin(np.abs(inside - target))])


def split_by_time(cfg: SystemConfig, df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Train, validation and test parts of ``df`` (in that order), each sorted by time.

    Sizes follow ``training.split``; a cut only falls between two different timestamps, so a
    burst of records at one instant moves to one side as a whole. The original index is kept.
    Raises ``ValueError`` when a part would be empty (too few distinct timestamps).
    """
    column = cfg.data.column("timestamp").name
    times = _times(df, column)
    # A stable sort keeps the input order among records at the same instant (reproducible).
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    instants = times.to_numpy()
    order = np.argsort(instants, kind="stable")
    ordered = instants[order]
    n = len(df)
    # Positions where a new instant starts: the only places a cut may fall.
    boundaries = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    fractions = cfg.training.split
    first = _nearest_boundary(boundaries, n * fractions.train, 0, n)
    second = (
        None
        if first is None
        else _nearest_boundary(boundaries, n * (fractions.train + fractions.validation), first, n)
    )
    if first is None or second is None:
        distinct = len(boundaries)
        raise ValueError(
            f"cannot split {n} rows with {distinct} distinct {column} values into three "
            "non-empty parts: a part would be empty"
        )
    cuts = {"train": (0, first), "validation": (first, second), "test": (second, n)}
    return {name: df.iloc[order[a:b]] for name, (a, b) in cuts.items()}


def _describe(cfg: SystemConfig, part: pd.DataFrame) -> dict[str, Any]:
    times = _times(part, cfg.data.column("timestamp").name)
    labels = part[cfg.data.column("label").name]
    return {
        "rows": len(part),
        "start": times.min().isoformat(),
        "end": times.max().isoformat(),
        "positive_rate": float((labels == cfg.problem.positive_class).mean()),
    }


def run(cfg: SystemConfig, input_path: Path, out_dir: Path) -> SplitResult:
    """Split ``input_path`` (validated Parquet) into ``out_dir/{train,validation,test}.parquet``.

    Also writes ``out_dir/split.json``: per part its rows, first and last timestamp (ISO 8601)
    and positive rate, plus the fractions used.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    df = pd.read_parquet(input_path)
    # Validation quarantines times the later stages cannot hold; a file that skipped it stops here.
    for column in cfg.data.columns:
        if column.dtype == "datetime" and column.name in df.columns:
            problem = out_of_range(df[column.name], column.name)
            if problem:
                raise ValueError(f"{input_path}: {problem}")
    parts = split_by_time(cfg, df)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.parquet" for name in PARTS}
    described = {}
    for name, part in parts.items():
        part.to_parquet(paths[name], index=False)
        described[name] = _describe(cfg, part)
    summary_path = out_dir / "split.json"
    summary = {
        "input": str(input_path),
        "rows": len(df),
        "fractions": cfg.training.split.model_dump(),
        "parts": described,
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return SplitResult(paths=paths, summary_path=summary_path, parts=described)
