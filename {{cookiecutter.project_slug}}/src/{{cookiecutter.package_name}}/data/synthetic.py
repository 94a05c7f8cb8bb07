"""Synthetic training data from the domain pack's world, written in chunks.

The contract's ``data.domain`` pack supplies the world (``DomainPack.generator``), or without
one the contract's columns do (``contract_world``); this stage labels it with the contract's
classes and writes it to Parquet chunk by chunk: memory stays flat in the row count, and a
failed write leaves no file. ``generate`` returns the same rows as one frame (tests, replay).
``hold_out`` moves the latest rows aside as the same world's future.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..domain import pack_of

if TYPE_CHECKING:
    from ..config import SystemConfig

DEFAULT_START = datetime(2025, 3, 3, tzinfo=UTC)  # fixed, so a seed always gives the same file


@dataclass(frozen=True)
class GenerationSummary:
    """What a write produced: the file, its row count, how many are positive, time taken."""

    path: Path
    rows: int
    positives: int
    seconds: float


def check_arguments(n: int, days: int, start: datetime, drift: float) -> None:
    """Refuse arguments that cannot make a corpus, before anything is written."""
    if n < 0:
        raise ValueError(f"rows must be >= 0, got {n}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be between 0 and 1, got {drift}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")


def world(cfg: SystemConfig):
    """The pack's synthetic world; without one, a world made from the contract's columns."""
    pack = pack_of(cfg)
    if pack.generator is None:
        from .contract_world import ContractWorld

        return ContractWorld(cfg, pack.entity_created_at)
    return pack.generator()


def _labels(cfg: SystemConfig) -> tuple[str, str]:
    return cfg.problem.positive_class, cfg.problem.negative_class


def generate(
    cfg: SystemConfig,
    n: int,
    seed: int,
    *,
    days: int = 30,
    start: datetime = DEFAULT_START,
    drift: float = 0.0,
) -> pd.DataFrame:
    """``n`` records over ``days`` days from ``start``, in time order, labelled with the
    contract's classes. Deterministic for ``seed``; ``drift`` in [0, 1] moves the world."""
    check_arguments(n, days, start, drift)
    source = world(cfg)
    if n == 0:
        return source.empty()
    frames = list(source.frames(n, seed, days, start, drift, _labels(cfg)))
    return pd.concat(frames, ignore_index=True)


def write(
    cfg: SystemConfig,
    path: Path,
    n: int,
    seed: int,
    *,
    chunk_rows: int = 50_000,
    days: int = 30,
    start: datetime = DEFAULT_START,
    drift: float = 0.0,
    progress: bool = False,
) -> GenerationSummary:
    """Write ``generate(cfg, n, seed, ...)`` to Parquet in row groups of ``chunk_rows``.

    Memory stays flat in ``n``. The file appears only when complete: rows go to a temporary
    file next to ``path`` that is renamed at the end, and removed if anything fails.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_arguments(n, days, start, drift)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    source = world(cfg)
    began = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    empty = source.empty()
    schema = pa.Schema.from_pandas(empty, preserve_index=False)
    label, positive = cfg.data.column("label").name, cfg.problem.positive_class
    written = positives = 0
    bar = _progress(n) if progress else None

    def put(chunk: pd.DataFrame) -> None:
        nonlocal written, positives
        writer.write_table(pa.Table.from_pandas(chunk, schema, preserve_index=False))
        written += len(chunk)
        positives += int((chunk[label] == positive).sum())

    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            buffer: list[pd.DataFrame] = []
            buffered = 0
            frames = source.frames(n, seed, days, start, drift, _labels(cfg)) if n else []
            for frame in frames:
                buffer.append(frame)
                buffered += len(frame)
                while buffered >= chunk_rows:  # exactly chunk_rows per row group
                    chunk = pd.concat(buffer, ignore_index=True)
                    put(chunk.iloc[:chunk_rows])
                    buffer, buffered = [chunk.iloc[chunk_rows:]], buffered - chunk_rows
                if bar:
                    bar[0].update(bar[1], completed=written + buffered)
            if buffered:
                put(pd.concat(buffer, ignore_index=True))
            elif written == 0:
                writer.write_table(pa.Table.from_pandas(empty, schema, preserve_index=False))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if bar:
            bar[0].stop()
    return GenerationSummary(path, written, positives, time.perf_counter() - began)


def _progress(total: int):
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    return bar, bar.add_task("generating records", total=total)


def run(
    cfg: SystemConfig,
    out: Path,
    *,
    rows: int,
    seed: int,
    days: int = 30,
    drift: float = 0.0,
    progress: bool = True,
) -> GenerationSummary:
    """Stage entry point: write ``rows`` records of the pack's world to ``out``."""
    return write(cfg, Path(out), rows, seed, days=days, drift=drift, progress=progress)


def hold_out(cfg: SystemConfig, path: Path, holdout_path: Path, n: int) -> tuple[int, int]:
    """Move the latest ``n`` records of ``path`` to ``holdout_path``: the same world's future.

    Training then never sees them, and the entity store is materialized before them, so
    replaying them through the server is traffic from the same distribution (no drift).
    Returns (rows kept, rows held out).
    """
    timestamp = cfg.data.timestamp
    frame = pd.read_parquet(path)
    cut = len(frame) - n
    if timestamp:  # without a time, the world's rows are in the order it made them
        frame = frame.sort_values(timestamp, kind="stable").reset_index(drop=True)
        times = frame[timestamp]
        while 0 < cut < len(frame) and times.iat[cut] == times.iat[cut - 1]:
            cut += 1  # ties stay on the training side: the store's snapshot is strictly earlier
    holdout_path = Path(holdout_path)
    holdout_path.parent.mkdir(parents=True, exist_ok=True)
    frame.iloc[cut:].reset_index(drop=True).to_parquet(holdout_path, index=False)
    frame.iloc[:cut].to_parquet(path, index=False)
    return cut, len(frame) - cut
