"""The features stage: attach point-in-time entity history to the splits, materialize the store.

``run(cfg, split_dir, out_dir)`` reads ``{train,validation,test}.parquet`` from the split stage
and writes the same rows plus ``HISTORY_COLUMNS`` to ``out_dir``:

- train: history within train (each label known from its record's time on);
- validation: train is the earlier history, labels known up to the end of train;
- test: train + validation are the earlier history, labels known up to the end of train,
  as for a model trained on train and serving from a store that knows training labels only.

It then materializes the entity store for serving as of just after the last record, with every
label. Model training fits the feature transformer on these files; nothing here is fitted.
Without an entity key in the contract there is no history: the rows are copied as they are and
no store is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..stores import redacted
from ..timebounds import out_of_range
from .history import attach_history, history_columns, history_spec
from .store import EntityStore

PARTS = ("train", "validation", "test")
SUMMARY_FILE = "features_summary.json"


@dataclass
class FeatureBuildResult:
    """Paths written by the features stage and what they hold."""

    paths: dict[str, Path]
    rows: dict[str, int]
    store_url: str
    entities: int
    as_of: str
    label_cutoff: str
    seconds: float
    summary_path: Path
    history: bool = True  # False: the contract has no entity key, so no history and no store

    def summary(self) -> str:
        """One line for the CLI."""
        parts = ", ".join(f"{name} {count:,}" for name, count in self.rows.items())
        if not self.history:
            return f"no entity key in the contract: rows copied without history ({parts} rows)"
        return (
            f"history attached ({parts} rows; labels known up to {self.label_cutoff}); "
            f"entity store: {self.entities:,} entities as of {self.as_of} in {self.seconds:.1f}s"
        )


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found (run the split stage first)")
    return pd.read_parquet(path)


def run(
    cfg, split_dir: str | Path, out_dir: str | Path, *, store_url: str | None = None
) -> FeatureBuildResult:
    """Write ``out_dir/{train,validation,test}.parquet`` with history; fill the entity store.

    ``store_url`` defaults to ``cfg.serving.entity_store_url`` (relative SQLite paths resolve
    under the project root).
    """
    started = time.perf_counter()
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    parts = {name: _read(split_dir / f"{name}.parquet") for name in PARTS}
    spec = history_spec(cfg)
    ts = spec.timestamp
    for name, frame in parts.items():
        if frame.empty:
            raise ValueError(f"{split_dir / name}.parquet: no rows")
        if ts and ts not in frame.columns:
            raise ValueError(f"{split_dir / name}.parquet: no {ts} column")
        # Times the history arithmetic (nanoseconds) cannot hold: refused here, in one line.
        for column in (ts, spec.created_at):
            problem = column and column in frame.columns and out_of_range(frame[column], column)
            if problem:
                raise ValueError(f"{split_dir / name}.parquet: {problem}")

    # Labels strictly before this instant are known: every training label, nothing later.
    # Records without a time have no entity key either (the contract's rule): no history.
    label_cutoff = as_of = None
    if ts:
        label_cutoff = pd.to_datetime(parts["train"][ts], utc=True).max() + pd.Timedelta(1, "ns")
    earlier_for_test = pd.concat([parts["train"], parts["validation"]], ignore_index=True)
    attached = {
        "train": attach_history(cfg, parts["train"]),
        "validation": attach_history(
            cfg, parts["validation"], earlier=parts["train"], label_cutoff=label_cutoff
        ),
        "test": attach_history(
            cfg, parts["test"], earlier=earlier_for_test, label_cutoff=label_cutoff
        ),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in attached.items():
        paths[name] = out_dir / f"{name}.parquet"
        tmp = paths[name].with_name(f".tmp-{paths[name].name}")
        frame.to_parquet(tmp, index=False)
        tmp.replace(paths[name])  # a reader never sees half a file

    everything = pd.concat([earlier_for_test, parts["test"]], ignore_index=True)
    if ts:
        as_of = pd.to_datetime(everything[ts], utc=True).max() + pd.Timedelta(1, "ns")
    entities, url = 0, "none (the contract has no entity key)"
    if spec.entity is not None:
        store = EntityStore.from_config(cfg, store_url)
        try:
            entities = store.materialize(cfg, everything, as_of=as_of)
        finally:
            store.close()
        url = redacted(store.url)

    result = FeatureBuildResult(
        paths=paths,
        rows={name: len(frame) for name, frame in attached.items()},
        store_url=url,
        entities=entities,
        as_of=as_of.isoformat() if as_of is not None else "none",
        label_cutoff=label_cutoff.isoformat() if label_cutoff is not None else "none",
        seconds=time.perf_counter() - started,
        summary_path=out_dir / SUMMARY_FILE,
        history=spec.entity is not None,
    )
    summary = {
        "rows": result.rows,
        "history_columns": list(history_columns(cfg)),
        "label_cutoff": result.label_cutoff,
        "store": {"url": result.store_url, "entities": entities, "as_of": result.as_of},
        "seconds": round(result.seconds, 3),
    }
    result.summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return result
