"""What the trainers share: reading a labelled split, the class balance, the result record."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import SystemConfig


def read_labelled(cfg: SystemConfig, path: Path, what: str = "split") -> pd.DataFrame:
    """Read a Parquet split; fail clearly when it is missing or has no usable labels.

    Every row must carry the positive or the negative class: validation quarantines the others,
    so a row without a known label here means the split did not come from the pipeline.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} data (run the earlier stages first)")
    frame = pd.read_parquet(path)
    targets(cfg, frame, what=f"{what} ({path})")
    return frame


def targets(cfg: SystemConfig, frame: pd.DataFrame, what: str = "data") -> np.ndarray:
    """0/1 targets of labelled rows (1 = the contract's positive class).

    Raises ``ValueError`` when the label column is missing, a label is neither class, or the
    rows hold a single class (no model can be trained or tuned on that).
    """
    label = cfg.data.column("label").name
    if label not in frame:
        raise ValueError(f"{what}: no {label!r} column: training needs labelled rows")
    labels = frame[label].astype("string")
    known = labels.isin([cfg.problem.positive_class, cfg.problem.negative_class]).fillna(False)
    if not known.all():
        bad = labels[~known.to_numpy(dtype=bool)]
        sample = ", ".join(repr(v) for v in bad.drop_duplicates().head(3).tolist())
        raise ValueError(
            f"{what}: {len(bad)} rows have a {label!r} that is neither "
            f"{cfg.problem.positive_class!r} nor {cfg.problem.negative_class!r} ({sample}); "
            "validate the data first"
        )
    y = (labels == cfg.problem.positive_class).to_numpy(dtype=np.int8)
    if y.size == 0 or y.min() == y.max():
        only = cfg.problem.positive_class if y.size and y[0] else cfg.problem.negative_class
        raise ValueError(
            f"{what}: {y.size} rows, all {only!r}: both classes are needed to train"
            if y.size
            else f"{what}: no rows"
        )
    return y


def scale_pos_weight(y: np.ndarray) -> float:
    """Negatives per positive: the ``scale_pos_weight`` that balances the classes in the loss
    (XGBoost and LightGBM both take it)."""
    positive = int(np.sum(y))
    return float((len(y) - positive) / positive)


def cpu_count() -> int:
    """Cores this process may use (the affinity mask in a container, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def let_idle_threads_sleep() -> None:
    """Ask OpenMP (XGBoost, LightGBM, scikit-learn) to put idle threads to sleep, not spin.

    Spinning threads starve each other on a shared machine: on a busy 2-core machine XGBoost
    with 2 threads ran 8x slower spinning than sleeping (and faster than 1 thread once
    sleeping). OpenMP reads the variable when its library loads, so this must run before
    xgboost, lightgbm or scikit-learn is imported; an explicit ``OMP_WAIT_POLICY`` wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def duration(seconds: float) -> str:
    """``42.1 s`` or ``3 min 05 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


@dataclass(frozen=True)
class TrainResult:
    """A trained bundle on disk and how long it took."""

    kind: str
    bundle_dir: Path
    rows: int
    positive_rate: float
    seconds: float

    def summary(self) -> str:
        """One line for the CLI."""
        return (
            f"{self.kind}: trained on {self.rows:,} rows ({self.positive_rate:.1%} positive) "
            f"in {duration(self.seconds)} -> {self.bundle_dir}"
        )
