"""Tracking: where MLflow runs and the registry live (the contract's store), and the experiment.

Both evaluation (which logs its metrics) and the registry (which registers and promotes) point
MLflow here; neither imports the other for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import SystemConfig


def _artifact_root(tracking_uri: str) -> str | None:
    # A local sqlite store keeps artifacts beside the database file, not in whatever folder the
    # command happened to run from (MLflow's default is ./mlruns of the working directory).
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    database = Path(tracking_uri[len(prefix) :]).resolve()
    return (database.parent / "mlruns").as_uri()


def connect(cfg: SystemConfig):
    """Point MLflow at the contract's tracking store (offline) and return an ``MlflowClient``."""
    # Without it, a requirements clash makes MLflow run a pip dry-run against the network.
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow import MlflowClient

    uri = cfg.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(cfg: SystemConfig, client=None) -> str:
    """The id of ``training.mlflow.experiment``, created (artifacts beside the db) if needed."""
    client = client or connect(cfg)
    name = cfg.training.mlflow.experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_root(cfg.tracking_uri))
