"""Synthetic email corpus: realistic, deterministic for a seed, written in chunks.

``generate_emails(n, seed)`` returns a frame in the contract's raw schema (``COLUMNS``);
``write_emails`` writes the same rows to Parquet chunk by chunk (memory flat in N, and a failed
write leaves no file); ``run`` is the stage the CLI calls.

The corpus is built so that text alone does not separate it (see synthetic_world /
synthetic_text): newsletters and notifications carry offers and links, phishing copies
notifications, compromised old accounts write like their owners and snowshoe spam spreads thin
over many fresh domains. What does separate it is behaviour: account age at send time, bursts,
the sender's history, reply-to and link hosts, attachments. About 1 % of labels are wrong
(mostly newsletters reported as spam; a little spam never reported).

Emails are made in units of consecutive hours, each from its own random stream, so the content
does not depend on how the output is chunked. ``drift`` (0..1) moves the world: more spam,
campaigns with new vocabulary (crypto airdrops, toll scams, two-factor lures, AI trading) and
sender domains on new top-level domains. HTML bodies keep their markup, like raw stored mail.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import synthetic_rows
from .synthetic_world import SPAM_TLDS_NEW, build_world

if TYPE_CHECKING:
    from ..config import SystemConfig

DEFAULT_START = datetime(2025, 3, 3, tzinfo=UTC)  # fixed, so a seed always gives the same file
COLUMNS = (
    "message_id",
    "received_at",
    "sender",
    "sender_domain",
    "sender_created_at",
    "reply_to",
    "recipient_count",
    "subject",
    "body",
    "content_type",
    "urls",
    "attachment_count",
    "attachment_types",
    "inline_image_count",
    "quality_flags",
    "label",
)
_SPAM_TLDS_NEW = SPAM_TLDS_NEW
_STRING = ("message_id", "sender", "sender_domain", "reply_to", "subject", "body")
_STRING += ("content_type", "urls", "attachment_types", "quality_flags", "label")


@dataclass(frozen=True)
class GenerationSummary:
    """What a write produced: the file, its row count, how many are positive, time taken."""

    path: Path
    rows: int
    positives: int
    seconds: float


def _check(n: int, days: int, start: datetime, drift: float) -> None:
    """Refuse arguments that cannot make a corpus, before anything is written."""
    if n < 0:
        raise ValueError(f"rows must be >= 0, got {n}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be between 0 and 1, got {drift}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")


def _empty() -> pd.DataFrame:
    """No rows, the contract's columns and dtypes."""
    data = {c: pd.Series([], dtype="str") for c in _STRING}
    for c in ("received_at", "sender_created_at"):
        data[c] = pd.Series([], dtype="datetime64[ns, UTC]")
    for c in ("recipient_count", "attachment_count", "inline_image_count"):
        data[c] = pd.Series([], dtype="int64")
    return pd.DataFrame(data)[list(COLUMNS)]


def _frames(
    n: int,
    seed: int,
    days: int,
    start: datetime,
    drift: float,
    labels: tuple[str, str],
    block_rows: int = 8192,
):
    """Frames of consecutive emails, about ``block_rows`` each (content independent of it)."""
    start_utc = pd.Timestamp(start).tz_convert("UTC")
    world = build_world(n, seed, days, drift, start_utc.hour, start_utc.weekday())
    start_ns = int(start_utc.as_unit("ns").value)
    row0 = 0
    pending: list[dict] = []
    for unit in range(-(-world.n_slots // world.unit_slots)):
        pending.append(synthetic_rows.unit_numbers(world, unit))
        if sum(len(p["t"]) for p in pending) >= block_rows:
            nums = {key: np.concatenate([p[key] for p in pending]) for key in pending[0]}
            yield synthetic_rows.frame(world, nums, start_ns, row0, labels)
            row0 += len(nums["t"])
            pending = []
    if pending and sum(len(p["t"]) for p in pending):
        nums = {key: np.concatenate([p[key] for p in pending]) for key in pending[0]}
        yield synthetic_rows.frame(world, nums, start_ns, row0, labels)


def generate_emails(
    n: int,
    seed: int,
    *,
    days: int = 30,
    start: datetime = DEFAULT_START,
    drift: float = 0.0,
    positive: str = "spam",
    negative: str = "ham",
) -> pd.DataFrame:
    """``n`` emails over ``days`` days from ``start``, in time order, in the contract schema.

    Deterministic for ``seed``; ``drift`` in [0, 1] shifts vocabulary, domains and spam rate.
    Raises ValueError on a negative ``n``, ``days`` < 1, a naive ``start`` or drift out of range.
    """
    _check(n, days, start, drift)
    if n == 0:
        return _empty()
    frames = list(_frames(n, seed, days, start, drift, (positive, negative)))
    return pd.concat(frames, ignore_index=True)


def write_emails(
    path: Path,
    n: int,
    seed: int,
    *,
    chunk_rows: int = 50_000,
    days: int = 30,
    start: datetime = DEFAULT_START,
    drift: float = 0.0,
    positive: str = "spam",
    negative: str = "ham",
    progress: bool = False,
) -> GenerationSummary:
    """Write ``generate_emails(n, seed, ...)`` to Parquet in row groups of ``chunk_rows``.

    Memory stays flat in ``n``. The file appears only when complete: rows go to a temporary
    file next to ``path`` that is renamed at the end, and removed if anything fails.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check(n, days, start, drift)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    began = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    schema = pa.Schema.from_pandas(_empty(), preserve_index=False)
    written = positives = 0
    bar = _progress(n) if progress else None
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            buffer: list[pd.DataFrame] = []
            buffered = 0
            frames = _frames(n, seed, days, start, drift, (positive, negative)) if n else []
            for frame in frames:
                buffer.append(frame)
                buffered += len(frame)
                while buffered >= chunk_rows:  # exactly chunk_rows per row group
                    chunk = pd.concat(buffer, ignore_index=True)
                    head, rest = chunk.iloc[:chunk_rows], chunk.iloc[chunk_rows:]
                    written, positives = _write(writer, schema, head, positive, written, positives)
                    buffer, buffered = [rest], len(rest)
                if bar:
                    bar[0].update(bar[1], completed=written + buffered)
            if buffered:
                chunk = pd.concat(buffer, ignore_index=True)
                written, positives = _write(writer, schema, chunk, positive, written, positives)
            elif written == 0:
                writer.write_table(pa.Table.from_pandas(_empty(), schema, preserve_index=False))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if bar:
            bar[0].stop()
    return GenerationSummary(path, written, positives, time.perf_counter() - began)


def _write(writer, schema, chunk: pd.DataFrame, positive: str, written: int, positives: int):
    import pyarrow as pa

    writer.write_table(pa.Table.from_pandas(chunk, schema, preserve_index=False))
    return written + len(chunk), positives + int((chunk["label"] == positive).sum())


def _progress(total: int):
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    return bar, bar.add_task("generating emails", total=total)


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
    """Stage entry point: write ``rows`` emails to ``out`` labelled with the contract's classes."""
    return write_emails(
        Path(out),
        rows,
        seed,
        days=days,
        drift=drift,
        positive=cfg.problem.positive_class,
        negative=cfg.problem.negative_class,
        progress=progress,
    )


def hold_out(cfg: SystemConfig, path: Path, holdout_path: Path, n: int) -> tuple[int, int]:
    """Move the latest ``n`` emails of ``path`` to ``holdout_path``: the same world's future.

    Training then never sees them, and the entity store is materialized before them, so
    replaying them through the server is traffic from the same distribution (no drift).
    Returns (rows kept, rows held out).
    """
    timestamp = cfg.data.column("timestamp").name
    frame = pd.read_parquet(path)
    frame = frame.sort_values(timestamp, kind="stable").reset_index(drop=True)
    cut = len(frame) - n
    times = frame[timestamp]
    while 0 < cut < len(frame) and times.iat[cut] == times.iat[cut - 1]:
        cut += 1  # ties stay on the training side: the store's snapshot is strictly earlier
    holdout_path = Path(holdout_path)
    holdout_path.parent.mkdir(parents=True, exist_ok=True)
    frame.iloc[cut:].reset_index(drop=True).to_parquet(holdout_path, index=False)
    frame.iloc[:cut].to_parquet(path, index=False)
    return cut, len(frame) - cut
