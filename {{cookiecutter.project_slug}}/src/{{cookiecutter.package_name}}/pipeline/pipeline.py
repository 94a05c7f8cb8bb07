"""The training pipeline as a kfp v2 DAG, with its parameters' defaults taken from the contract.

The DAG itself is :mod:`.dag` (get data -> validate -> check -> split -> features ->
baseline + tune -> evaluate -> ``dsl.If(gate == "passed")``: register and promote -> export the
serving bundle; ``dsl.Else``: report why the candidate was not promoted, the run still
succeeds); this module wires it into kfp tasks, one per step, without restating it.

The gate is a string compared with a string literal: comparing an int output with a float makes
the compiler emit ``double(...)``, which the local runner cannot evaluate, and then it silently
skips both branches.

Cluster settings (ignored by the local runner): the project image on every step, CPU and memory
requests, retries on the steps that talk to a database, a filesystem or MLflow, caching only
for pure steps, and the stores' URLs (MLflow, Optuna, entity store) from the ``<app>-runtime``
Secret on every task that writes to one. A cluster run needs that Secret: without it each pod
would write its own SQLite files and lose them, so the first task fails naming the missing key
(``stores.require_durable``). The Secret is mounted ``optional`` so that this message, not a
pod that cannot start, is what a user sees; ``optional`` needs a Kubeflow Pipelines backend
2.15 or later (kubeflow/pipelines#12495, deploy/kubeflow/README.md).

No ``from __future__ import annotations`` here: kfp reads the pipeline's annotations as types.
"""

import re
import warnings
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..config import SystemConfig
from ..domain import pack_of
from . import components
from .dag import FAILED, GATE, GET_DATA, INGEST_DATA, PASSED, SCORE_BATCH, TRAINING, TRUNK, Step

PACKAGE = __name__.split(".")[0]
PACKAGE_ENV = "PIPELINE_PACKAGE"

# The variant for real data's parameter: an importer hands the object at ``data_uri`` (s3://,
# minio://, gs://, which the launcher downloads) to ingest-data as a Dataset.
DATA_URI = "data_uri"

# CPU request, memory request, memory limit. Sized for ~1M records a day of training data; the
# tuning step uses every core it gets (the estimator's threads).
RESOURCES: dict[str, tuple[str, str, str]] = {
    "get-data": ("1", "2Gi", "4Gi"),
    "ingest-data": ("1", "2Gi", "4Gi"),
    "validate-data": ("1", "4Gi", "8Gi"),
    "check-data": ("100m", "256Mi", "512Mi"),
    "split-data": ("1", "2Gi", "4Gi"),
    "build-features": ("1", "4Gi", "8Gi"),
    "train-baseline": ("1", "4Gi", "8Gi"),
    "tune-model": ("4", "8Gi", "16Gi"),
    "evaluate-model": ("1", "4Gi", "8Gi"),
    "promote-model": ("1", "4Gi", "8Gi"),
    "export-serving-bundle": ("500m", "2Gi", "4Gi"),
    "report-gate-failure": ("100m", "256Mi", "512Mi"),
    "score-batch": ("1", "4Gi", "8Gi"),
}
# Steps whose failure can be transient (a mounted source, the entity store, MLflow, Optuna's
# database). Validation and evaluation are deterministic: retrying them changes nothing.
RETRIED = {
    "get-data",
    "ingest-data",
    "build-features",
    "tune-model",
    "promote-model",
    "export-serving-bundle",
    # Idempotent: a record's request id is derived from its id, so a retry logs nothing twice.
    "score-batch",
}
# Steps that are pure functions of their input artifacts may be cached; every other step reads
# the outside world or changes it (data source, clock, store, registry).
CACHED = {"split-data", "train-baseline"}
# Steps that write to MLflow, Optuna's database or the entity store get the runtime Secret,
# and so does the first step, which checks it; the others need nothing.
SECRET_TASKS = {
    "get-data",
    "ingest-data",
    "build-features",
    "tune-model",
    "evaluate-model",
    "promote-model",
    "export-serving-bundle",
    "score-batch",
}
# Secret keys exposed as environment variables of the same name. The first three are required
# on a cluster (stores.require_durable), the prediction log's when data_source is "window";
# MLflow's credentials only when its server asks.
SECRET_KEYS = (
    "MLFLOW_TRACKING_URI",
    "OPTUNA_STORAGE",
    "ENTITY_STORE_URL",
    "PREDICTION_LOG_URL",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)
RETRIES = {"num_retries": 2, "backoff_duration": "30s", "backoff_factor": 2.0}


def app_name(cfg: SystemConfig) -> str:
    """The application's name: the last part of ``platform.image`` (the project slug)."""
    name = cfg.platform.image.rstrip("/").rsplit("/", 1)[-1].split(":", 1)[0]
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "ml-system"


def pipeline_name(cfg: SystemConfig, *, imported: bool = False) -> str:
    """The pipeline's name in Kubeflow (lowercase letters, digits, dashes)."""
    return f"{app_name(cfg)}-training" + ("-imported" if imported else "")


def batch_pipeline_name(cfg: SystemConfig) -> str:
    """The batch-scoring pipeline's name in Kubeflow."""
    return f"{app_name(cfg)}-batch-scoring"


def secret_name(cfg: SystemConfig) -> str:
    """The Secret the server already reads (deploy/README.md): one place for the URLs."""
    return f"{app_name(cfg)}-runtime"


def default_image(cfg: SystemConfig) -> str:
    """``platform.image`` tagged with the project version (built from deploy/docker)."""
    return f"{cfg.platform.image}:{__version__}"


def default_arguments(cfg: SystemConfig, *, imported: bool = False) -> dict[str, Any]:
    """The pipeline parameters and their defaults, from the contract (``imported``: the
    variant reading ``data_uri`` through an importer instead of ``data_source`` / ``rows``)."""
    source = cfg.data.source
    data: dict[str, Any] = {
        "data_source": "generate" if source.kind == "synthetic" else str(source.path),
        "rows": pack_of(cfg).sample_rows,
    }
    return {
        # Empty: $SYSTEM_CONFIG, else configs/system.yaml in the image's working directory.
        "config_path": "",
        **({DATA_URI: ""} if imported else data),
        "trials": cfg.training.optuna.trials,
        "timeout_s": cfg.training.optuna.timeout_s,
        # Empty: $MLFLOW_TRACKING_URI from the Secret, else training.mlflow.tracking_uri.
        "mlflow_tracking_uri": "",
        "promotion_margin": float(cfg.metrics.offline.promotion_margin),
        # champion (a run submitted by hand) or challenger (`schedule` and retraining after a
        # monitoring alert: shadow and canary traffic, then `compare`, decide the promotion).
        "promote_to": "champion",
    }


def _kubernetes():
    try:
        from kfp import kubernetes
    except ImportError:  # the compiled spec then lacks the Secret; say so, do not fail
        warnings.warn(
            "kfp-kubernetes is not installed: the stores' URLs will not come from the runtime "
            "Secret, and a cluster run fails in its first task",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return kubernetes


def _configure(cfg: SystemConfig, kubernetes) -> Callable:
    secret = secret_name(cfg)

    def configure(task, name: str):
        cpu, memory, memory_limit = RESOURCES[name]
        task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory_limit)
        task.set_env_variable(PACKAGE_ENV, PACKAGE)
        task.set_caching_options(enable_caching=name in CACHED)
        if name in RETRIED:
            task.set_retry(**RETRIES)
        if kubernetes is not None and name in SECRET_TASKS:
            kubernetes.use_secret_as_env(
                task,
                secret_name=secret,
                secret_key_to_env={k: k for k in SECRET_KEYS},
                optional=True,
            )
        return task

    return configure


def build_pipeline(
    cfg: SystemConfig, *, image: str | None = None, imported: bool = False
) -> Callable:
    """The pipeline function for this contract: call it under ``kfp.local`` or compile it.

    ``imported``: the run's data is the object at the ``data_uri`` parameter, brought in by a
    ``dsl.importer`` as a Dataset artifact (the launcher downloads it into the pod) and
    ingested; otherwise get-data generates or reads ``data_source``.
    """
    from kfp import dsl

    c = components.build(image or default_image(cfg))
    d = default_arguments(cfg, imported=imported)
    configure = _configure(cfg, _kubernetes())
    name = pipeline_name(cfg, imported=imported)
    description = (
        f"Train, evaluate and gate a {cfg.problem.positive_class} classifier against the "
        "contract; promote it in MLflow when it passes."
    )

    if imported:

        @dsl.pipeline(name=name, description=description)
        def imported_pipeline(
            config_path: str = d["config_path"],
            data_uri: str = d[DATA_URI],
            trials: int = d["trials"],
            timeout_s: int = d["timeout_s"],
            mlflow_tracking_uri: str = d["mlflow_tracking_uri"],
            promotion_margin: float = d["promotion_margin"],
            promote_to: str = d["promote_to"],
        ):
            parameters = dict(locals())
            source = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset, reimport=False)
            tasks: dict[str, Any] = {"importer": _Outputs({"artifact": source.output})}
            # ingest-data takes get-data's place: the steps after it read "get-data.data".
            tasks["get-data"] = _add(c, configure, INGEST_DATA, parameters, tasks)
            _wire(c, configure, TRAINING, parameters, tasks)

        return imported_pipeline

    @dsl.pipeline(name=name, description=description)
    def training_pipeline(
        config_path: str = d["config_path"],
        data_source: str = d["data_source"],
        rows: int = d["rows"],
        trials: int = d["trials"],
        timeout_s: int = d["timeout_s"],
        mlflow_tracking_uri: str = d["mlflow_tracking_uri"],
        promotion_margin: float = d["promotion_margin"],
        promote_to: str = d["promote_to"],
    ):
        parameters = dict(locals())
        _wire(c, configure, (GET_DATA, *TRAINING), parameters, {})

    return training_pipeline


def build_batch_pipeline(cfg: SystemConfig, *, image: str | None = None) -> Callable:
    """The batch-scoring pipeline: the object at ``data_uri`` comes in through an importer as
    a Dataset, and ``score-batch`` scores it with the registry's champion into a Dataset of
    predictions (``serving.batch``), logging every prediction for monitoring."""
    from kfp import dsl

    c = components.build(image or default_image(cfg))
    configure = _configure(cfg, _kubernetes())

    @dsl.pipeline(
        name=batch_pipeline_name(cfg),
        description=f"Score a file of records with the {cfg.problem.positive_class} "
        "classifier's champion; log every prediction.",
    )
    def batch_scoring_pipeline(
        config_path: str = "", data_uri: str = "", mlflow_tracking_uri: str = ""
    ):
        parameters = dict(locals())
        source = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset, reimport=True)
        tasks: dict[str, Any] = {"importer": _Outputs({"artifact": source.output})}
        tasks[SCORE_BATCH.task] = _add(c, configure, SCORE_BATCH, parameters, tasks)

    return batch_scoring_pipeline


class _Outputs:
    """A stand-in task whose ``outputs`` are given (the importer's artifact)."""

    def __init__(self, outputs: dict[str, Any]):
        self.outputs = outputs


def _add(c, configure: Callable, step: Step, parameters: dict[str, Any], tasks: dict) -> Any:
    """One kfp task for ``step``: its parameters and its inputs from earlier tasks' outputs."""
    arguments = {argument: parameters[name] for argument, name in step.parameters.items()}
    for argument, ref in step.inputs.items():
        task, _, output = ref.partition(".")
        arguments[argument] = tasks[task].outputs[output]
    task = getattr(c, step.function)(**arguments)
    for earlier in step.after:
        task.after(tasks[earlier])
    return configure(task, step.task)


def _wire(c, configure: Callable, steps, parameters: dict[str, Any], tasks: dict) -> None:
    """Every step in order: the trunk, then the gate's branches under ``dsl.If`` / ``dsl.Else``."""
    from kfp import dsl

    for step in steps:
        if step.branch == TRUNK:
            tasks[step.task] = _add(c, configure, step, parameters, tasks)
    gate_task, _, gate_output = GATE.partition(".")
    with dsl.If(tasks[gate_task].outputs[gate_output] == PASSED, name="gate-passed"):
        for step in steps:
            if step.branch == PASSED:
                tasks[step.task] = _add(c, configure, step, parameters, tasks)
    with dsl.Else(name="gate-failed"):
        for step in steps:
            if step.branch == FAILED:
                tasks[step.task] = _add(c, configure, step, parameters, tasks)
