"""Rows without pandas: the table a request's records become on the serving path.

A pandas frame of one row costs more to build, extend and read than scoring the row does
(building it, adding the entity history with ``pd.concat`` and reading cells with ``iat`` cost
tens of microseconds per step). :class:`RecordTable` holds the same cell values as plain
Python lists, one per column, and offers the part of a frame's surface the serving code reads:
``columns``, ``len``, ``in``, :func:`cells`, :meth:`RecordTable.take` and
:meth:`RecordTable.with_columns`. Feature families read both kinds through
``features.columns.Columns``, cell by cell, so a record gives the same features either way (the
parity tests hold it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

# Up to this many rows, a frame's cells are read one by one (cheaper than building a Series).
SMALL_FRAME = 4


class RecordTable:
    """Columns of equal length, as lists (or 1-D numpy arrays for computed numbers)."""

    __slots__ = ("_data", "_n")

    def __init__(self, data: dict[str, Sequence], n: int):
        for name, values in data.items():
            if len(values) != n:
                raise ValueError(f"column {name} has {len(values)} values, expected {n}")
        self._data = data
        self._n = n

    @classmethod
    def from_rows(cls, rows: list[dict], names: Iterable[str]) -> RecordTable:
        """One column per name from dicts of values (a missing key is None)."""
        return cls({name: [row.get(name) for row in rows] for name in names}, len(rows))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._data)

    def __len__(self) -> int:
        return self._n

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def column(self, name: str) -> Sequence:
        """The values of one column (a KeyError naming it when absent); do not modify."""
        return self._data[name]

    def take(self, index: Sequence[int]) -> RecordTable:
        """The rows at ``index``, in that order."""
        index = list(index)
        return RecordTable(
            {
                name: values[index]
                if isinstance(values, np.ndarray)
                else [values[i] for i in index]
                for name, values in self._data.items()
            },
            len(index),
        )

    def with_columns(self, extra: dict[str, Sequence]) -> RecordTable:
        """This table with ``extra``'s columns added (replacing those of the same name, in
        place: column order is kept)."""
        return RecordTable({**self._data, **extra}, self._n)

    def to_frame(self) -> pd.DataFrame:
        """The same cells as an object-dtype frame (for code that needs pandas)."""
        table = np.empty((self._n, len(self._data)), dtype=object)
        for j, values in enumerate(self._data.values()):
            for i, value in enumerate(
                values.tolist() if isinstance(values, np.ndarray) else values
            ):
                table[i, j] = value  # one cell at a time: a list value stays a cell
        return pd.DataFrame(table, columns=pd.Index(list(self._data)), dtype=object, copy=False)


def cells(rows: pd.DataFrame | RecordTable, name: str) -> list:
    """The values of column ``name`` as a list (cell by cell for a few rows of a frame)."""
    if isinstance(rows, RecordTable):
        values = rows.column(name)
        return values.tolist() if isinstance(values, np.ndarray) else list(values)
    if len(rows) <= SMALL_FRAME:
        j = rows.columns.get_loc(name)
        return [rows.iat[i, j] for i in range(len(rows))]
    return rows[name].tolist()
