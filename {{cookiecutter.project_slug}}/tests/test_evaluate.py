"""Evaluation: metrics, the threshold for the precision target, slices, the contract, the stage."""

import json

import numpy as np
import pandas as pd
import pytest
from contract_labels import NEG, POS
from reference_contract import reference_config
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression

from {{cookiecutter.package_name}}.bundle import build_bundle, load_bundle, save_bundle
from {{cookiecutter.package_name}}.models import evaluate
from {{cookiecutter.package_name}}.models.evaluate import (
    choose_threshold,
    contract_check,
    default_slices,
    evaluate_scores,
    metrics_at_threshold,
    slice_metrics,
)


@pytest.fixture(scope="module")
def cfg(cfg):
    """The reference contract: this module's frames are built by hand in its schema."""
    return reference_config(cfg)


def with_targets(cfg, precision: float, recall: float):
    offline = cfg.metrics.offline.model_copy(
        update={"target_precision": precision, "target_recall": recall}
    )
    return cfg.model_copy(update={"metrics": cfg.metrics.model_copy(update={"offline": offline})})


def test_metrics_at_threshold_counts():
    y = [1, 1, 0, 0, 1, 0]
    s = [0.9, 0.8, 0.7, 0.2, 0.1, 0.5]
    m = metrics_at_threshold(y, s, 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 2, 1, 1)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(2 / 3)
    assert m["support"] == {"rows": 6, "positive": 3, "negative": 3}
    full = evaluate_scores(y, s, 0.5, target_precision=1.0)
    assert 0 < full["roc_auc"] < 1 and 0 < full["pr_auc"] <= 1
    assert full["recall_at_target_precision"] == pytest.approx(2 / 3)
    assert evaluate_scores([0, 0], [0.1, 0.2], 0.5)["roc_auc"] is None


def _brute_force_best_recall(y, s, target):
    best = None
    for t in np.unique(s):
        m = metrics_at_threshold(y, s, t)
        if m["tp"] and m["precision"] >= target and (best is None or m["recall"] > best):
            best = m["recall"]
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_meets_precision_target_with_best_recall(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(3000) < 0.3).astype(int)
    # Rounded scores create many ties, which must move together.
    s = np.round(1 / (1 + np.exp(-(4 * y - 2 + rng.normal(size=y.size)))), 2)
    choice = choose_threshold(y, s, 0.99)

    assert choice.met
    at = metrics_at_threshold(y, s, choice.threshold)
    assert at["precision"] >= 0.99
    assert at["precision"] == pytest.approx(choice.precision)
    assert at["recall"] == pytest.approx(choice.recall)
    assert choice.recall == pytest.approx(_brute_force_best_recall(y, s, 0.99))
    assert "highest recall" in choice.reason


def test_threshold_reports_a_target_it_cannot_reach():
    # The top score is a negative: precision can never reach 0.99.
    y = np.array([0, 1, 1, 0, 1, 1, 0])
    s = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.1])
    choice = choose_threshold(y, s, 0.99)
    assert not choice.met
    assert "NOT reached" in choice.reason
    # Fallback: maximum precision (2/3 at 0.85 and at 0.6), the higher recall of the two.
    assert choice.threshold == pytest.approx(0.6)
    assert choice.precision == pytest.approx(2 / 3)
    assert choice.recall == pytest.approx(1.0)


def test_threshold_edge_cases():
    no_positive = choose_threshold([0, 0, 0], [0.2, 0.9, 0.4], 0.99)
    assert not no_positive.met and "no positive" in no_positive.reason
    assert metrics_at_threshold([0, 0, 0], [0.2, 0.9, 0.4], no_positive.threshold)["fp"] == 0

    all_positive = choose_threshold([1, 1, 1], [0.2, 0.9, 0.4], 0.99)
    assert all_positive.met and all_positive.recall == 1.0
    assert all_positive.threshold == pytest.approx(0.2)

    tied = choose_threshold([1, 0, 1, 1], [0.5, 0.5, 0.9, 0.9], 0.99)
    assert tied.met and tied.threshold == pytest.approx(0.9) and tied.recall == pytest.approx(2 / 3)

    with pytest.raises(ValueError):
        choose_threshold([], [], 0.99)
    with pytest.raises(TypeError):
        choose_threshold([POS, NEG], [0.1, 0.2], 0.99)


def test_contract_check_names_each_missed_target(cfg):
    cfg = with_targets(cfg, 0.99, 0.9)
    ok = {"precision": 0.995, "recall": 0.93, "threshold": 0.8}
    assert contract_check(cfg, ok) == []
    reasons = contract_check(cfg, {"precision": 0.97, "recall": 0.85, "threshold": 0.8})
    assert len(reasons) == 2
    assert "precision 0.9700 is below the target 0.99" in reasons[0]
    assert "recall 0.8500 is below the target 0.9" in reasons[1]


def test_default_slices(cfg):
    days = pd.Timedelta(days=1)
    t0 = pd.Timestamp("2026-03-01", tz="UTC")
    raw = pd.DataFrame(
        {
            "received_at": [t0, t0, t0 + 40 * days, t0 + 40 * days],
            "account": ["old@a.org", "fresh@b.org", "fresh@b.org", "seen@c.org"],
            # Known creation dates win; unknown ones fall back to the first appearance.
            "account_created_at": [t0 - 400 * days, t0 - 2 * days, t0 - 2 * days, pd.NaT],
            "urls": ["https://a.org", "", None, "  "],
        }
    )
    history = pd.DataFrame({"received_at": [t0 - 90 * days], "account": ["seen@c.org"]})
    masks = default_slices(raw, cfg, history=history)
    assert masks["new_entity"].tolist() == [False, True, False, False]
    assert masks["established_entity"].tolist() == [True, False, True, True]
    # Without history, a account first seen in this frame is new.
    assert default_slices(raw, cfg)["new_entity"].tolist() == [False, True, False, True]

    metrics = slice_metrics(raw, [1, 0, 1, 0], [0.9, 0.2, 0.8, 0.7], 0.5, masks)
    assert metrics["new_entity"]["support"]["rows"] == 1
    assert metrics["established_entity"]["fp"] == 1
    assert metrics["new_entity"]["share"] == pytest.approx(0.25)


def items(n: int, seed: int, start: str, shift: float = 1.6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    t0 = pd.Timestamp(start, tz="UTC")
    signals = {f"s{k}": positive * shift + rng.normal(size=n) for k in range(8)}
    return pd.DataFrame(
        {
            "message_id": [f"<{seed}-{i}@example.org>" for i in range(n)],
            "received_at": t0 + pd.to_timedelta(np.sort(rng.uniform(0, 86400 * 7, n)), "s"),
            "account": [f"user{k}@example.org" for k in rng.integers(0, 80, n)],
            "account_created_at": pd.NaT,
            "recipient_count": rng.integers(1, 5, n),
            "urls": np.where(rng.random(n) < 0.4, "https://example.org/x", ""),
            **signals,
            "label": np.where(positive, POS, NEG),
        }
    )


def logistic_bundle(cfg, train: pd.DataFrame, columns: list[str], kind: str):
    features = ColumnTransformer([("num", "passthrough", columns)]).fit(train)
    y = (train["label"] == POS).to_numpy().astype(int)
    model = LogisticRegression().fit(features.transform(train), y)
    return build_bundle(cfg, kind, features, model, train)


def test_run_writes_reports_and_the_threshold(cfg, tmp_path):
    cfg = with_targets(cfg, 0.98, 0.9)
    train = items(1500, 1, "2026-01-01")
    val = items(1500, 2, "2026-01-08")
    test = items(1500, 3, "2026-01-15")
    for name, frame in (("train", train), ("validation", val), ("test", test)):
        frame.to_parquet(tmp_path / f"{name}.parquet")
    save_bundle(logistic_bundle(cfg, train, [f"s{k}" for k in range(8)], "xgboost"), tmp_path / "c")
    save_bundle(logistic_bundle(cfg, train, ["s0", "s1"], "baseline"), tmp_path / "b")

    result = evaluate.run(
        cfg,
        tmp_path / "c",
        tmp_path / "validation.parquet",
        tmp_path / "test.parquet",
        tmp_path / "out",
        baseline_dir=tmp_path / "b",
        history=tmp_path / "train.parquet",
    )

    # The threshold met the precision target on validation and was saved into the bundle.
    assert result.choice.met and result.validation["precision"] >= 0.98
    saved = load_bundle(tmp_path / "c")
    assert saved.threshold == result.choice.threshold
    assert saved.metadata["metrics"]["test"]["recall"] == result.test["recall"]
    assert saved.reference["score_source"] == "validation"
    assert result.meets_contract, result.contract_reasons
    assert result.test["pr_auc"] > result.baseline["test"]["pr_auc"]
    # The baseline folder is read, never rewritten.
    assert load_bundle(tmp_path / "b").threshold == 0.5

    body = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert body["contract"] == {"met": True, "reasons": []}
    assert body["selection"]["beats_baseline"] is True
    assert set(body["slices"]) == {"new_entity", "established_entity"}
    for name in ("pr_curve.png", "confusion_matrix.png", "calibration.png"):
        assert (tmp_path / "out" / name).read_bytes().startswith(b"\x89PNG")
    card = (tmp_path / "out" / "model_card.md").read_text()
    assert "| precision |" in card and ">= 0.98" in card
    assert "meets the contract" in card and "new_entity" in card
    assert f"{result.choice.threshold:.6g}" in card


def test_run_reports_a_model_below_target(cfg, tmp_path):
    cfg = with_targets(cfg, 0.99, 0.95)
    train = items(800, 4, "2026-01-01", shift=0.8)
    train.to_parquet(tmp_path / "validation.parquet")
    items(800, 5, "2026-01-08", shift=0.8).to_parquet(tmp_path / "test.parquet")
    save_bundle(logistic_bundle(cfg, train, ["s0"], "xgboost"), tmp_path / "c")

    result = evaluate.run(
        cfg,
        tmp_path / "c",
        tmp_path / "validation.parquet",
        tmp_path / "test.parquet",
        tmp_path / "out",
    )
    assert not result.meets_contract
    assert any("recall" in r for r in result.contract_reasons)
    assert "does NOT meet the contract" in result.model_card_path.read_text()


def test_run_logs_the_evaluation_into_the_training_run(cfg, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = with_targets(cfg, 0.98, 0.9)
    frames = {
        "train": items(800, 1, "2026-01-01"),
        "validation": items(800, 2, "2026-01-08"),
        "test": items(800, 3, "2026-01-15"),
    }
    for name, frame in frames.items():
        frame.to_parquet(tmp_path / f"{name}.parquet")
    from {{cookiecutter.package_name}}.models.tracking import connect, ensure_experiment

    # The contract's experiment in this store: an experiment another test set in this process
    # (tuning does) does not exist here.
    experiment_id = ensure_experiment(cfg, connect(cfg))
    with mlflow.start_run(experiment_id=experiment_id) as training_run:
        pass  # the trainer's run; evaluation comes later, in another process
    bundle = logistic_bundle(cfg, frames["train"], [f"s{k}" for k in range(8)], "xgboost")
    bundle.metadata["mlflow_run_id"] = training_run.info.run_id
    save_bundle(bundle, tmp_path / "c")

    evaluate.run(
        cfg,
        tmp_path / "c",
        tmp_path / "validation.parquet",
        tmp_path / "test.parquet",
        tmp_path / "out",
    )

    logged = mlflow.get_run(training_run.info.run_id)
    assert logged.data.metrics["test_pr_auc"] > 0.5
    assert "threshold" in logged.data.metrics
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(training_run.info.run_id, "evaluation")
    }
    assert {"evaluation/model_card.md", "evaluation/pr_curve.png"} <= artifacts
