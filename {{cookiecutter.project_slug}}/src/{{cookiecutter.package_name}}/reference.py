"""The reference a model is monitored against, built from held-out rows as serving sees them.

Evaluation calls :func:`build_reference` on the validation split (later than training, never
trained on) and stores the result in the bundle. Serving logs the same quantities per request
and ``monitor`` compares a window of the log with it:

- ``features``: the model's input features, computed by the fitted transformer exactly as at
  serving time (not the out-of-fold values training used), and the contract's raw numeric
  columns the model does not compute itself;
- ``cycles``: the features that are a position in a clock's cycle (hour, weekday) -> the
  cycle's hours: a window shorter than that is not judged on them;
- ``score``: the model's scores; ``positive_rate`` / ``predicted_positive_rate``;
- ``categories`` and ``text``: profiles of the raw categorical and text columns
  (``profiles.input_profiles``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bundle import ModelBundle
from .distributions import reference_distributions
from .profiles import input_profiles

REFERENCE_VERSION = 2


def model_features(bundle: ModelBundle, x) -> pd.DataFrame:
    """The model input ``x`` as named columns, or an empty frame when it is not a dense matrix
    with one column per ``feature_names`` entry (a TF-IDF baseline's sparse input)."""
    names = bundle.metadata.get("feature_names") or []
    if isinstance(x, pd.DataFrame):
        return x
    if isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == len(names):
        return pd.DataFrame(x, columns=names)
    return pd.DataFrame(index=range(x.shape[0] if hasattr(x, "shape") else 0))


def build_reference(
    cfg,
    bundle: ModelBundle,
    frame: pd.DataFrame,
    *,
    labels: np.ndarray | None = None,
    source: str = "validation",
) -> dict:
    """Reference distributions of ``bundle`` on ``frame`` (raw canonical rows with history)."""
    timestamp = cfg.data.timestamp
    if timestamp and timestamp in frame:  # oldest first: the text profile holds out the latest rows
        order = np.argsort(frame[timestamp].to_numpy(), kind="stable")
        frame = frame.iloc[order]
        labels = None if labels is None else np.asarray(labels)[order]
    x = bundle.transform(frame)
    scores = bundle.score_transformed(x)
    features = model_features(bundle, x)
    features.index = frame.index
    numeric = [c.name for c in cfg.data.columns_with("numeric") if c.name in frame]
    extra = [c for c in numeric if c not in features.columns]
    if extra:
        features = pd.concat([features, frame[extra]], axis=1)
    reference = reference_distributions(features, scores, labels)
    reference.update(input_profiles(cfg, frame))
    reference["version"] = REFERENCE_VERSION
    reference["source"] = source
    reference["score_source"] = source
    reference["predicted_positive_rate"] = float(np.mean(scores >= bundle.threshold))
    cycles = getattr(bundle.features, "cycle_hours", None)
    reference["cycles"] = {n: h for n, h in (cycles() if cycles else {}).items() if n in features}
    return reference
