"""Split validated records by their time into train / validation / test.

Oldest records train, the newest test: the model is always judged on a future it has not seen,
as in production. Rows are never shuffled across time, and the parts do not overlap: records
sharing a timestamp on a boundary all go to one side (the side that keeps the part sizes
closest to the contract's fractions), so no instant is both seen in training and judged later.

A contract without a ``timestamp`` column gets a seeded split stratified by label instead
(``training.seed``): the parts keep the positive rate, but nothing rules out leakage from the
future into training (a record and a later copy of it, a trend), so the test figures may be
optimistic. ``split.json`` and the evaluation say which split was used.

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
BY_TIME, STRATIFIED = "time", "stratified"


@dataclass(frozen=True)
class SplitResult:
    """Where the parts were written and what each holds (rows, time range, positive rate)."""

    paths: dict[str, Path]
    summary_path: Path
    parts: dict[str, dict[str, Any]]
    method: str = BY_TIME

    def summary(self) -> str:
        """One line per part: rows, time range and positive rate."""
        lines = []
        for name, info in self.parts.items():
            span = f"{info['start'][:19]} .. {info['end'][:19]}" if info["start"] else "no time"
            lines.append(
                f"{name:<10} {info['rows']:>9,} rows  {span}  positive "
                f"{info['positive_rate']:.1%}  -> {self.paths[name]}"
            )
        if self.method == STRATIFIED:
            lines.append(
                "no timestamp column: a seeded random split, stratified by label (time leakage "
                "cannot be ruled out)"
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
    column = cfg.data.timestamp
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


def split_stratified(cfg: SystemConfig, df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Train, validation and test parts of ``df`` drawn at random within each label, seeded by
    ``training.seed``: each part keeps the positive rate. The original index is kept.
    Raises ``ValueError`` when a part would have no row of a class."""
    labels = df[cfg.data.column("label").name].to_numpy()
    rng = np.random.default_rng(cfg.training.seed)
    fractions = cfg.training.split
    picked: dict[str, list[np.ndarray]] = {name: [] for name in PARTS}
    for value in pd.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        first = round(len(rows) * fractions.train)
        second = first + round(len(rows) * fractions.validation)
        if not 0 < first < second < len(rows):
            raise ValueError(
                f"cannot split {len(rows)} rows labelled {value!r} into three non-empty parts"
            )
        cuts = ((0, first), (first, second), (second, len(rows)))
        for name, (a, b) in zip(PARTS, cuts, strict=True):
            picked[name].append(rows[a:b])
    return {name: df.iloc[np.sort(np.concatenate(picked[name]))] for name in PARTS}


def _describe(cfg: SystemConfig, part: pd.DataFrame) -> dict[str, Any]:
    labels = part[cfg.data.column("label").name]
    start = end = None
    if cfg.data.timestamp:
        times = _times(part, cfg.data.timestamp)
        start, end = times.min().isoformat(), times.max().isoformat()
    return {
        "rows": len(part),
        "start": start,
        "end": end,
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
    method = BY_TIME if cfg.data.timestamp else STRATIFIED
    parts = split_by_time(cfg, df) if method == BY_TIME else split_stratified(cfg, df)
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
        "method": method,
        "parts": described,
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return SplitResult(paths=paths, summary_path=summary_path, parts=described, method=method)
