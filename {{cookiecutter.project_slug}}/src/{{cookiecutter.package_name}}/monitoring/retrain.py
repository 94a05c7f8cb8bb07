"""Retraining triggered by monitoring: the same training pipeline, capped at challenger.

Scheduled retraining is the pipeline's recurring run (``pipeline schedule``); this module is the
other trigger: ``monitor --retrain-on-alert`` calls :func:`retrain` when drift or quality
alerts fire. It runs the pipeline locally (``kfp.local``) or submits it to Kubeflow
(``monitoring.retrain`` in the contract), on recent labelled data, with ``promote_to=challenger``:
a model that passes the gate becomes the challenger, and live traffic (shadow or canary, then
``compare``) decides whether it replaces the champion. The log holds no raw text, so the
training data is the data source: point ``--retrain-data`` at the latest labelled export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RetrainResult:
    target: str  # local | kubeflow
    succeeded: bool
    outcome: str | None = None  # challenger | champion | rejected | gate_failed | submitted
    version: int | None = None
    detail: str = ""
    run: Any = None

    def summary(self) -> str:
        if self.target == "kubeflow" and self.succeeded:
            return f"retraining submitted to Kubeflow: {self.detail}"
        if not self.succeeded:
            return f"retraining failed: {self.detail}"
        if self.outcome == "gate_failed":
            return f"retrained, but the new model failed the gate: {self.detail}"
        return f"retrained: version {self.version} is {self.outcome}"


def retrain_arguments(
    data: str | None, *, rows: int | None = None, trials: int | None = None
) -> dict[str, Any]:
    """Pipeline arguments of a retraining run."""
    arguments: dict[str, Any] = {"promote_to": "challenger"}
    if data:
        arguments["data_source"] = str(data)
    if rows:
        arguments["rows"] = rows
    if trials:
        arguments["trials"] = trials
    return arguments


def for_cluster(arguments: dict[str, Any]) -> dict[str, Any]:
    """Retraining arguments for a Kubeflow run: the data must be where a pod can get it.

    An object-store URI becomes the imported variant's ``data_uri``; a path on this machine is
    refused (``ValueError``): a pod would look for it in its own empty filesystem.
    """
    source = arguments.get("data_source")
    if source is None:
        return arguments
    if "://" in source and not source.startswith("file://"):
        rest = {k: v for k, v in arguments.items() if k not in ("data_source", "rows")}
        return {**rest, "data_uri": source}
    raise ValueError(
        f"{source}: a path on this machine, which a Kubeflow pod cannot read; upload it to "
        "the object store and pass its URI (s3://, minio://, gs://) as --retrain-data"
    )


def retrain(
    cfg,
    config_path: Path,
    *,
    data: str | None = None,
    rows: int | None = None,
    trials: int | None = None,
    target: str | None = None,
    host: str | None = None,
    client: Any = None,
    reasons: list[str] | None = None,
) -> RetrainResult:
    """Run (or submit) the training pipeline on recent data; the new model can be challenger."""
    from ..pipeline import run as runner

    target = target or cfg.monitoring.retrain
    arguments = retrain_arguments(data, rows=rows, trials=trials)
    if target == "kubeflow":
        why = "; ".join(reasons or []) or "monitoring alert"
        try:
            arguments = for_cluster(arguments)
        except ValueError as exc:
            return RetrainResult("kubeflow", False, detail=str(exc))
        run = runner.submit(
            cfg,
            host,
            arguments=arguments,
            run_name=f"{cfg.training.mlflow.experiment}-retrain",
            client=client,
        )
        run_id = getattr(run, "run_id", None) or getattr(run, "id", None) or "?"
        return RetrainResult("kubeflow", True, "submitted", detail=f"run {run_id} ({why})", run=run)
    result = runner.run_local(cfg, config_path, arguments=arguments)
    if not result.succeeded:
        task = result.failed_task or "a task"
        return RetrainResult("local", False, detail=f"{task}: {result.error}", run=result)
    evaluation = (result.record("evaluate-model") or {}).get("metrics", {})
    if evaluation.get("gate") == "failed":
        reasons_text = evaluation.get("reasons") or "see the evaluation report"
        return RetrainResult("local", True, "gate_failed", detail=str(reasons_text), run=result)
    promotion = (result.record("promote-model") or {}).get("metrics", {})
    return RetrainResult(
        "local", True, promotion.get("outcome"), promotion.get("version"), run=result
    )
