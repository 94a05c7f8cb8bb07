"""One fitted transformer from raw rows (+ sender history columns) to the model's input.

``build_features(cfg)`` reads the column names from the contract and returns an unfitted
``FeatureTransformer``; training fits it (``fit_transform`` on the training split), the model
bundle pickles it, and serving calls ``transform`` on each request after
``SenderStore.lookup`` has added the history columns. Training and serving therefore run the
same code on the same kind of input.

Families (``get_feature_names_out`` prefixes): ``text_`` (out-of-fold TF-IDF + logistic
regression score, phrase and style counts), ``sender_`` (reputation, account age, domain),
``structure_`` (links, attachments, images, HTML, reply-to) and ``behavior_`` (velocity,
recipients). Output: dense float32, one row per input row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from ..profiles import STRUCTURED_TEXT
from ..sender_history import _ns
from .behavior import BehaviorFeatures
from .columns import Columns
from .history import missing_history
from .sender import SenderFeatures
from .structure import DEFAULT_COLUMNS, StructureFeatures
from .text import TextScorer, TextStats, time_folds


class FeatureTransformer(TransformerMixin, BaseEstimator):
    """Raw canonical rows with ``HISTORY_COLUMNS`` -> float32 feature matrix.

    ``fit_transform(df, y)`` is what training should call: it fits every family and returns
    out-of-fold values for the label-derived features (text score, TLD risk, the prior of the
    sender spam rate), computed on ``folds`` contiguous time blocks. ``fit(df, y).transform(df)`` would hand the model
    in-sample text scores, which look better on training data than they will be in serving.
    """

    def __init__(
        self,
        *,
        text_columns: tuple[str, ...] = ("subject", "body"),
        timestamp: str = "received_at",
        entity: str = "sender",
        domain: str | None = "sender_domain",
        recipient_count: str | None = "recipient_count",
        columns: dict[str, str | None] | None = None,
        folds: int = 5,
        seed: int = 0,
        text_options: dict | None = None,
    ):
        self.text_columns = text_columns
        self.timestamp = timestamp
        self.entity = entity
        self.domain = domain
        self.recipient_count = recipient_count
        self.columns = columns
        self.folds = folds
        self.seed = seed
        self.text_options = text_options

    def _families(self) -> list:
        text = tuple(self.text_columns)
        return [
            TextScorer(text, folds=self.folds, seed=self.seed, **(self.text_options or {})),
            TextStats(text),
            SenderFeatures(self.entity, self.domain),
            StructureFeatures(self.entity, self.domain, self.columns),
            BehaviorFeatures(self.recipient_count),
        ]

    # -- checks --------------------------------------------------------------------------------

    def _check_rows(self, df: pd.DataFrame) -> None:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"expected a pandas DataFrame of raw rows, got {type(df).__name__}")
        missing = missing_history(df)
        if missing:
            raise ValueError(
                f"missing sender history column(s): {', '.join(missing)}. Add them with "
                "features.history.attach_history(cfg, df) offline, or "
                "SenderStore.lookup(cfg, rows) when serving."
            )
        absent = [c for c in (*self.text_columns, self.entity) if c not in df.columns]
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
        if self.timestamp in df.columns:
            order = np.argsort(_ns(df[self.timestamp], self.timestamp), kind="stable")
        return time_folds(len(df), self.folds, order)

    # -- fitting and transforming --------------------------------------------------------------

    def fit(self, df: pd.DataFrame, y=None, **_):
        """Fit every family on the training rows."""
        self._check_rows(df)
        y = self._labels(df, y)
        cols = Columns(df)
        self.families_ = [family.fit(cols, y) for family in self._families()]
        self._set_names()
        return self

    def fit_transform(self, df: pd.DataFrame, y=None, **_) -> np.ndarray:
        """Fit on the training rows and return their features, label-derived ones out of fold."""
        self._check_rows(df)
        y = self._labels(df, y)
        folds = self._folds(df)
        self.families_ = self._families()
        cols = Columns(df)
        blocks = []
        for family in self.families_:
            if isinstance(family, TextScorer | SenderFeatures):
                blocks.append(family.fit_transform(cols, y, folds=folds))
            else:
                blocks.append(family.fit(cols, y).transform(cols))
        self._set_names()
        return np.hstack(blocks).astype(np.float32)

    def _set_names(self) -> None:
        self.feature_names_out_ = np.concatenate(
            [f.get_feature_names_out() for f in self.families_]
        )
        self.n_features_out_ = len(self.feature_names_out_)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Features of raw rows carrying ``HISTORY_COLUMNS``: float32, shape (n, features)."""
        if not hasattr(self, "families_"):
            raise NotFittedError("FeatureTransformer is not fitted: call fit_transform first")
        self._check_rows(df)
        cols = Columns(df)
        return np.hstack([f.transform(cols) for f in self.families_]).astype(np.float32)

    def transform_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """``transform`` as a DataFrame with the feature names, indexed like ``df``."""
        return pd.DataFrame(
            self.transform(df), columns=self.get_feature_names_out(), index=df.index
        )

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output column names, prefixed by family (``text_``, ``sender_``, ...)."""
        if not hasattr(self, "feature_names_out_"):
            raise NotFittedError("FeatureTransformer is not fitted")
        return self.feature_names_out_.copy()


def build_features(cfg) -> FeatureTransformer:
    """An unfitted ``FeatureTransformer`` wired to the contract's column names.

    Generic roles come from the contract (timestamp, entity key, text columns); the
    spam-specific columns (urls, reply_to, attachments, ...) are used when the contract has
    them under their default names and are treated as empty otherwise.
    """
    names = {c.name for c in cfg.data.columns}
    text = tuple(c.name for c in cfg.data.columns_with("text") if c.name not in STRUCTURED_TEXT)
    columns = {key: (name if name in names else None) for key, name in DEFAULT_COLUMNS.items()}
    return FeatureTransformer(
        text_columns=text,
        timestamp=cfg.data.column("timestamp").name,
        entity=cfg.data.column("entity_key").name,
        domain="sender_domain" if "sender_domain" in names else None,
        recipient_count="recipient_count" if "recipient_count" in names else None,
        columns=columns,
        seed=cfg.training.seed,
    )
