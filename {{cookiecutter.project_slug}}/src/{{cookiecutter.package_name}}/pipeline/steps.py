"""What each pipeline step does, in plain Python: the kfp components are one-line calls into here.

A step takes the contract path, plain values and kfp artifacts (anything with ``.path`` and
``.metadata``: a kfp ``Artifact`` or a stand-in), calls one stage function and describes its
outputs. Steps never import one another; what flows between them is the artifacts.

A step's arguments carry the names of its kfp component's (:mod:`.dag` wires both by name).

Every step appends one record (task, status, seconds, key metrics, outputs) to the JSON-lines
file named by ``$PIPELINE_JOURNAL`` when it is set: the local runners read it back for their
table, and the tests read it to see which branch really ran. On a cluster the variable is not
set and the same line goes to the step's log instead.

``$PIPELINE_IN_PROJECT`` is 1 when the in-process walk runs a step inside the project (``make
train``): it then shows progress bars and keeps what a person looks at in the project's
folders (GX data docs, tuning plots), as the stage commands do. In a pod these would be
working copies that die with it, and its log is no terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import stores as durable
from ..config import SystemConfig, load_config
from . import reports

JOURNAL_ENV = "PIPELINE_JOURNAL"
IN_PROJECT_ENV = "PIPELINE_IN_PROJECT"
# Where the artifacts of one step are, inside their folders.
RAW_FILE = "records.parquet"
# get-data's source that reads the labelled window from the prediction log (data/window.py).
WINDOW_SOURCE = "window"
VALIDATED_FILE = "validated.parquet"
PREDICTIONS_FILE = "predictions.parquet"
PASSED, PARTIAL, FAILED = "passed", "partial", "failed"


def load(config_path: str, tracking_uri: str = "", *, stores: bool = False) -> SystemConfig:
    """The contract for a step; a non-empty ``tracking_uri`` wins over the Secret and contract.

    MLflow's URI is chosen in this order: the pipeline parameter, ``$MLFLOW_TRACKING_URI``
    (from the Kubernetes Secret on a cluster), then ``training.mlflow.tracking_uri``. When the
    contract's folder is read-only, its relative paths resolve under the working directory.
    With ``stores``, a task of a cluster run fails unless every store outlives its pod
    (:func:`..stores.require_durable`): the steps that get the runtime Secret say so.
    """
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    cfg = load_config(config_path or None)
    if not os.access(cfg.root, os.W_OK):
        # In the image the contract sits read-only under /etc: the contract's relative paths
        # (Optuna and entity-store databases, GX context, a fallback MLflow store) go to the
        # step's working directory instead.
        work = Path.cwd()
        print(f"{cfg.root} is read-only: the contract's relative paths resolve under {work}")
        cfg = cfg.model_copy(update={"root": work})
    if stores and durable.on_cluster():
        from .pipeline import secret_name

        durable.require_durable(cfg, secret_name(cfg))
    return cfg


@contextmanager
def journal(task: str) -> Iterator[dict[str, Any]]:
    """Time the step and record its outcome; the step fills ``metrics`` and ``outputs``."""
    record: dict[str, Any] = {"task": task, "started": time.time(), "metrics": {}, "outputs": {}}
    start = time.perf_counter()
    try:
        yield record
    except BaseException as exc:
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        record["status"] = "succeeded"
    finally:
        record["seconds"] = round(time.perf_counter() - start, 3)
        _write(record)


def _write(record: dict[str, Any]) -> None:
    line = json.dumps(record, default=str)
    path = os.environ.get(JOURNAL_ENV)
    if not path:
        print(f"[journal] {line}", flush=True)
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def _in_project() -> bool:
    return os.environ.get(IN_PROJECT_ENV) == "1"


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """The records a run wrote, in the order the steps finished."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _folder(artifact: Any) -> Path:
    folder = Path(artifact.path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _metadata(artifact: Any, **values: Any) -> None:
    # kfp shows artifact metadata in the UI; values must be JSON scalars.
    artifact.metadata.update({k: v for k, v in values.items() if v is not None})


# ---------------------------------------------------------------------------------------------
# Data


def get_data(
    config_path: str, source: str, rows: int, data: Any, mlflow_tracking_uri: str = ""
) -> None:
    """Generate ``rows`` synthetic records (``source`` = ``generate``) or ingest ``source``.

    The run's first task: on a cluster it fails here when a store would die with its pod.
    """
    _get_data("get-data", config_path, source, rows, data, mlflow_tracking_uri)


def ingest_data(config_path: str, source: Any, data: Any, mlflow_tracking_uri: str = "") -> None:
    """Ingest an imported Dataset artifact (the first task of the ``data_uri`` variant).

    On a cluster its path is where the launcher downloaded the object; a ``file://`` URI
    (a local run's importer keeps the URI as it is) is read where it points.
    """
    path = str(source.path)
    if path.startswith("file://"):
        path = path[len("file://") :]
    _get_data(
        "ingest-data", config_path, path, 0, data, mlflow_tracking_uri, origin=str(source.uri)
    )


def _get_data(
    task: str,
    config_path: str,
    source: str,
    rows: int,
    data: Any,
    mlflow_tracking_uri: str,
    origin: str | None = None,
) -> None:
    with journal(task) as record:
        cfg = load(config_path, mlflow_tracking_uri, stores=True)
        target = _folder(data) / RAW_FILE
        if source.strip().lower() == WINDOW_SOURCE:
            from ..data import window

            if durable.on_cluster():
                from .pipeline import secret_name

                durable.require_durable(cfg, secret_name(cfg), window=True)

            summary = window.run(cfg, target)
            print(summary.line(), flush=True)
            count, positives, origin = summary.rows, summary.positives, "labelled window"
        elif source.strip().lower() in ("", "generate", "synthetic"):
            from ..data import synthetic

            summary = synthetic.run(
                cfg, target, rows=rows, seed=cfg.training.seed, days=30, progress=_in_project()
            )
            count, positives, origin = summary.rows, summary.positives, "generated"
        else:
            from ..data import ingest

            result = ingest.run(cfg, cfg.path(source), target, progress=_in_project())
            print(result.counts.summary(), flush=True)
            if not result.counts.ingested:
                raise ValueError(f"{source}: nothing ingested ({result.counts.summary()})")
            count, origin = result.counts.ingested, origin or str(source)
            label = cfg.data.column("label").name
            positives = int((result.records[label] == cfg.problem.positive_class).sum())
        rate = positives / max(count, 1)
        _metadata(data, rows=count, positive_rate=round(rate, 4), source=origin)
        record["metrics"] = {"rows": count, "positive_rate": rate, "source": origin}
        record["outputs"]["data"] = str(target)


def validate_data(config_path: str, raw: Any, validated: Any, report: Any) -> tuple[str, str]:
    """Validate against the contract; never fails on bad data (``check-data`` does).

    Returns the status (``passed``, ``partial``: the valid remainder is used, or ``failed``)
    decided by ``validate.decide``, the rule ``data validate`` applies too, and the one-line
    summary. The report is a Markdown artifact the Kubeflow UI shows.
    """
    with journal("validate-data") as record:
        from ..data import validate

        cfg = load(config_path)
        out_dir = _folder(validated)
        # get-data's folder, or (in the in-process walk) the contract's data file itself.
        source = Path(raw.path)
        source = source / RAW_FILE if source.is_dir() else source
        result = validate.run(cfg, source, out_dir, docs=_in_project())
        status = validate.decide(result).status
        Path(report.path).write_text(reports.validation_markdown(result), encoding="utf-8")
        _metadata(validated, rows=len(result.valid), status=status)
        print(result.summary(), flush=True)
        for failure in result.failures + result.remainder_failures:
            print(f"  FAILED {failure.line()}", flush=True)
        if result.quarantine_path:
            print(f"quarantine: {result.quarantine_path}", flush=True)
        if result.docs_path:
            print(f"data docs: {result.docs_path}", flush=True)
        record["metrics"] = {
            "status": status,
            "rows": result.rows,
            "checks": result.checks,
            "failed_checks": len(result.failures),
            "quarantined": len(result.quarantine),
            "quarantined_share": result.quarantined_share,
            "valid_rows": len(result.valid),
        }
        record["outputs"] = {"report": report.path, "validated": str(out_dir)}
        return status, result.summary()


def check_data(status: str, summary: str) -> None:
    """Fail the run when validation refused the data (``validate.decide``): nothing is trained
    on it. A ``partial`` status goes on with the valid remainder."""
    with journal("check-data") as record:
        record["metrics"] = {"status": status}
        if status == FAILED:
            raise RuntimeError(
                f"data validation failed, nothing is trained on this data: {summary} "
                "(see the validate-data report)"
            )
        print(f"data validation {status}: {summary}", flush=True)


def split_data(config_path: str, validated: Any, splits: Any) -> None:
    """Split the validated rows by time into train / validation / test."""
    with journal("split-data") as record:
        from ..data import split

        cfg = load(config_path)
        result = split.run(cfg, Path(validated.path) / VALIDATED_FILE, _folder(splits))
        print(result.summary(), flush=True)
        counts = {name: info["rows"] for name, info in result.parts.items()}
        _metadata(splits, **counts)
        record["metrics"] = counts
        record["outputs"]["splits"] = splits.path


def build_features(config_path: str, splits: Any, features: Any) -> None:
    """Attach point-in-time entity history and fill the entity store.

    The store is ``$ENTITY_STORE_URL`` when set (the Secret on a cluster), else the contract's.
    """
    with journal("build-features") as record:
        from ..features import build

        cfg = load(config_path, stores=True)
        store_url = durable.entity_store_url(cfg)
        result = build.run(cfg, Path(splits.path), _folder(features), store_url=store_url)
        print(result.summary(), flush=True)
        _metadata(features, entities=result.entities, label_cutoff=result.label_cutoff)
        record["metrics"] = {"entities": result.entities, **result.rows}
        record["outputs"]["features"] = features.path


# ---------------------------------------------------------------------------------------------
# Models


def train_baseline(config_path: str, features: Any, baseline: Any) -> None:
    """TF-IDF + logistic regression on the train split: the bar the tuned model must clear."""
    with journal("train-baseline") as record:
        from ..models import baseline as baseline_stage

        cfg = load(config_path)
        train = Path(features.path) / "train.parquet"
        result = baseline_stage.run(cfg, train, _folder(baseline), progress=_in_project())
        print(result.summary(), flush=True)
        _metadata(baseline, kind="baseline", rows=result.rows)
        record["metrics"] = {"rows": result.rows}
        record["outputs"]["baseline"] = baseline.path


def tune_model(
    config_path: str,
    features: Any,
    trials: int,
    timeout_s: int,
    mlflow_tracking_uri: str,
    candidate: Any,
    report: Any,
) -> None:
    """The contract's estimator tuned with Optuna on validation PR-AUC; trials nest under one
    MLflow run."""
    with journal("tune-model") as record:
        from ..models import tune

        cfg = load(config_path, mlflow_tracking_uri, stores=True)
        folder = Path(features.path)
        # The plots go into the HTML report and MLflow; in a pod, not into the project's reports/.
        keep = cfg.path("reports/tuning") if _in_project() else None
        with (
            contextlib.nullcontext(keep)
            if keep
            else tempfile.TemporaryDirectory(prefix="tuning-") as plots
        ):
            result = tune.run(
                cfg,
                folder / "train.parquet",
                folder / "validation.parquet",
                _folder(candidate),
                trials=trials,
                timeout_s=timeout_s,
                progress=_in_project(),
                report_dir=Path(plots),
            )
            Path(report.path).write_text(reports.tuning_html(result), encoding="utf-8")
        print(result.summary(), flush=True)
        _metadata(
            candidate,
            kind=result.bundle.kind,
            best_val_pr_auc=round(result.best_value, 6),
            mlflow_run_id=result.mlflow_run_id,
        )
        record["metrics"] = {
            "trials": result.trials_run,
            "pruned": result.pruned,
            "best_val_pr_auc": result.best_value,
        }
        record["outputs"] = {"candidate": candidate.path, "report": report.path}


def evaluate_model(
    config_path: str,
    features: Any,
    candidate: Any,
    baseline: Any,
    evaluated: Any,
    evaluation: Any,
    metrics: Any,
    model_card: Any,
    report: Any,
    mlflow_tracking_uri: str = "",
) -> tuple[str, str]:
    """Threshold on validation, metrics on test, the gate: contract met and baseline beaten.

    The candidate is copied to ``evaluated`` first (evaluation writes the threshold into the
    bundle, and a step must not modify its inputs). Returns ``("passed" | "failed", reasons)``.
    """
    with journal("evaluate-model") as record:
        from ..models import evaluate

        # The test metrics go to the tuning run in MLflow: the shared tracking store.
        cfg = load(config_path, mlflow_tracking_uri, stores=True)
        folder = Path(features.path)
        bundle_dir = Path(evaluated.path)
        if bundle_dir.exists():
            shutil.rmtree(bundle_dir)
        shutil.copytree(candidate.path, bundle_dir)
        result = evaluate.run(
            cfg,
            bundle_dir,
            folder / "validation.parquet",
            folder / "test.parquet",
            _folder(evaluation),
            baseline_dir=Path(baseline.path),
            history=folder / "train.parquet",
        )
        body = json.loads(result.evaluation_path.read_text(encoding="utf-8"))
        reasons = list(result.contract_reasons)
        selection = body["selection"]
        if selection.get("beats_baseline") is False:
            reasons.append(
                f"{selection['metric']} {selection['candidate']:.4f} does not beat the "
                f"baseline's {selection['baseline']:.4f}"
            )
        gate = FAILED if reasons else PASSED
        for key in ("precision", "recall", "f1", "roc_auc", "pr_auc"):
            if result.test.get(key) is not None:
                metrics.log_metric(f"test_{key}", float(result.test[key]))
        metrics.log_metric("threshold", float(result.choice.threshold))
        if selection.get("baseline") is not None:
            metrics.log_metric(f"baseline_test_{selection['metric']}", float(selection["baseline"]))
        if Path(model_card.path).resolve() != result.model_card_path.resolve():
            shutil.copyfile(result.model_card_path, model_card.path)
        Path(report.path).write_text(
            reports.evaluation_html(cfg, body, result, reasons), encoding="utf-8"
        )
        _metadata(evaluated, kind=body["kind"], threshold=float(result.choice.threshold), gate=gate)
        record["metrics"] = {
            "gate": gate,
            **{k: result.test.get(k) for k in ("precision", "recall", "pr_auc")},
            "reasons": reasons,
        }
        record["outputs"] = {
            "evaluation": str(result.evaluation_path),
            "model_card": model_card.path,
            "report": report.path,
        }
        print(f"gate {gate}" + "".join(f"\n  - {r}" for r in reasons), flush=True)
        return gate, "; ".join(reasons)


def report_gate_failure(reasons: str, note: Any) -> None:
    """The else branch: the run ends successfully, unpromoted, and says why."""
    with journal("report-gate-failure") as record:
        text = reports.gate_failure_markdown(reasons)
        Path(note.path).write_text(text, encoding="utf-8")
        print(text, flush=True)
        record["metrics"] = {"reasons": reasons}
        record["outputs"]["note"] = note.path


def promote_model(
    config_path: str,
    mlflow_tracking_uri: str,
    promotion_margin: float,
    promote_to: str,
    features: Any,
    evaluated: Any,
    evaluation: Any,
    decision: Any,
) -> tuple[str, int]:
    """Register the evaluated bundle in MLflow and gate it: champion, challenger or rejected
    (at most challenger with ``promote_to="challenger"``)."""
    with journal("promote-model") as record:
        import pandas as pd

        from ..models import registry

        cfg = with_margin(load(config_path, mlflow_tracking_uri, stores=True), promotion_margin)
        body = json.loads((Path(evaluation.path) / "evaluation.json").read_text(encoding="utf-8"))
        info = registry.register_bundle(cfg, Path(evaluated.path))
        print(f"registered {info.uri}", flush=True)
        test_df = pd.read_parquet(Path(features.path) / "test.parquet")
        baseline_metrics = (body.get("baseline") or {}).get("test", {})
        result = registry.promote(
            cfg, info.version, test_df, baseline_metrics=baseline_metrics, promote_to=promote_to
        )
        lines = result.summary()
        Path(decision.path).write_text(reports.decision_markdown(info.uri, lines), encoding="utf-8")
        print("\n".join(lines), flush=True)
        record["metrics"] = {"outcome": result.outcome, "version": info.version}
        record["outputs"] = {"model_uri": info.uri, "decision": decision.path}
        return result.outcome, int(info.version)


def with_margin(cfg: SystemConfig, margin: float) -> SystemConfig:
    """The contract with another promotion margin (a pipeline parameter)."""
    if not 0 <= margin < 1:
        raise ValueError(f"promotion_margin must be in [0, 1), got {margin}")
    offline = cfg.metrics.offline.model_copy(update={"promotion_margin": float(margin)})
    metrics = cfg.metrics.model_copy(update={"offline": offline})
    return cfg.model_copy(update={"metrics": metrics})


def export_serving_bundle(
    config_path: str, mlflow_tracking_uri: str, version: int, outcome: str, serving: Any
) -> None:
    """The registered version's bundle, downloaded and verified, as the serving artifact."""
    with journal("export-serving-bundle") as record:
        from ..bundle import save_bundle
        from ..models import registry

        cfg = load(config_path, mlflow_tracking_uri, stores=True)
        bundle, info = registry.load_registered_bundle(cfg, version)
        folder = _folder(serving)
        save_bundle(bundle, folder)
        served = {
            "model_uri": info.uri,
            "registered_model": info.name,
            "version": info.version,
            "aliases": list(info.aliases),
            "promotion_outcome": outcome,
        }
        (folder / "serving.json").write_text(json.dumps(served, indent=2) + "\n", "utf-8")
        _metadata(serving, model_uri=info.uri, aliases=",".join(info.aliases) or "none")
        record["metrics"] = {"model_uri": info.uri, "aliases": list(info.aliases)}
        record["outputs"]["serving"] = str(folder)


# ---------------------------------------------------------------------------------------------
# Batch scoring (the batch-scoring pipeline's one step)


def score_batch(
    config_path: str, mlflow_tracking_uri: str, records: Any, predictions: Any
) -> tuple[int, int, int]:
    """Score an imported file of records with the registry's champion (``serving.batch``):
    the contract's scoring checks and quarantine, the entity history, every prediction in the
    prediction log. Returns (scored, quarantined, model version); a file the contract refuses
    as a whole fails the task."""
    with journal("score-batch") as record:
        from ..serving import batch

        cfg = load(config_path, mlflow_tracking_uri, stores=True)
        if durable.on_cluster():
            from .pipeline import secret_name

            durable.require_durable(cfg, secret_name(cfg), window=True)
        path = str(records.path)
        if path.startswith("file://"):  # a local run's importer keeps the URI as it is
            path = path[len("file://") :]
        target = _folder(predictions) / PREDICTIONS_FILE
        result = batch.run(cfg, Path(path), target, progress=_in_project())
        print(
            f"scored {result.scored:,} of {result.rows:,} records with {result.model_name} "
            f"v{result.model_version}; {result.quarantined:,} quarantined, {result.from_log:,} "
            f"already in the log; {result.records_per_s:,.0f} records/s scoring",
            flush=True,
        )
        _metadata(
            predictions,
            rows=result.rows,
            scored=result.scored,
            quarantined=result.quarantined,
            model_version=result.model_version,
            source=str(records.uri),
        )
        summary = result.to_dict()
        keys = ("rows", "scored", "quarantined", "from_log", "model_version", "records_per_s")
        record["metrics"] = {k: summary[k] for k in keys}
        record["outputs"]["predictions"] = str(target)
        return result.scored, result.quarantined, result.model_version
