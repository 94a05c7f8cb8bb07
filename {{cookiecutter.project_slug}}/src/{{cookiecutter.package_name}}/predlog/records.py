"""Raw records of answered requests as the log keeps them: one JSON object per request.

A record holds the contract's columns as the server scored them (defaults filled in, times as
ISO 8601 UTC strings), so ``data/canonical.to_contract_frame`` turns a window of them back into
training rows with the contract's dtypes.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from ..tables import RecordTable, cells


def jsonable(value: Any) -> Any:
    """A JSON-safe cell: timestamps as ISO strings, numpy scalars as Python ones, missing
    values (None, NaN, NaT) as None."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rows(
    frame: pd.DataFrame | RecordTable,
    names: list[str],
    request_ids: list[str],
    created_at: datetime,
) -> list[dict]:
    """The ``records`` rows of a request's canonical frame (one per row, in order)."""
    columns = [cells(frame, name) for name in names]
    return [
        {
            "request_id": request_id,
            "created_at": created_at,
            "record": {name: jsonable(col[i]) for name, col in zip(names, columns, strict=True)},
        }
        for i, request_id in enumerate(request_ids)
    ]
