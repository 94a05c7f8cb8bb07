"""A synthetic world made from the contract alone: ``data generate`` when the pack has no world.

It knows nothing of what the records mean. It reads each column's role, dtype, bounds, allowed
values and nullability, draws the columns, and then the label from a score over them, so that a
tuned model finds more than a linear baseline and every stage has something honest to do
before your data arrives:

- numeric columns act on the score linearly, past a threshold, at both extremes (a U shape) or
  not at all; each categorical value and each bool has its own effect; text columns carry a few
  telling words; flags columns add to the score with each flag;
- with an entity key, each entity has a propensity (some are mostly positive, so their history
  helps), and young entities (the ``<entity>_created_at`` column) are riskier;
- the score's offset is set once so that the positive rate is the middle of
  ``data.positive_rate`` (within 1-30 %);
- nullable columns are missing at half the share ``mostly`` allows (at most 10 %);
- 1 % of the labels are flipped: no record is certain.

What a column does depends on its name only, so two seeds draw from the same world and
``drift`` (0..1) moves it: numbers shift, the positive rate rises, unlisted categories get new
values. Rows are in time order, ``days`` from ``start``; frames are computed independently of
one another from (seed, frame number). This is a smoke-test world, not a model of yours: its
figures say the system works, not how well your problem can be solved.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ..config import Column, SystemConfig

FRAME_ROWS = 8192
LABEL_NOISE = 0.01
# How sharply the score decides the label: a tuned model meets a 0.9 precision / 0.5 recall
# contract on the example schema, the linear baseline does not.
SHARPNESS = 5.0
CALIBRATION_ROWS = 20_000
_NS_PER_DAY = 86_400 * 10**9
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fi", "gu", "ho")


def _stable(name: str, salt: str = "") -> np.random.Generator:
    """A generator fixed by a column's name: the same behaviour for every seed."""
    return np.random.default_rng(zlib.crc32(f"{salt}:{name}".encode()))


def _text_dtype() -> pd.StringDtype:
    return pd.StringDtype(na_value=np.nan)


class ContractWorld:
    """Frames of records with the contract's columns (see the module docstring)."""

    def __init__(self, cfg: SystemConfig, entity_created_at: str | None = None):
        self.columns: list[Column] = list(cfg.data.columns)
        bounds = cfg.data.positive_rate
        self.rate = float(np.clip((bounds.min + bounds.max) / 2, 0.01, 0.3))
        self.entity = cfg.data.entity
        created = entity_created_at or (f"{self.entity}_created_at" if self.entity else None)
        self.created = next(
            (c.name for c in self.columns if c.name == created and c.dtype == "datetime"), None
        )
        self.drawn = [
            c for c in self.columns if c.role not in _OWN_ROLES and c.name != self.created
        ]
        self.offset = self._calibrate()

    # -- schema -----------------------------------------------------------------------------

    def _dtype(self, column: Column):
        if column.dtype == "datetime":
            return "datetime64[ns, UTC]"
        if column.dtype == "float":
            return "float64"
        if column.dtype == "int":
            return "Int64" if column.nullable else "int64"
        if column.dtype == "bool":
            return "boolean" if column.nullable else "bool"
        return _text_dtype()

    def empty(self) -> pd.DataFrame:
        """No rows: the contract's columns with the dtypes the frames carry."""
        return pd.DataFrame({c.name: pd.Series([], dtype=self._dtype(c)) for c in self.columns})

    # -- the world --------------------------------------------------------------------------

    def frames(self, n: int, seed: int, days: int, start: datetime, drift: float, labels: tuple):
        """Frames of consecutive records, ``FRAME_ROWS`` each (the last one shorter)."""
        start_ns = int(pd.Timestamp(start).tz_convert("UTC").as_unit("ns").value)
        pool = self._entities(n, seed, start_ns)
        for first in range(0, n, FRAME_ROWS):
            rows = np.arange(first, min(first + FRAME_ROWS, n), dtype=np.int64)
            rng = np.random.default_rng([seed, first // FRAME_ROWS])
            yield self._frame(rows, n, rng, pool, start_ns, days, drift, labels, seed)

    def _calibrate(self) -> float:
        """The score's offset that gives the contract's positive rate with no drift."""
        rng = np.random.default_rng(0)
        _, score, _ = self._draw(rng, CALIBRATION_ROWS, 0.0)
        if self.entity is not None:
            score = score + self._propensity(rng, CALIBRATION_ROWS)[0]
        low, high = -100.0, 100.0
        for _ in range(60):  # bisection: the mean probability rises with the offset
            middle = (low + high) / 2
            if (1 / (1 + np.exp(-(middle + SHARPNESS * score)))).mean() < self.rate:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    @staticmethod
    def _propensity(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Each entity's share of the score, and its age in days (the young are riskier)."""
        score = rng.normal(0.0, 0.5, size)
        age_days = rng.exponential(400.0, size)
        young = rng.random(size) < 0.15
        age_days[young] = rng.uniform(0, 30, young.sum())
        return score + 1.0 * young, age_days

    def _entities(self, n: int, seed: int, start_ns: int) -> dict[str, np.ndarray] | None:
        if self.entity is None:
            return None
        rng = np.random.default_rng([seed, 1 << 30])
        size = max(50, n // 12)
        score, age_days = self._propensity(rng, size)
        weights = 1.0 / np.arange(1, size + 1) ** 0.5  # busy entities and quiet ones
        return {
            "score": score,
            "created_ns": start_ns - (age_days * _NS_PER_DAY).astype(np.int64),
            "weights": weights / weights.sum(),
            "order": rng.permutation(size),
        }

    def _frame(self, rows, n, rng, pool, start_ns, days, drift, labels, seed) -> pd.DataFrame:
        size = len(rows)
        data, score, gone = self._draw(rng, size, drift)
        if pool is not None:
            entity = pool["order"][rng.choice(len(pool["weights"]), size, p=pool["weights"])]
            score = score + pool["score"][entity]
            name = self.entity
            column = next(c for c in self.columns if c.name == name)
            numeric = column.dtype in ("int", "float")
            data[name] = entity if numeric else [f"E{e:07d}" for e in entity.tolist()]
            if self.created:
                data[self.created] = pd.to_datetime(pool["created_ns"][entity], utc=True)
        # Drift raises the odds of a positive (up to e² times at drift 1).
        chance = 1 / (1 + np.exp(-(self.offset + 2 * drift + SHARPNESS * score)))
        y = (rng.random(size) < chance) ^ (rng.random(size) < LABEL_NOISE)
        times = start_ns + ((rows + rng.random(size)) / n * days * _NS_PER_DAY).astype(np.int64)
        times -= times % 10**9  # whole seconds, as most sources keep them
        for column in self.columns:
            if column.role == "id":
                numeric = column.dtype in ("int", "float")
                data[column.name] = rows + 1 if numeric else [f"R{seed:x}-{r:09d}" for r in rows]
            elif column.role == "label":
                data[column.name] = np.where(y, labels[0], labels[1])
            elif column.role == "timestamp":
                data[column.name] = pd.to_datetime(times, utc=True)
            elif column.dtype == "datetime" and column.name != self.created:
                data[column.name] = self._datetime(column, rng, times)
        for column in self.columns:
            if column.name not in gone:
                gone[column.name] = self._gone(column, rng, size)
        frame = pd.DataFrame({c.name: _blank(data[c.name], gone[c.name]) for c in self.columns})
        return frame.astype({c.name: self._dtype(c) for c in self.columns})

    def _draw(self, rng, size: int, drift: float) -> tuple[dict, np.ndarray, dict]:
        """The drawn columns' values, their share of each row's score, and which are missing
        (a value never recorded does not drive the label)."""
        values, score, gone = {}, np.zeros(size), {}
        for column in self.drawn:
            if column.dtype == "datetime":
                continue  # ages carry no signal here; drawn with the row's time
            if column.dtype in ("int", "float"):
                drawn, part = self._number(column, rng, size, drift)
            elif column.dtype == "bool":
                effect = _stable(column.name, "bool").normal(0.0, 1.5)
                drawn = rng.random(size) < 0.3 + 0.2 * drift
                part = effect * drawn
            elif column.role == "text":
                drawn, part = self._text(column, rng, size, drift)
            elif column.role == "flags":
                drawn, part = self._flags(column, rng, size)
            else:
                drawn, part = self._category(column, rng, size, drift)
            gone[column.name] = self._gone(column, rng, size)
            values[column.name], score = drawn, score + np.where(gone[column.name], 0.0, part)
        return values, score, gone

    def _gone(self, column: Column, rng, size: int) -> np.ndarray:
        """Which rows miss this column: half the share ``mostly`` allows, at most 10 %."""
        share = min(0.1, (1 - column.mostly) / 2)
        if not column.nullable or column.role in _OWN_ROLES or share <= 0:
            return np.zeros(size, dtype=bool)
        return rng.random(size) < share

    def _number(self, column: Column, rng, size: int, drift: float):
        design = _stable(column.name, "number")
        kind = design.choice(["linear", "threshold", "u-shape", "noise"], p=[0.3, 0.3, 0.2, 0.2])
        weight = design.uniform(1.0, 2.0) * design.choice([-1, 1])
        z = rng.normal(0.0, 1.0, size)
        part = {
            "linear": weight * z,
            "threshold": 3.0 * (z > 1.0),
            "u-shape": 1.0 * (z**2 - 1),
            "noise": np.zeros(size),
        }[kind]
        return self._scaled(column, z + drift), part

    def _scaled(self, column: Column, z: np.ndarray) -> np.ndarray:
        """Standard scores as the column's values, inside its bounds."""
        low = column.min if isinstance(column.min, float) else None
        high = column.max if isinstance(column.max, float) else None
        floor = max(low or 0.0, 1e-2)
        if low is not None and low >= 0 and (high is None or high / floor > 100):
            # Amount-like: log-normal around a centre a third of the way into the range's logs.
            top = np.log(high) if high is not None else np.log(floor) + 6
            values = np.exp(np.log(floor) + (top - np.log(floor)) / 3 + 0.6 * z)
        elif low is not None and high is not None:
            values = (low + high) / 2 + (high - low) / 8 * z
        elif low is not None:
            values = low + np.exp(2.0 + 0.6 * z)
        elif high is not None:
            values = high - np.exp(2.0 + 0.6 * z)
        else:
            values = 50.0 + 15.0 * z
        values = np.clip(values, -np.inf if low is None else low, np.inf if high is None else high)
        if column.dtype == "int":
            values = np.round(values).astype(np.int64)
            if low is not None:
                values = np.maximum(values, int(np.ceil(low)))
            if high is not None:
                values = np.minimum(values, int(np.floor(high)))
        return values

    def _category(self, column: Column, rng, size: int, drift: float):
        design = _stable(column.name, "category")
        values = list(column.allowed or [f"{column.name}_{k:02d}" for k in range(12)])
        weights = 1.0 / np.arange(1, len(values) + 1) ** 0.7
        effects = design.normal(0.0, 1.5, len(values))
        index = rng.choice(len(values), size, p=weights / weights.sum())
        choices = np.array(values, dtype=object)[index]
        part = effects[index]
        if drift > 0 and not column.allowed:
            new = rng.random(size) < 0.3 * drift
            choices[new] = f"{column.name}_new"  # renamed: the model has never seen it
        return choices, part

    def _text(self, column: Column, rng, size: int, drift: float):
        design = _stable(column.name, "text")
        words = np.array(
            ["".join(design.choice(_SYLLABLES, design.integers(2, 4))) for _ in range(300)]
        )
        signal, common = words[:15], words[15:]
        telling = np.minimum(rng.poisson(0.4, size), 4)
        lengths = rng.integers(3, 25, size)
        out = []
        for length, k in zip(lengths.tolist(), telling.tolist(), strict=True):
            picked = common[rng.integers(0, len(common), length)]
            if k:
                at = rng.integers(0, length + 1, k)
                picked = np.insert(picked, at, signal[rng.integers(0, len(signal), k)])
            if drift and rng.random() < drift * 0.3:
                picked = np.append(picked, "novel")
            out.append(" ".join(picked.tolist()))
        return out, 2.0 * telling

    def _flags(self, column: Column, rng, size: int):
        names = [f"check_{k}" for k in range(6)]
        counts = rng.poisson(0.4, size)
        # No flag is null where the contract lets a column be mostly empty, else "".
        none = None if column.nullable and column.mostly == 0 else ""
        cells = [
            ",".join(sorted(set(rng.choice(names, k).tolist()))) if k else none
            for k in counts.tolist()
        ]
        return cells, 1.0 * counts

    def _datetime(self, column: Column, rng, times) -> pd.Series:
        ns = times - (rng.exponential(180.0, len(times)) * _NS_PER_DAY).astype(np.int64)
        if isinstance(column.min, datetime):
            ns = np.maximum(ns, pd.Timestamp(column.min).as_unit("ns").value)
        return pd.to_datetime(ns, utc=True)


def _blank(values, gone: np.ndarray):
    """``values`` with the rows in ``gone`` missing."""
    if not gone.any():
        return values
    values = pd.Series(values).astype(object)
    values[gone] = None
    return values


# Columns the world fills itself rather than draws: the record's identity, time and label.
_OWN_ROLES = ("id", "timestamp", "label", "entity_key")
