"""Labels: the spellings accepted for the contract's classes, and labels files.

A label column, a folder name or a labels-file entry may spell a class as its name in any
case, ``1`` / ``0``, ``true`` / ``false`` (or booleans), or a ``data.label_folders`` name.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..config import SystemConfig
from .tabular import plain_value


def label_table(cfg: SystemConfig) -> dict[str, str]:
    """Accepted label spellings (lower case) -> contract class."""
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    table = {"1": pos, "true": pos, "0": neg, "false": neg}
    for cls, names in cfg.data.label_folders.items():
        if cls in (pos, neg):
            table.update({name.strip().lower(): cls for name in names})
    table.update({pos.lower(): pos, neg.lower(): neg})
    return table


def label_key(value: object) -> str | None:
    """A label value as a lower-case spelling (bools and 1.0 / 0.0 as "true" / "1" ...)."""
    if type(value) is str:
        return value.strip().lower()
    value = plain_value(value)
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "1" if value == 1 else "0" if value == 0 else str(value)
    return str(value).strip().lower()


def normalise_labels(cfg: SystemConfig, values: pd.Series) -> pd.Series:
    """Map label spellings (1/0, true/false, class names in any case) to the contract's
    classes; None where the value is missing or unmappable."""
    table = label_table(cfg)
    labels = [label_of(table, v) for v in values.tolist()]
    return pd.Series(labels, index=values.index, dtype=object)


def label_of(table: dict[str, str], value: object) -> str | None:
    """The contract class of one label value (see :func:`label_table`); None if unmappable."""
    key = label_key(value)
    return table.get(key) if key else None


class LabelConflict(NamedTuple):
    """A labels-file key given labels of both classes: the records it names are quarantined
    (``conflicting_label``) rather than labelled by whichever line came last."""

    key: str
    labels: tuple[str, ...]

    def detail(self) -> str:
        return f"the labels file gives {' and '.join(map(repr, self.labels))} for {self.key!r}"


def load_labels(cfg: SystemConfig, path: Path) -> dict[str, str | LabelConflict]:
    """A labels CSV as {message id or file name: raw label}; angle brackets are ignored. A key
    given two classes (or two spellings that are no class) maps to a :class:`LabelConflict`."""
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path}: no such file")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
        sep = max(",\t;", key=header.count)  # comma unless tabs or semicolons dominate
        frame = pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, encoding_errors="replace"
        )
    except Exception as exc:
        raise ValueError(f"labels file {path}: not a readable CSV ({exc})") from exc
    columns = {str(c).strip().lower(): c for c in frame.columns}
    label_name = cfg.data.column("label").name
    mapped = [src for src, dst in cfg.data.column_mapping.items() if dst == label_name]
    label = next((columns[c.lower()] for c in [label_name, *mapped] if c.lower() in columns), None)
    id_name = cfg.data.column("id").name.lower()
    key = next((columns[c] for c in (id_name, "file", "filename", "path") if c in columns), None)
    if label is None or key is None:
        raise ValueError(
            f"labels file {path}: needs a '{label_name}' column and a '{id_name}' or 'file' "
            f"column; found {', '.join(map(str, frame.columns)) or 'none'}"
        )
    table = label_table(cfg)
    given: dict[str, dict[str, str]] = {}  # key -> {its class, or spelling: the label as given}
    for k, v in zip(frame[key], frame[label], strict=True):
        if id_key(k) and v.strip():
            given.setdefault(id_key(k), {}).setdefault(label_of(table, v) or label_key(v), v)
    out: dict[str, str | LabelConflict] = {}
    for k, labels in given.items():
        spellings = tuple(labels.values())
        out[k] = spellings[0] if len(spellings) == 1 else LabelConflict(k, spellings)
    return out


def id_key(value: object) -> str:
    """A message id or file name as a labels-file key: angle brackets and spaces dropped."""
    return str(value).strip().strip("<>").strip()
