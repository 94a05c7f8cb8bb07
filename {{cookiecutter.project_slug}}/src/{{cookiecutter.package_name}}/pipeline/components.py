"""The pipeline's lightweight kfp components: each a one-line call into :mod:`.steps`.

kfp ships only a component's function body to the container, so every body imports what it
needs itself. The package is found through ``$PIPELINE_PACKAGE``, which the pipeline sets on
every task (src/ cannot spell the package name: it is chosen when the project is generated).
The image already holds the package and its dependencies: nothing is pip-installed at run time.

No ``from __future__ import annotations`` here: kfp reads the annotations as types.
"""

from types import SimpleNamespace
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def get_data(
    config_path: str, source: str, rows: int, mlflow_tracking_uri: str, data: Output[Dataset]
):
    """Generate synthetic records (source=generate), take the labelled window of served
    traffic from the prediction log (source=window) or ingest a file or folder; on a
    cluster, fail first when a store would not outlive its pod."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    steps.get_data(
        config_path=config_path,
        source=source,
        rows=rows,
        mlflow_tracking_uri=mlflow_tracking_uri,
        data=data,
    )


def ingest_data(
    config_path: str, mlflow_tracking_uri: str, source: Input[Dataset], data: Output[Dataset]
):
    """Ingest the imported object (a file or folder the launcher downloaded); on a
    cluster, fail first when a store would not outlive its pod."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    steps.ingest_data(
        config_path=config_path, mlflow_tracking_uri=mlflow_tracking_uri, source=source, data=data
    )


def validate_data(
    config_path: str,
    raw: Input[Dataset],
    validated: Output[Dataset],
    report: Output[Markdown],
) -> NamedTuple("Validation", status=str, summary=str):
    """Check the data against the contract (Great Expectations); write the report."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    return steps.validate_data(config_path=config_path, raw=raw, validated=validated, report=report)


def check_data(status: str, summary: str):
    """Fail the run here when the data is unusable: nothing downstream trains on it."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    steps.check_data(status=status, summary=summary)


def split_data(config_path: str, validated: Input[Dataset], splits: Output[Dataset]):
    """Split by received time into train / validation / test."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    steps.split_data(config_path=config_path, validated=validated, splits=splits)


def build_features(config_path: str, splits: Input[Dataset], features: Output[Dataset]):
    """Attach point-in-time entity history; fill the entity store."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    steps.build_features(config_path=config_path, splits=splits, features=features)


def train_baseline(config_path: str, features: Input[Dataset], baseline: Output[Model]):
    """Train the baseline: logistic regression on the roles (TF-IDF when there is text)."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    steps.train_baseline(config_path=config_path, features=features, baseline=baseline)


def tune_model(
    config_path: str,
    features: Input[Dataset],
    trials: int,
    timeout_s: int,
    mlflow_tracking_uri: str,
    candidate: Output[Model],
    report: Output[HTML],
):
    """Tune the contract's estimator with Optuna; trials are nested MLflow runs."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    steps.tune_model(
        config_path=config_path,
        features=features,
        trials=trials,
        timeout_s=timeout_s,
        mlflow_tracking_uri=mlflow_tracking_uri,
        candidate=candidate,
        report=report,
    )


def evaluate_model(
    config_path: str,
    mlflow_tracking_uri: str,
    features: Input[Dataset],
    candidate: Input[Model],
    baseline: Input[Model],
    evaluated: Output[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    model_card: Output[Markdown],
    report: Output[HTML],
) -> NamedTuple("Gate", gate=str, reasons=str):
    """Choose the threshold, measure the test set, decide the gate (passed / failed)."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    return steps.evaluate_model(
        config_path=config_path,
        mlflow_tracking_uri=mlflow_tracking_uri,
        features=features,
        candidate=candidate,
        baseline=baseline,
        evaluated=evaluated,
        evaluation=evaluation,
        metrics=metrics,
        model_card=model_card,
        report=report,
    )


def report_gate_failure(reasons: str, note: Output[Markdown]):
    """Say why the candidate is not promoted; the run still succeeds."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    steps.report_gate_failure(reasons=reasons, note=note)


def promote_model(
    config_path: str,
    mlflow_tracking_uri: str,
    promotion_margin: float,
    promote_to: str,
    features: Input[Dataset],
    evaluated: Input[Model],
    evaluation: Input[Artifact],
    decision: Output[Markdown],
) -> NamedTuple("Promotion", outcome=str, version=int):
    """Register the model in MLflow and gate it against the champion."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    return steps.promote_model(
        config_path=config_path,
        mlflow_tracking_uri=mlflow_tracking_uri,
        promotion_margin=promotion_margin,
        promote_to=promote_to,
        features=features,
        evaluated=evaluated,
        evaluation=evaluation,
        decision=decision,
    )


def export_serving_bundle(
    config_path: str,
    mlflow_tracking_uri: str,
    version: int,
    outcome: str,
    serving: Output[Model],
):
    """Download the registered version, verify it, and hand it on as the serving bundle."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    steps.export_serving_bundle(
        config_path=config_path,
        mlflow_tracking_uri=mlflow_tracking_uri,
        version=version,
        outcome=outcome,
        serving=serving,
    )


def score_batch(
    config_path: str,
    mlflow_tracking_uri: str,
    records: Input[Dataset],
    predictions: Output[Dataset],
) -> NamedTuple("Scoring", scored=int, quarantined=int, version=int):
    """Score the imported records with the registry's champion; log every prediction."""
    import importlib
    import os

    steps = importlib.import_module(os.environ["PIPELINE_PACKAGE"] + ".pipeline.steps")
    return steps.score_batch(
        config_path=config_path,
        mlflow_tracking_uri=mlflow_tracking_uri,
        records=records,
        predictions=predictions,
    )


FUNCTIONS = (
    get_data,
    ingest_data,
    validate_data,
    check_data,
    split_data,
    build_features,
    train_baseline,
    tune_model,
    evaluate_model,
    report_gate_failure,
    promote_model,
    export_serving_bundle,
    score_batch,
)


def build(image: str) -> SimpleNamespace:
    """The components, running in ``image`` (attribute per function name)."""
    make = dsl.component(base_image=image, install_kfp_package=False)
    return SimpleNamespace(**{f.__name__: make(f) for f in FUNCTIONS})
