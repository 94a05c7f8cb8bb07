"""The baseline (the floor a tuned model must beat): TF-IDF on the text + logistic regression.

One scikit-learn Pipeline on raw canonical rows, so the bundle has no separate feature
transformer: the contract's text columns (role ``text``: subject, body and urls by default)
are joined into one document, vectorised with word TF-IDF, and scored by a logistic
regression whose class weights balance the classes.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd

from ..bundle import ModelBundle, build_bundle, save_bundle
from ..config import SystemConfig
from .training import TrainResult, read_labelled, targets

# Words only: bigrams triple the vectorizer's time for a floor model. Words seen once are noise;
# the cap bounds the model for any corpus size.
TFIDF = {"ngram_range": (1, 1), "min_df": 2, "max_features": 200_000, "sublinear_tf": True}
# Text models underfit at the default C=1; "balanced" weights the rarer class up.
LOGISTIC = {"class_weight": "balanced", "C": 4.0, "max_iter": 1000}


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


def text_columns(cfg: SystemConfig, frame: pd.DataFrame) -> tuple[str, ...]:
    """The contract's text columns present in ``frame`` (error when there are none)."""
    columns = tuple(c.name for c in cfg.data.columns_with("text") if c.name in frame)
    if not columns:
        wanted = [c.name for c in cfg.data.columns_with("text")]
        raise ValueError(f"the baseline needs a text column; none of {wanted} is in the data")
    return columns


def build_pipeline(columns: tuple[str, ...], seed: int):
    """The unfitted baseline: join text -> TF-IDF -> logistic regression (balanced classes)."""
    from functools import partial

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    return Pipeline(
        [
            # partial of a module function (not a lambda) so the fitted pipeline pickles.
            ("text", FunctionTransformer(partial(join_text, columns=columns))),
            ("tfidf", TfidfVectorizer(dtype=np.float32, **TFIDF)),
            ("logistic", LogisticRegression(random_state=seed, **LOGISTIC)),
        ]
    )


def train_baseline(cfg: SystemConfig, train_df: pd.DataFrame) -> ModelBundle:
    """Fit the baseline on labelled raw rows; a bundle of kind ``baseline`` (threshold 0.5 until
    evaluation chooses one on validation)."""
    y = targets(cfg, train_df, what="training data")
    columns = text_columns(cfg, train_df)
    model = build_pipeline(columns, cfg.training.seed)
    # Fit step by step to reuse the training matrix for the training scores (vectorising the
    # text is most of the cost). The slice shares its steps with ``model``.
    x = model[:-1].fit_transform(train_df, y)
    scores = model.named_steps["logistic"].fit(x, y).predict_proba(x)[:, 1]
    params = {
        "text_columns": list(columns),
        "tfidf": {k: list(v) if isinstance(v, tuple) else v for k, v in TFIDF.items()},
        "logistic": LOGISTIC,
        "vocabulary": len(model.named_steps["tfidf"].vocabulary_),
    }
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
    message = f"Training the baseline on {len(train_df):,} rows (TF-IDF + logistic regression)"
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
