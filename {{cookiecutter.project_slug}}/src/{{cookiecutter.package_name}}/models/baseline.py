"""The baseline (the floor a tuned model must beat): a logistic regression on the contract's roles.

One scikit-learn Pipeline on raw canonical rows, so the bundle has no separate feature
transformer. A ColumnTransformer built from the contract's column roles feeds one logistic
regression (class weights balance the classes):

- ``text`` columns joined into one document, word TF-IDF;
- ``numeric`` columns as floats, missing values imputed with the median plus a missing flag,
  standardised;
- ``categorical`` columns one-hot encoded, values rarer than ``ONEHOT["min_frequency"]`` (and
  beyond the ``max_categories`` commonest) pooled as "infrequent", unseen values too.

A role without columns in the training data is left out (no text: no TF-IDF). Columns missing
from rows being scored are treated as empty, as serving may send a row without optional fields.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..bundle import ModelBundle, build_bundle, save_bundle
from ..config import SystemConfig
from ..features.columns import Columns
from ..features.numeric import clip_float32
from .training import TrainResult, read_labelled, targets

# Words only: bigrams triple the vectorizer's time for a floor model. Words seen once are noise;
# the cap bounds the model for any corpus size.
TFIDF = {"ngram_range": (1, 1), "min_df": 2, "max_features": 200_000, "sublinear_tf": True}
# Text models underfit at the default C=1; "balanced" weights the rarer class up.
LOGISTIC = {"class_weight": "balanced", "C": 4.0, "max_iter": 1000}
# Categories: the commonest values get a column each; rare ones share the "infrequent" one.
ONEHOT = {"min_frequency": 10, "max_categories": 50}
ROLES = ("text", "numeric", "categorical")
MISSING = "<missing>"


def join_text(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One document per row: the text columns joined by newlines; a null or absent column is
    empty (serving may send a row without its optional urls)."""
    parts = [
        frame[c].astype("string").fillna("")
        if c in frame
        else pd.Series("", index=frame.index, dtype="string")
        for c in columns
    ]
    joined = parts[0].str.cat(parts[1:], sep="\n") if len(parts) > 1 else parts[0]
    return joined.to_numpy(dtype=object)


def numbers(frame: pd.DataFrame) -> np.ndarray:
    """The columns as float64 (unparseable or missing: NaN; beyond float32: clipped)."""
    cols = Columns(frame)
    values = [clip_float32(cols.numbers(c)) for c in frame.columns]
    return np.column_stack(values) if values else np.empty((len(frame), 0))


def categories(frame: pd.DataFrame) -> np.ndarray:
    """The columns as category strings (missing or empty: ``MISSING``), object array."""
    cols = Columns(frame)
    out = np.empty((len(frame), frame.shape[1]), dtype=object)
    for j, c in enumerate(frame.columns):
        out[:, j] = [MISSING if v is None else v for v in cols.categories(c)]
    return out


def contract_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with exactly ``columns`` (an absent one becomes null)."""
    if all(c in frame for c in columns):
        return frame
    return frame.reindex(columns=list(columns))


def role_columns(cfg: SystemConfig, frame: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """The contract's text, numeric and categorical columns present in ``frame``; error when
    there are none at all."""
    found = {
        role: tuple(c.name for c in cfg.data.columns_with(role) if c.name in frame)
        for role in ROLES
    }
    if not any(found.values()):
        wanted = [c.name for role in ROLES for c in cfg.data.columns_with(role)]
        raise ValueError(
            "the baseline needs a text, numeric or categorical column; "
            f"none of {wanted} is in the data"
        )
    return found


def build_pipeline(roles: dict[str, tuple[str, ...]], seed: int):
    """The unfitted baseline: per-role encoders side by side -> logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    # partials of module functions (not lambdas) so the fitted pipeline pickles.
    encoders = {
        "text": lambda: make_pipeline(
            FunctionTransformer(partial(join_text, columns=roles["text"])),
            TfidfVectorizer(dtype=np.float32, **TFIDF),
        ),
        "numeric": lambda: make_pipeline(
            FunctionTransformer(numbers),
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
        ),
        "categorical": lambda: make_pipeline(
            FunctionTransformer(categories),
            OneHotEncoder(handle_unknown="infrequent_if_exist", dtype=np.float32, **ONEHOT),
        ),
    }
    every = tuple(c for role in ROLES for c in roles[role])
    return Pipeline(
        [
            ("columns", FunctionTransformer(partial(contract_columns, columns=every))),
            (
                "roles",
                ColumnTransformer(
                    [(role, encoders[role](), list(roles[role])) for role in ROLES if roles[role]]
                ),
            ),
            ("logistic", LogisticRegression(random_state=seed, **LOGISTIC)),
        ]
    )


def train_baseline(cfg: SystemConfig, train_df: pd.DataFrame) -> ModelBundle:
    """Fit the baseline on labelled raw rows; a bundle of kind ``baseline`` (threshold 0.5 until
    evaluation chooses one on validation)."""
    y = targets(cfg, train_df, what="training data")
    roles = role_columns(cfg, train_df)
    model = build_pipeline(roles, cfg.training.seed)
    # Fit step by step to reuse the training matrix for the training scores (vectorising the
    # text is most of the cost). The slice shares its steps with ``model``.
    x = model[:-1].fit_transform(train_df, y)
    scores = model.named_steps["logistic"].fit(x, y).predict_proba(x)[:, 1]
    params = {
        **{f"{role}_columns": list(roles[role]) for role in ROLES},
        "tfidf": {k: list(v) if isinstance(v, tuple) else v for k, v in TFIDF.items()},
        "onehot": ONEHOT,
        "logistic": LOGISTIC,
        "inputs": int(x.shape[1]),
    }
    if roles["text"]:
        tfidf = model.named_steps["roles"].named_transformers_["text"][-1]
        params["vocabulary"] = len(tfidf.vocabulary_)
    return build_bundle(
        cfg,
        "baseline",
        None,
        model,
        train_df,
        params=params,
        train_scores=scores,
    )


def run(
    cfg: SystemConfig, train_path: Path, out_dir: Path, *, progress: bool = True
) -> TrainResult:
    """Train the baseline on ``train_path`` (Parquet) and save its bundle to ``out_dir``."""
    from rich.console import Console

    start = time.perf_counter()
    train_df = read_labelled(cfg, train_path, "training")
    message = f"Training the baseline on {len(train_df):,} rows (logistic regression on the roles)"
    with Console(stderr=True).status(message) if progress else nullcontext():
        bundle = train_baseline(cfg, train_df)
        save_bundle(bundle, out_dir)
    return TrainResult(
        kind="baseline",
        bundle_dir=Path(out_dir),
        rows=len(train_df),
        positive_rate=float(bundle.metadata["training"]["positive_rate"]),
        seconds=time.perf_counter() - start,
    )
