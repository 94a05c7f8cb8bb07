"""The production model: the contract's estimator (``training.model``: XGBoost or LightGBM) on
the fitted features, tuned with Optuna, tracked in MLflow.

- Features: ``build_features(cfg)`` is fitted once on train (``fit_transform``: its text score
  is out-of-fold there) and validation is transformed once; every trial reuses both matrices.
- Search space and fixed parameters: the estimator's (``estimators.py``): tree shape, learning
  rate, row and column sampling, L2; the number of trees comes from early stopping on
  validation logloss (at most ``MAX_ESTIMATORS``); all cores; negatives / positives on train as
  the positive-class weight. Objective: validation PR-AUC (average precision), maximised.
- Optuna (``study.py``): seeded TPE, a median pruner fed by the estimator's validation PR-AUC
  through optuna-integration's pruning callback, RDB storage so a study resumes and workers
  share it. Unless a study name is given, it carries the data fingerprint (and the estimator,
  when not XGBoost): the same data resumes its study, new data starts a new one.
- Tracking: a parent MLflow run ``tune``; each trial is a nested run (params, validation PR-AUC,
  trees, state). The parent gets the best parameters, the Optuna plots and the trials table.
- Result: the best parameters refitted on train (early stopping on validation), bundled with the
  fitted features as kind ``xgboost`` or ``lightgbm`` (the model in the library's own format,
  no pickle).
"""

from __future__ import annotations

import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..bundle import ModelBundle, build_bundle, save_bundle
from ..config import SystemConfig
from .estimators import EARLY_STOPPING_ROUNDS, MAX_ESTIMATORS, Estimator, for_config
from .study import (
    OBJECTIVE,
    REPORT_EVERY,
    data_fingerprint,
    open_study,
    redacted,
    resolve_storage,
    write_reports,
)
from .training import (
    cpu_count,
    duration,
    let_idle_threads_sleep,
    read_labelled,
    scale_pos_weight,
    targets,
)

__all__ = ["EARLY_STOPPING_ROUNDS", "MAX_ESTIMATORS", "TuneResult", "run", "tune"]


@dataclass
class TuneResult:
    """The study, its best trial, and the refitted model bundle."""

    study: Any = field(repr=False)
    estimator: str  # training.model
    study_name: str
    storage: str  # password hidden
    best_params: dict
    best_value: float
    best_trial: int
    bundle: ModelBundle = field(repr=False)
    trials_run: int
    trials_in_study: int
    pruned: int  # in the study
    seconds: float
    trial_seconds: float  # mean model-fit time of this call's trials
    mlflow_run_id: str | None = None
    files: dict[str, Path] = field(default_factory=dict)  # plots and trials table
    bundle_dir: Path | None = None

    def summary(self) -> str:
        """A few lines for the CLI."""
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in self.best_params.items()
        )
        trees = self.bundle.metadata.get("params", {}).get("n_estimators")
        lines = [
            f"study {self.study_name} ({self.storage}): {self.trials_run} trials run, "
            f"{self.trials_in_study} in the study ({self.pruned} pruned)",
            f"best trial {self.best_trial}: {self.estimator} validation PR-AUC "
            f"{self.best_value:.4f} ({params}; {trees} trees)",
            f"{duration(self.seconds)} in all, {self.trial_seconds:.1f} s per trial on average",
        ]
        if self.mlflow_run_id:
            lines.append(f"MLflow run {self.mlflow_run_id} (trials nested under it)")
        if self.files:
            lines.append(f"plots -> {next(iter(self.files.values())).parent}")
        if self.bundle_dir:
            lines.append(f"bundle -> {self.bundle_dir}")
        return "\n".join(lines)


@dataclass
class _Matrices:
    x_train: Any
    y_train: np.ndarray
    x_val: Any
    y_val: np.ndarray
    names: list[str]


def _fit_features(features: Any, train_df, y_train, val_df, y_val, progress: bool) -> _Matrices:
    # fit_transform, not fit + transform: the transformer gives training rows out-of-fold values.
    with _status(f"Fitting features on {len(train_df):,} training rows", progress):
        x_train = features.fit_transform(train_df, y_train)
        x_val = features.transform(val_df)
    if isinstance(x_train, pd.DataFrame):
        names = [str(c) for c in x_train.columns]
    elif hasattr(features, "get_feature_names_out"):
        names = [str(c) for c in features.get_feature_names_out()]
    else:
        names = [f"f{i}" for i in range(np.shape(x_train)[1])]
    return _Matrices(x_train, y_train, x_val, y_val, names)


def _fit(estimator: Estimator, params: dict, data: _Matrices, trial=None) -> tuple[Any, float]:
    """Fit with early stopping on validation; the model and its validation PR-AUC."""
    from sklearn.metrics import average_precision_score

    model = estimator.fit(
        params, data.x_train, data.y_train, data.x_val, data.y_val, trial, every=REPORT_EVERY
    )
    # predict_proba uses the trees up to the best iteration.
    scores = model.predict_proba(data.x_val)[:, 1]
    return model, float(average_precision_score(data.y_val, scores))


class _Objective:
    """One trial: fit with the suggested parameters; a nested MLflow run when tracking."""

    def __init__(
        self, estimator: Estimator, data: _Matrices, fixed: dict, mlflow: Any, study_name: str
    ):
        self.estimator = estimator
        self.data, self.fixed, self.mlflow, self.study_name = data, fixed, mlflow, study_name
        # The best model of this call (trial number, value, model): no refit when it wins.
        self.best: tuple[int, float, Any] | None = None
        # Fit time of each trial run here (not another worker's).
        self.fit_seconds: list[float] = []

    def __call__(self, trial: Any) -> float:
        import optuna

        tuned = self.estimator.search_space(trial)
        mlflow = self.mlflow
        run = mlflow.start_run(run_name=f"trial-{trial.number}", nested=True) if mlflow else None
        pruned, value, trees = None, None, None
        with run or nullcontext():
            if run:
                trial.set_user_attr("mlflow_run_id", run.info.run_id)
                mlflow.log_params(tuned)
                mlflow.set_tags({"optuna_study": self.study_name, "optuna_trial": trial.number})
            start = time.perf_counter()
            try:
                model, value = _fit(self.estimator, {**self.fixed, **tuned}, self.data, trial)
                trees = self.estimator.trees(model)
                trial.set_user_attr("n_estimators", trees)
                if self.best is None or value > self.best[1]:
                    self.best = (trial.number, value, model)
            except optuna.TrialPruned as exc:
                pruned = exc
            seconds = time.perf_counter() - start
            trial.set_user_attr("fit_seconds", seconds)
            self.fit_seconds.append(seconds)
            if run:
                mlflow.set_tag("optuna_state", "PRUNED" if pruned else "COMPLETE")
                metrics = {"fit_seconds": seconds}
                if pruned is None:
                    metrics |= {"val_pr_auc": value, "n_estimators": trees}
                mlflow.log_metrics(metrics)
        # Raised after the nested run closed, so MLflow records it as finished, not failed.
        if pruned is not None:
            raise pruned
        return value


def tune(
    cfg: SystemConfig,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    *,
    trials: int | None = None,
    timeout_s: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    progress: bool = True,
    features: Any = None,
    pruner: Any = None,
    report_dir: Path | None = None,
    track: bool = True,
    n_jobs: int | None = None,
) -> TuneResult:
    """Tune the contract's estimator on ``train_df`` against ``val_df``; refit the best.

    Defaults come from ``training.optuna`` and ``training.seed``; ``trials`` is the number to
    run now (a resumed study keeps its earlier ones). ``features``: an unfitted transformer
    (default ``build_features(cfg)``); ``pruner``: default ``study.default_pruner()``;
    ``report_dir``: where plots and the trials table go (when ``None``, only to MLflow);
    ``track=False`` skips MLflow; ``n_jobs``: training threads (default: all cores). Returns the
    bundle unsaved (:func:`run` saves it).
    """
    import optuna

    start = time.perf_counter()
    settings = cfg.training.optuna
    seed = cfg.training.seed if seed is None else seed
    estimator = for_config(cfg)
    y_train = targets(cfg, train_df, what="training data")
    y_val = targets(cfg, val_df, what="validation data")
    storage_url = resolve_storage(cfg, storage)
    fingerprint = data_fingerprint(train_df, val_df)
    # Each estimator its own study: their search spaces differ. XGBoost keeps the name studies
    # had before the choice existed, so they resume.
    prefix = settings.study_name + ("" if estimator.name == "xgboost" else f"-{estimator.name}")
    name = study_name or f"{prefix}-{fingerprint[:8]}"
    study, previous = open_study(
        storage_url, name, fingerprint, seed=seed, pruner=pruner, estimator=estimator.name
    )
    if features is None:
        from ..features.pipeline import build_features

        features = build_features(cfg)
    data = _fit_features(features, train_df, y_train, val_df, y_val, progress)
    pos_weight = scale_pos_weight(y_train)
    fixed = estimator.fixed_params(seed=seed, pos_weight=pos_weight, n_jobs=n_jobs or cpu_count())

    mlflow = _start_tracking(cfg) if track else None
    # Inside a caller's run (e.g. a pipeline's), the tuning run nests under it.
    parent = mlflow.start_run(run_name="tune", nested=bool(mlflow.active_run())) if mlflow else None
    with parent or nullcontext():
        if parent:
            mlflow.set_tags(
                {
                    "optuna_study": name,
                    "optuna_storage": redacted(storage_url),
                    "estimator": estimator.name,
                }
            )
            mlflow.log_params(
                {
                    "trials_requested": trials or settings.trials,
                    "timeout_s": timeout_s or settings.timeout_s,
                    "sampler_seed": seed + previous,
                    "pruner": type(study.pruner).__name__,
                    "train_rows": len(train_df),
                    "val_rows": len(val_df),
                    "n_features": len(data.names),
                    "scale_pos_weight": round(pos_weight, 6),
                    "data_fingerprint": fingerprint,
                }
            )
        objective = _Objective(estimator, data, fixed, mlflow, name)
        verbosity = optuna.logging.get_verbosity()
        if progress:  # the bar shows the best trial; a log line per trial would break it up
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study.optimize(
                objective,
                n_trials=trials or settings.trials,
                timeout=timeout_s or settings.timeout_s,
                show_progress_bar=progress,
            )
        finally:
            optuna.logging.set_verbosity(verbosity)
        every = study.get_trials(deepcopy=False)
        if not any(t.state == optuna.trial.TrialState.COMPLETE for t in every):
            states = ", ".join(sorted({t.state.name for t in every})) or "none"
            raise RuntimeError(
                f"study {name!r}: no trial completed (states: {states}); "
                "run more trials or allow a longer timeout"
            )
        best = study.best_trial
        if objective.best and objective.best[0] == best.number:
            _, final_value, final = objective.best
        else:  # it ran in an earlier call or another worker: refit (deterministic: same model)
            with _status("Refitting the best parameters on train", progress):
                final, final_value = _fit(estimator, {**fixed, **best.params}, data)
        final = estimator.bundled(final)
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in every)
        folder = nullcontext(report_dir) if report_dir else tempfile.TemporaryDirectory()
        with folder as out:
            files, skipped = write_reports(study, Path(out), seed=seed)
            if parent:
                for path in files.values():
                    mlflow.log_artifact(str(path), artifact_path="tuning")
                mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
                mlflow.log_metrics(
                    {
                        "best_val_pr_auc": best.value,
                        "final_val_pr_auc": final_value,
                        "final_n_estimators": estimator.trees(final),
                        "trials_in_study": len(every),
                        "trials_pruned": pruned,
                    }
                )
                if skipped:
                    mlflow.set_tag(
                        "plots_skipped", "; ".join(f"{k}: {v}" for k, v in skipped.items())
                    )

    bundle = _bundle(cfg, estimator, features, final, train_df, data, best.params, pos_weight)
    bundle.metadata["tuning"] = {
        "study": name,
        "storage": redacted(storage_url),
        "best_trial": best.number,
        "best_val_pr_auc": best.value,
        "final_val_pr_auc": final_value,
        "trials_in_study": len(every),
        "objective": OBJECTIVE,
    }
    if parent:
        bundle.metadata["mlflow_run_id"] = parent.info.run_id
    return TuneResult(
        study=study,
        estimator=estimator.name,
        study_name=name,
        storage=redacted(storage_url),
        best_params=dict(best.params),
        best_value=float(best.value),
        best_trial=best.number,
        bundle=bundle,
        trials_run=len(objective.fit_seconds),
        trials_in_study=len(every),
        pruned=pruned,
        seconds=time.perf_counter() - start,
        trial_seconds=float(np.mean(objective.fit_seconds)) if objective.fit_seconds else 0.0,
        mlflow_run_id=parent.info.run_id if parent else None,
        files=files if report_dir else {},
    )


def _bundle(cfg, estimator, features, model, train_df, data: _Matrices, best, pos_weight: float):
    x = data.x_train
    reference = x if isinstance(x, pd.DataFrame) else pd.DataFrame(x, columns=data.names)
    return build_bundle(
        cfg,
        estimator.name,
        features,
        model,
        train_df,
        feature_names=data.names,
        reference_features=reference,
        params=estimator.recorded_params(model, best, pos_weight),
        # Training scores from the out-of-fold features: what the model saw in training.
        train_scores=model.predict_proba(x)[:, 1],
    )


def _status(message: str, progress: bool):
    from rich.console import Console

    return Console(stderr=True).status(message) if progress else nullcontext()


def _start_tracking(cfg: SystemConfig):
    import mlflow

    from .registry import connect, ensure_experiment

    mlflow.set_experiment(experiment_id=ensure_experiment(cfg, connect(cfg)))
    return mlflow


def run(
    cfg: SystemConfig,
    train_path: Path,
    validation_path: Path,
    out_dir: Path,
    *,
    trials: int | None = None,
    timeout_s: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    progress: bool = True,
    report_dir: Path | None = None,
    n_jobs: int | None = None,
) -> TuneResult:
    """Tune on the train / validation Parquet files (raw rows + entity history); save the
    bundle to ``out_dir`` and the plots to ``report_dir`` (default ``reports/tuning``)."""
    let_idle_threads_sleep()
    train_df = read_labelled(cfg, train_path, "training")
    val_df = read_labelled(cfg, validation_path, "validation")
    result = tune(
        cfg,
        train_df,
        val_df,
        trials=trials,
        timeout_s=timeout_s,
        storage=storage,
        study_name=study_name,
        progress=progress,
        report_dir=Path(report_dir) if report_dir else cfg.path("reports/tuning"),
        n_jobs=n_jobs,
    )
    save_bundle(result.bundle, out_dir)
    result.bundle_dir = Path(out_dir)
    return result
