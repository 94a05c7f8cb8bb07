"""One fitted transformer from raw rows (+ entity history columns) to the model's input.

``build_features(cfg)`` composes the families for the contract and returns an unfitted
``FeatureTransformer``; training fits it (``fit_transform`` on the training split), the model
bundle pickles it, and serving calls ``transform`` on each request after
``EntityStore.lookup`` has added the history columns. Training and serving therefore run the
same code on the same kind of input.

Families (``get_feature_names_out`` prefixes): ``text_model_score`` (out-of-fold TF-IDF +
logistic regression score of the text columns, when the contract has any), then the domain
pack's families (``domain/<pack>``), each declaring the contract columns it reads
(``consumes``); every other column of a feature role goes to the core family of its role
(``roles.py``): ``num_``, ``cat_``, ``ts_``, ``dt_``, ``flags_``, unless the pack skips that
role. Output: dense float32, one row per input row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError

from ..domain import pack_of
from ..entity_history import _ns
from ..tables import RecordTable
from .columns import Columns
from .history import HISTORY_COLUMNS, history_columns, history_spec
from .roles import role_families
from .text import TextScorer, time_folds


class FeatureTransformer(TransformerMixin, BaseEstimator):
    """Raw canonical rows with ``HISTORY_COLUMNS`` -> float32 feature matrix.

    ``families``: unfitted feature families (``fit``, ``transform``,
    ``get_feature_names_out``; those with ``out_of_fold = True`` also
    ``fit_transform(cols, y, folds=...)``). ``required``: raw columns every input must have;
    ``history``: the entity history columns it must have (none without an entity key).

    ``fit_transform(df, y)`` is what training should call: it fits every family and returns
    out-of-fold values for the label-derived features (text score, category target rates and
    the pack's own), computed on ``folds`` contiguous time blocks.
    ``fit(df, y).transform(df)`` would hand the model in-sample values, which look better on
    training data than they will be in serving.
    """

    def __init__(
        self,
        families: tuple | list = (),
        *,
        timestamp: str | None = None,
        required: tuple[str, ...] = (),
        history: tuple[str, ...] = HISTORY_COLUMNS,
        folds: int = 5,
    ):
        self.families = families
        self.timestamp = timestamp
        self.required = required
        self.history = history
        self.folds = folds

    def __setstate__(self, state):
        # Transformers pickled before families were a parameter held the first pack's settings.
        if "required" not in state and "entity" in state:
            text = tuple(state.get("text_columns", ()))
            state = {**state, "families": (), "required": (*text, state["entity"])}
        # Transformers pickled before the history was optional always needed it.
        state.setdefault("history", HISTORY_COLUMNS)
        super().__setstate__(state)

    # -- checks --------------------------------------------------------------------------------

    def _check_rows(self, df: pd.DataFrame) -> None:
        if not isinstance(df, pd.DataFrame | RecordTable):
            raise TypeError(
                f"expected raw rows (a pandas DataFrame or a RecordTable), got {type(df).__name__}"
            )
        # One set of the names: pandas' own membership test costs microseconds per name, and
        # serving checks every call.
        present = set(df.columns)
        missing = [c for c in self.history if c not in present]
        if missing:
            raise ValueError(
                f"missing entity history column(s): {', '.join(missing)}. Add them with "
                "features.history.attach_history(cfg, df) offline, or "
                "EntityStore.lookup(cfg, rows) when serving."
            )
        absent = [c for c in self.required if c not in present]
        if absent:
            raise ValueError(f"missing raw column(s): {', '.join(absent)}")

    def _labels(self, df: pd.DataFrame, y) -> np.ndarray:
        if y is None:
            raise ValueError("FeatureTransformer.fit needs y (0/1, 1 = positive class)")
        y = np.asarray(y)
        if len(df) == 0:
            raise ValueError("FeatureTransformer.fit needs at least one training row")
        if y.shape != (len(df),):
            raise ValueError(f"y has shape {y.shape}, expected ({len(df)},)")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("y must hold only 0 and 1 (1 = positive class)")
        return y.astype(np.int8)

    def _folds(self, df: pd.DataFrame) -> np.ndarray:
        """Contiguous time blocks (row order when the timestamp column is absent)."""
        order = None
        if self.timestamp and self.timestamp in df.columns:
            order = np.argsort(_ns(df[self.timestamp], self.timestamp), kind="stable")
        return time_folds(len(df), self.folds, order)

    # -- fitting and transforming --------------------------------------------------------------

    def fit(self, df: pd.DataFrame, y=None, **_):
        """Fit every family on the training rows."""
        self._check_rows(df)
        y = self._labels(df, y)
        cols = Columns(df)
        self.families_ = [clone(family).fit(cols, y) for family in self.families]
        self._set_names()
        return self

    def fit_transform(self, df: pd.DataFrame, y=None, **_) -> np.ndarray:
        """Fit on the training rows and return their features, label-derived ones out of fold."""
        self._check_rows(df)
        y = self._labels(df, y)
        folds = self._folds(df)
        self.families_ = [clone(family) for family in self.families]
        cols = Columns(df)
        blocks = []
        for family in self.families_:
            if getattr(family, "out_of_fold", False):
                blocks.append(family.fit_transform(cols, y, folds=folds))
            else:
                blocks.append(family.fit(cols, y).transform(cols))
        self._set_names()
        return _stack(blocks, len(df))

    def _set_names(self) -> None:
        # A family that learned it has nothing to say (no flag in training) costs nothing later.
        self.families_ = [f for f in self.families_ if len(f.get_feature_names_out())]
        names = [str(n) for f in self.families_ for n in f.get_feature_names_out()]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(
                f"feature name(s) {', '.join(clashes)} come from two columns: rename one of "
                "them in the contract"
            )
        self.feature_names_out_ = np.array(names, dtype=object)
        self.n_features_out_ = len(names)

    def transform(self, df: pd.DataFrame | RecordTable) -> np.ndarray:
        """Features of raw rows carrying ``HISTORY_COLUMNS``: float32, shape (n, features)."""
        if not hasattr(self, "families_"):
            raise NotFittedError("FeatureTransformer is not fitted: call fit_transform first")
        self._check_rows(df)
        cols = Columns(df)
        return _stack([f.transform(cols) for f in self.families_], len(df))

    def cycle_hours(self) -> dict[str, float]:
        """Outputs that are a position in a cycle of the clock (hour, weekday) -> its hours."""
        return {
            str(name): hours
            for family in getattr(self, "families_", [])
            if hasattr(family, "cycle_hours")
            for name, hours in family.cycle_hours().items()
        }

    def transform_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """``transform`` as a DataFrame with the feature names, indexed like ``df``."""
        return pd.DataFrame(
            self.transform(df), columns=self.get_feature_names_out(), index=df.index
        )

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output column names, prefixed by family (``text_``, ``num_``, ...)."""
        if not hasattr(self, "feature_names_out_"):
            raise NotFittedError("FeatureTransformer is not fitted")
        return self.feature_names_out_.copy()


def _stack(blocks: list[np.ndarray], n: int) -> np.ndarray:
    return np.hstack(blocks).astype(np.float32) if blocks else np.empty((n, 0), np.float32)


def build_features(cfg) -> FeatureTransformer:
    """An unfitted ``FeatureTransformer``: the text score, the domain pack's families, then a
    core family per role for the contract's columns they leave unread (the pack's
    ``skipped_roles`` aside)."""
    pack = pack_of(cfg)
    text = pack.text_columns(cfg)
    families: list = [TextScorer(text, seed=cfg.training.seed)] if text else []
    families += pack.families(cfg)
    consumed = {name for family in families for name in family.consumes}
    # The entity history (history.py) reads the entity's creation time, when the contract has it.
    created_at = history_spec(cfg).created_at
    if created_at:
        consumed.add(created_at)
    families += role_families(cfg, consumed, skip_roles=pack.skipped_roles)
    return FeatureTransformer(
        families,
        timestamp=cfg.data.timestamp,
        required=tuple(c for c in (cfg.data.entity, *text) if c),
        history=history_columns(cfg),
    )
