"""Optuna plumbing for tuning: storage, the study (create or resume), pruning, plots.

The storage is any SQLAlchemy URL (``sqlite:///optuna.db`` under the project by default): an
interrupted study resumes, and several workers pointed at the same URL share one study. A
study records the fingerprint of the data its scores were measured on and the estimator it
tunes, and refuses other data or another estimator. The pruning callbacks are the estimator's
(``estimators.py``); they report every :data:`REPORT_EVERY` rounds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from ..bundle import fingerprint_frame
from ..config import SystemConfig
from ..stores import optuna_storage

# Each report is a database write (tens of ms on sqlite): report every few rounds, not each.
REPORT_EVERY = 10
# Random trials before TPE models the space; pruning starts after a few complete trials and
# never in a trial's first rounds (slow learning rates start low and catch up).
N_STARTUP_TRIALS = 8
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_ROUNDS = 50
PLOT_FILES = {"history": "optuna_history.png", "importances": "optuna_param_importances.png"}
TRIALS_FILE = "optuna_trials.csv"
OBJECTIVE = "validation PR-AUC (average precision)"


def resolve_storage(cfg: SystemConfig, storage: str | None = None) -> str:
    """The storage URL: the argument, ``$OPTUNA_STORAGE`` (the Secret on a cluster), or the
    contract's; a relative ``sqlite:///file.db`` lives under the project root."""
    url = optuna_storage(cfg, storage)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return url


def redacted(url: str) -> str:
    """A storage URL safe to print and log (password hidden)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: Optuna will say so
        return url


def data_fingerprint(train_df: pd.DataFrame, val_df: pd.DataFrame) -> str:
    """SHA-256 identifying the train + validation data a study's scores were measured on."""
    both = f"{fingerprint_frame(train_df)}:{fingerprint_frame(val_df)}"
    return hashlib.sha256(both.encode()).hexdigest()


def default_pruner() -> Any:
    """Median pruner: stop a trial whose validation PR-AUC is below the median of earlier
    trials at the same boosting round."""
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_ROUNDS
    )


def open_study(
    storage_url: str,
    study_name: str,
    fingerprint: str,
    *,
    seed: int,
    pruner: Any = None,
    estimator: str = "xgboost",
) -> tuple[Any, int]:
    """Create or resume a maximising study; returns it and the number of trials it had.

    The TPE sampler is seeded with ``seed`` plus that number, so a resumed study does not
    replay its first random points. Raises ``ValueError`` for a study tuned on other data or
    for another estimator (``training.model``).
    """
    import optuna

    # Workers sharing one sqlite file wait for its lock instead of failing at once.
    engine = {"connect_args": {"timeout": 60}} if storage_url.startswith("sqlite") else {}
    storage = optuna.storages.RDBStorage(storage_url, engine_kwargs=engine)
    try:
        previous = len(storage.get_all_trials(storage.get_study_id_from_name(study_name)))
    except KeyError:
        previous = 0
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed + previous, n_startup_trials=N_STARTUP_TRIALS),
        pruner=pruner or default_pruner(),
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("data_fingerprint")
    if recorded and recorded != fingerprint:
        raise ValueError(
            f"Optuna study {study_name!r} in {redacted(storage_url)} was tuned on other data "
            f"(fingerprint {recorded[:8]}, this data {fingerprint[:8]}); its scores are not "
            "comparable: omit the study name (one study per data set) or choose a new one"
        )
    if not recorded:
        study.set_user_attr("data_fingerprint", fingerprint)
        study.set_user_attr("objective", OBJECTIVE)
    # Studies from before the choice existed tuned XGBoost.
    tuned = study.user_attrs.get("estimator", "xgboost" if previous else None)
    if tuned and tuned != estimator:
        raise ValueError(
            f"Optuna study {study_name!r} in {redacted(storage_url)} tunes {tuned}, the contract "
            f"chooses {estimator} (training.model): their parameters differ; omit the study "
            "name (one study per estimator) or choose a new one"
        )
    if "estimator" not in study.user_attrs:
        study.set_user_attr("estimator", estimator)
    return study, previous


def write_reports(study: Any, out_dir: Path, *, seed: int) -> tuple[dict[str, Path], dict]:
    """Optuna's optimization history and parameter importances (PNG) and the trials table.

    Returns the written files (plots and ``trials``) and, for a plot Optuna cannot draw yet
    (importances need complete trials with different parameters), the reason it was skipped.
    """
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as optuna_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    drawers = {
        "history": lambda: optuna_plots.plot_optimization_history(
            study, target_name="validation PR-AUC"
        ),
        "importances": lambda: optuna_plots.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=seed)
        ),
    }
    files, skipped = {}, {}
    for key, draw in drawers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            try:
                axes = draw()
            except (ValueError, RuntimeError) as exc:
                skipped[key] = str(exc)
                continue
        figure = axes.figure
        figure.set_size_inches(7, 4.5)
        figure.tight_layout()
        files[key] = out_dir / PLOT_FILES[key]
        figure.savefig(files[key], dpi=100)
        plt.close(figure)
    files["trials"] = out_dir / TRIALS_FILE
    study.trials_dataframe().to_csv(files["trials"], index=False)
    return files, skipped
