"""Features: one fitted transformer for training and serving, and the entity store.

- ``history``: ``HISTORY_COLUMNS`` and ``attach_history`` (point-in-time entity history, offline);
- ``store``: ``EntityStore`` (the same columns online: materialized aggregates + live sends),
  ``store_backend``: where it keeps them (SQL; the seam for Redis or a feature store);
- ``text``: the text role's out-of-fold score, with ``hashing`` (vectorised n-gram hashing);
  ``columns``: read-once column access for every family;
- ``numeric``, ``categorical``, ``clock``, ``flags``: the core family of each column role, given
  by ``roles.role_families`` the contract columns the domain pack's families do not read;
- ``pipeline``: ``build_features(cfg) -> FeatureTransformer`` (what the model bundle pickles);
- ``build``: the features stage, ``run(cfg, split_dir, out_dir)``.

Names are imported lazily: ``import <package>.features`` does not load scikit-learn.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "HISTORY_COLUMNS": "history",
    "attach_history": "history",
    "EntityStore": "store",
    "FeatureTransformer": "pipeline",
    "build_features": "pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
