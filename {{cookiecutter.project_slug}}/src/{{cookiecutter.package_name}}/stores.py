"""The durable stores' URLs, and the check that a cluster run reaches real ones.

Every store is a SQLAlchemy URL (MLflow's tracking URI may also be an ``http(s)://`` tracking
server). A plain ``postgresql://`` URL would make SQLAlchemy load psycopg2, which the project
does not install: :func:`sqlalchemy_url` rewrites it to psycopg 3 for every store, through
``SystemConfig.sqlite_url``, which each store's URL passes through.

On a cluster each task runs in its own throwaway pod: a SQLite file (the contract's local
default) dies with the pod, so a registry, a study or an entity store there is silently lost.
:func:`require_durable` turns that into a one-line error in the run's first task naming the
Secret key to set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import SystemConfig

# Set to "true" by the command kfp compiles for every lightweight component: a task of a kfp
# run. kfp.local runs the same command; the project's local runner sets LOCAL_RUN_ENV so that
# its tasks may keep the contract's SQLite files.
KFP_RUNTIME_ENV = "_KFP_RUNTIME"
LOCAL_RUN_ENV = "PIPELINE_LOCAL_RUN"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
OPTUNA_ENV = "OPTUNA_STORAGE"
ENTITY_STORE_ENV = "ENTITY_STORE_URL"
PREDICTION_LOG_ENV = "PREDICTION_LOG_URL"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) as psycopg 3 (``postgresql+psycopg://``).

    A URL naming its driver (``postgresql+psycopg2://``) and every other scheme is kept.
    """
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def redacted(url: str) -> str:
    """A store URL safe to print and log: the password hidden; a URL SQLAlchemy cannot parse
    keeps only its scheme."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL (another backend): keep the scheme only
        return url.split("://", 1)[0] + "://..."


def on_cluster() -> bool:
    """Is this a task of a kfp run on a cluster (not this project's local runner)?"""
    return os.environ.get(KFP_RUNTIME_ENV, "").lower() == "true" and not os.environ.get(
        LOCAL_RUN_ENV
    )


def optuna_storage(cfg: SystemConfig, storage: str | None = None) -> str:
    """The Optuna storage: the argument, ``$OPTUNA_STORAGE``, or ``training.optuna.storage``."""
    return cfg.sqlite_url(storage or os.environ.get(OPTUNA_ENV) or cfg.training.optuna.storage)


def entity_store_url(cfg: SystemConfig, url: str | None = None) -> str:
    """The entity store: the argument, ``$ENTITY_STORE_URL``, or ``serving.entity_store_url``."""
    return cfg.sqlite_url(url or os.environ.get(ENTITY_STORE_ENV) or cfg.serving.entity_store_url)


def prediction_log_url(cfg: SystemConfig, url: str | None = None) -> str:
    """The prediction log: the argument, ``$PREDICTION_LOG_URL``, or the contract's."""
    return cfg.sqlite_url(
        url or os.environ.get(PREDICTION_LOG_ENV) or cfg.serving.prediction_log_url
    )


@dataclass(frozen=True)
class Store:
    key: str  # the Secret key (and environment variable) that sets it
    what: str
    url: str


def stores(cfg: SystemConfig, *, window: bool = False) -> list[Store]:
    """The stores a training run uses, with the URLs this process would use; ``window``: the
    run reads its data from the prediction log (``data_source=window``)."""
    found = [
        Store(TRACKING_ENV, "MLflow tracking and registry", cfg.tracking_uri),
        Store(OPTUNA_ENV, "Optuna study", optuna_storage(cfg)),
    ]
    if cfg.data.entity:  # records without an entity have no history to store
        found.append(Store(ENTITY_STORE_ENV, "entity store", entity_store_url(cfg)))
    if window:
        found.append(Store(PREDICTION_LOG_ENV, "prediction log", prediction_log_url(cfg)))
    return found


class StoreError(RuntimeError):
    """A store that would not outlive the pod it is written from."""


# Schemes of an MLflow tracking store whose artifacts outlive the pod: a tracking server serves
# (proxies) them. With a database URI MLflow puts a new experiment's artifacts under ./mlruns of
# the pod that created it, and the next task cannot find the model.
_TRACKING_SERVER_SCHEMES = ("http://", "https://", "databricks")


def problem(store: Store) -> str | None:
    """Why ``store`` would not outlive a pod, or None."""
    if not store.url:
        return "unset"
    if store.url.startswith("sqlite"):
        return f"now {store.url}"
    if store.key == TRACKING_ENV and not store.url.startswith(_TRACKING_SERVER_SCHEMES):
        return (
            f"now {store.url.split('://', 1)[0]}://...: a database URI keeps the model artifacts "
            "in the pod; use the tracking server's http(s) URL"
        )
    return None


def require_durable(cfg: SystemConfig, secret: str, *, window: bool = False) -> None:
    """Raise :class:`StoreError` naming each Secret key whose store would die with the pod."""
    missing = [(s, why) for s in stores(cfg, window=window) if (why := problem(s))]
    if missing:
        keys = ", ".join(f"{s.key} ({s.what}, {why})" for s, why in missing)
        raise StoreError(
            f"on a cluster every store must outlive its pod: set {keys} in the Secret "
            f"{secret!r} (deploy/kubeflow/README.md)"
        )
