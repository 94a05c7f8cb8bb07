"""The synthetic mail world: realistic, deterministic for a seed, in time order.

``frames(n, seed, days, start, drift, labels)`` yields the emails in the contract's raw schema
(``COLUMNS``), a block at a time; the core's ``data.synthetic`` labels them with the contract's
classes and writes them to Parquet chunk by chunk.

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

from datetime import datetime

import numpy as np
import pandas as pd

from . import synthetic_rows
from .synthetic_world import build_world

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
_STRING = ("message_id", "sender", "sender_domain", "reply_to", "subject", "body")
_STRING += ("content_type", "urls", "attachment_types", "quality_flags", "label")


def empty() -> pd.DataFrame:
    """No rows, the contract's columns and dtypes."""
    data = {c: pd.Series([], dtype="str") for c in _STRING}
    for c in ("received_at", "sender_created_at"):
        data[c] = pd.Series([], dtype="datetime64[ns, UTC]")
    for c in ("recipient_count", "attachment_count", "inline_image_count"):
        data[c] = pd.Series([], dtype="int64")
    return pd.DataFrame(data)[list(COLUMNS)]


def frames(
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
