"""Training: the baseline, and XGBoost tuned with Optuna (storage, resume, pruning, MLflow)."""

import json

import numpy as np
import pandas as pd
import pytest
from reference_contract import reference_config
from sample_project import scaled_rows
from sklearn.compose import ColumnTransformer
from sklearn.metrics import average_precision_score, roc_auc_score

from {{cookiecutter.package_name}}.bundle import (
    BUNDLE_FILE,
    FEATURES_FILE,
    PICKLED_MODEL_FILE,
    XGBOOST_FILE,
    load_bundle,
    save_bundle,
)
from {{cookiecutter.package_name}}.models import baseline, study, tune
from {{cookiecutter.package_name}}.models.evaluate import positives

pytestmark = pytest.mark.slow

SIGNALS = 4
POSITIVE_WORDS = ["winner", "free", "prize", "claim", "urgent", "offer", "cash", "bonus"]
NEGATIVE_WORDS = ["meeting", "report", "lunch", "project", "invoice", "agenda", "notes", "team"]


def labelled_rows(n: int, seed: int, start: str, positive: str, negative: str):
    """Canonical-looking rows: text and numeric columns both carry (noisy) label signal."""
    rng = np.random.default_rng(seed)
    pos_mask = rng.random(n) < 0.3
    t0 = pd.Timestamp(start, tz="UTC")

    def text(words_if_positive, words_if_negative, k):
        out = []
        for is_positive in pos_mask:
            # Mostly the class's words, some of the other class's: not perfectly separable.
            own, other = (
                (words_if_positive, words_if_negative)
                if is_positive
                else (words_if_negative, words_if_positive)
            )
            pool = rng.choice(own, k).tolist() + rng.choice(other, 2).tolist()
            out.append(" ".join(rng.permutation(pool)))
        return out

    return pd.DataFrame(
        {
            "message_id": [f"<{seed}-{i}@example.org>" for i in range(n)],
            "received_at": t0 + pd.to_timedelta(np.sort(rng.uniform(0, 86400 * 7, n)), "s"),
            "account": [f"user{k}@example.org" for k in rng.integers(0, 50, n)],
            "subject": np.where(rng.random(n) < 0.1, None, text(POSITIVE_WORDS, NEGATIVE_WORDS, 2)),
            "body": text(POSITIVE_WORDS, NEGATIVE_WORDS, 6),
            "recipient_count": rng.integers(1, 5, n),
            **{f"s{k}": pos_mask * 1.5 + rng.normal(size=n) for k in range(SIGNALS)},
            "label": np.where(pos_mask, positive, negative),
        }
    )


def stand_in_features():
    """A tiny stand-in for build_features(cfg): the numeric signal columns as they are."""
    return ColumnTransformer([("num", "passthrough", [f"s{k}" for k in range(SIGNALS)])])


@pytest.fixture(scope="module")
def cfg(cfg):
    """The reference contract: this module's frames are built by hand in its schema."""
    return reference_config(cfg)


@pytest.fixture(scope="module")
def splits(cfg):
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    return (
        labelled_rows(800, 1, "2026-01-01", pos, neg),
        labelled_rows(400, 2, "2026-01-08", pos, neg),
        labelled_rows(400, 3, "2026-01-15", pos, neg),
    )


def test_baseline_beats_chance_and_round_trips(cfg, splits, tmp_path):
    train, val, test = splits
    train.to_parquet(tmp_path / "train.parquet")
    result = baseline.run(cfg, tmp_path / "train.parquet", tmp_path / "baseline", progress=False)

    assert result.kind == "baseline" and result.rows == len(train)
    assert "800 rows" in result.summary()
    names = sorted(p.name for p in (tmp_path / "baseline").iterdir())
    assert names == [BUNDLE_FILE, PICKLED_MODEL_FILE]  # one pipeline on raw rows, no features
    bundle = load_bundle(tmp_path / "baseline")
    assert bundle.kind == "baseline" and bundle.features is None
    assert bundle.metadata["params"]["text_columns"] == ["subject", "body"]
    y = positives(cfg, test["label"])
    scores = bundle.score(test)
    assert roc_auc_score(y, scores) > 0.8
    assert average_precision_score(y, scores) > y.mean() + 0.3
    # The same scores after the round trip, and for one row at a time (serving).
    assert np.allclose(bundle.score(test.iloc[:5]), scores[:5])
    one = test.iloc[[0]].drop(columns=["subject"])  # an optional text column may be absent
    assert np.isfinite(bundle.score(one)).all()


def test_training_refuses_unusable_labels(cfg, splits, tmp_path):
    train, _, _ = splits
    with pytest.raises(ValueError, match="no 'label' column"):
        baseline.train_baseline(cfg, train.drop(columns=["label"]))
    one_class = train[train["label"] == cfg.problem.negative_class]
    with pytest.raises(ValueError, match="both classes"):
        baseline.train_baseline(cfg, one_class)
    odd = train.assign(label=train["label"].where(train.index > 2, "maybe"))
    with pytest.raises(ValueError, match="3 rows have a 'label' that is neither"):
        baseline.train_baseline(cfg, odd)
    with pytest.raises(FileNotFoundError, match="no training data"):
        baseline.run(cfg, tmp_path / "missing.parquet", tmp_path / "out", progress=False)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, cfg):
    """An isolated MLflow sqlite store and Optuna storage for the module."""
    root = tmp_path_factory.mktemp("tune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.setenv("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
        # XGBoost whatever the contract chooses: these tests read its parameters and file;
        # test_estimators runs the same checks for every estimator.
        training = cfg.training.model_copy(update={"model": "xgboost"})
        yield cfg.model_copy(update={"root": root, "training": training}), root


def run_tune(cfg, splits, root, **kwargs):
    train, val, _ = splits
    options = {
        "trials": 3,
        "storage": f"sqlite:///{root}/optuna.db",
        "progress": False,
        "features": stand_in_features(),
        "report_dir": root / "reports",
        # One thread: tiny data gains nothing from more, and tests share the machine.
        "n_jobs": 1,
    }
    return tune.tune(cfg, train, val, **{**options, **kwargs})


@pytest.fixture(scope="module")
def tuned(tracked, splits):
    cfg, root = tracked
    return run_tune(cfg, splits, root)


def test_tune_finds_a_model_and_bundles_it_as_ubj(tracked, splits, tuned, tmp_path):
    cfg, _ = tracked
    _, val, test = splits
    assert tuned.trials_run == 3 and tuned.trials_in_study == 3
    assert tuned.study_name.startswith(cfg.training.optuna.study_name + "-")
    assert 0 < tuned.best_value <= 1
    assert set(tuned.best_params) == {
        "max_depth",
        "learning_rate",
        "min_child_weight",
        "subsample",
        "colsample_bytree",
        "reg_lambda",
    }
    y_val = positives(cfg, val["label"])
    y_train = positives(cfg, splits[0]["label"])
    params = tuned.bundle.metadata["params"]
    assert params["scale_pos_weight"] == pytest.approx((y_train == 0).sum() / y_train.sum())
    assert 1 <= params["n_estimators"] <= tune.MAX_ESTIMATORS
    assert average_precision_score(y_val, tuned.bundle.score(val)) == pytest.approx(
        tuned.best_value
    )
    assert tuned.bundle.model.get_params()["callbacks"] is None

    save_bundle(tuned.bundle, tmp_path / "xgb")
    assert {p.name for p in (tmp_path / "xgb").iterdir()} == {
        BUNDLE_FILE,
        XGBOOST_FILE,
        FEATURES_FILE,
    }
    manifest = json.loads((tmp_path / "xgb" / BUNDLE_FILE).read_text())
    assert manifest["files"]["model"]["format"] == "xgboost-ubj"
    loaded = load_bundle(tmp_path / "xgb")
    assert loaded.kind == "xgboost"
    np.testing.assert_allclose(loaded.score(test), tuned.bundle.score(test), atol=1e-7)
    y_test = positives(cfg, test["label"])
    assert roc_auc_score(y_test, loaded.score(test)) > 0.8
    assert loaded.metadata["feature_names"] == [f"num__s{k}" for k in range(SIGNALS)]
    assert set(loaded.reference["features"]) == set(loaded.metadata["feature_names"])


def test_trials_are_nested_mlflow_runs_with_plots(tracked, tuned):
    from mlflow import MlflowClient

    cfg, root = tracked
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name(cfg.training.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parent = client.get_run(tuned.mlflow_run_id)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == tuned.mlflow_run_id]
    assert len(children) == 3
    assert {r.data.tags["optuna_trial"] for r in children} == {"0", "1", "2"}
    assert all(r.data.tags["optuna_state"] == "COMPLETE" for r in children)
    assert all(0 < r.data.metrics["val_pr_auc"] <= 1 for r in children)
    assert parent.data.metrics["best_val_pr_auc"] == pytest.approx(tuned.best_value)
    assert parent.data.params["best_max_depth"] == str(tuned.best_params["max_depth"])
    assert tuned.bundle.metadata["mlflow_run_id"] == tuned.mlflow_run_id

    logged = {a.path for a in client.list_artifacts(tuned.mlflow_run_id, "tuning")}
    assert {f"tuning/{name}" for name in study.PLOT_FILES.values()} <= logged
    assert f"tuning/{study.TRIALS_FILE}" in logged
    for name in study.PLOT_FILES.values():
        assert (root / "reports" / name).read_bytes().startswith(b"\x89PNG")
    assert any(line.startswith("best trial") for line in tuned.summary().splitlines())


def test_study_resumes_in_its_storage(tracked, splits, tuned):
    import optuna

    cfg, root = tracked
    again = run_tune(cfg, splits, root, trials=2)
    assert again.study_name == tuned.study_name
    assert (again.trials_run, again.trials_in_study) == (2, 5)
    stored = optuna.load_study(study_name=tuned.study_name, storage=f"sqlite:///{root}/optuna.db")
    assert len(stored.trials) == 5
    # The resumed sampler does not replay the first call's random points.
    points = [tuple(sorted(t.params.items())) for t in stored.trials]
    assert len(set(points)) == 5
    assert again.best_value >= tuned.best_value
    # A best trial from the earlier call is refitted, and the refit reproduces it.
    assert again.best_trial < 3
    _, val, _ = splits
    y_val = positives(cfg, val["label"])
    refit = average_precision_score(y_val, again.bundle.score(val))
    assert refit == pytest.approx(again.best_value, abs=1e-6)

    # Other data under the same explicit study name is refused, not mixed in.
    train, val, test = splits
    run_tune(cfg, (train, val, test), root, study_name="shared", trials=1)
    with pytest.raises(ValueError, match="tuned on other data"):
        run_tune(cfg, (train, test, val), root, study_name="shared", trials=1)


def test_pruning_stops_trials_through_the_xgboost_callback(tracked, splits):
    import optuna

    class PruneAllButFirst(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number > 0

    cfg, root = tracked
    result = run_tune(cfg, splits, root, study_name="pruned", pruner=PruneAllButFirst())
    states = [t.state for t in result.study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] + [optuna.trial.TrialState.PRUNED] * 2
    assert result.pruned == 2 and result.best_trial == 0
    # Reports come every REPORT_EVERY boosting rounds; a pruned trial stops at its first one.
    first, second = result.study.trials[0], result.study.trials[1]
    assert min(first.intermediate_values) == study.REPORT_EVERY - 1
    assert list(second.intermediate_values) == [study.REPORT_EVERY - 1]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    children = client.search_runs(
        [client.get_run(result.mlflow_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.mlflow_run_id}'",
    )
    assert sorted(r.data.tags["optuna_state"] for r in children) == ["COMPLETE", "PRUNED", "PRUNED"]
    assert all(r.info.status == "FINISHED" for r in children)


def test_default_pruner_and_storage_follow_the_contract(cfg, tmp_path):
    pruner = study.default_pruner()
    assert type(pruner).__name__ == "MedianPruner"
    url = study.resolve_storage(cfg.model_copy(update={"root": tmp_path / "x"}))
    assert url == f"sqlite:///{(tmp_path / 'x' / 'optuna.db').resolve()}"
    assert (tmp_path / "x").is_dir()
    assert study.resolve_storage(cfg, "postgresql://u:secret@db/optuna").startswith("postgresql")
    assert "secret" not in study.redacted("postgresql://u:secret@db/optuna")


def test_tune_with_the_project_features(project_root, tmp_path):
    """The default path: build_features(cfg) on generated records with entity history."""
    from {{cookiecutter.package_name}}.config import load_config

    cfg = load_config(project_root / "configs" / "system.yaml")
    from {{cookiecutter.package_name}}.data.split import split_by_time
    from {{cookiecutter.package_name}}.data.synthetic import generate
    from {{cookiecutter.package_name}}.features.history import attach_history

    labelled_rows = generate(cfg, scaled_rows(3000), 7)
    parts = split_by_time(cfg, labelled_rows)
    train = attach_history(cfg, parts["train"])
    cutoff = train[cfg.data.column("timestamp").name].max()
    val = attach_history(cfg, parts["validation"], earlier=parts["train"], label_cutoff=cutoff)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = tune.tune(
        cfg, train, val, trials=2, storage=storage, progress=False, track=False, n_jobs=1
    )

    # Well above the positive share, which is what a model without skill scores.
    share = (val[cfg.data.column("label").name] == cfg.problem.positive_class).mean()
    assert result.best_value > min(0.8, 10 * share)
    save_bundle(result.bundle, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    names = [str(n) for n in loaded.features.get_feature_names_out()]
    assert loaded.metadata["feature_names"] == names
    np.testing.assert_allclose(loaded.score(val), result.bundle.score(val), atol=1e-6)
    # The model sees what serving will send: one raw row with its history.
    assert 0 <= loaded.score(val.iloc[[0]])[0] <= 1
