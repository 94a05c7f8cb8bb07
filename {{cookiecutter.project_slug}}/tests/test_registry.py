"""The MLflow registry on a real sqlite store: register, load, gated promotion, rollback."""

import numpy as np
import pandas as pd
import pytest
from contract_labels import NEG, POS
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression

from {{cookiecutter.package_name}}.bundle import (
    TamperedArtifactError,
    build_bundle,
    file_sha256,
    load_bundle,
    save_bundle,
)
from {{cookiecutter.package_name}}.models import registry
from {{cookiecutter.package_name}}.models.evaluate import choose_threshold, positives

pytestmark = pytest.mark.slow

# Each signal column separates the positive class a little; a model that sees more columns is better.
SIGNALS = 6


def items(n: int, seed: int, start: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    t0 = pd.Timestamp(start, tz="UTC")
    return pd.DataFrame(
        {
            "message_id": [f"<{seed}-{i}@example.org>" for i in range(n)],
            "received_at": t0 + pd.to_timedelta(np.sort(rng.uniform(0, 86400 * 7, n)), "s"),
            "account": [f"user{k}@example.org" for k in rng.integers(0, 50, n)],
            **{f"s{k}": positive * 2.0 + rng.normal(size=n) for k in range(SIGNALS)},
            "label": np.where(positive, POS, NEG),
        }
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory, cfg):
    """One sqlite tracking store for the module (MLflow's migrations take seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    offline = cfg.metrics.offline.model_copy(
        update={"target_precision": 0.9, "target_recall": 0.85, "promotion_margin": 0.002}
    )
    mlflow_cfg = cfg.training.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{root}/m.db"})
    test_cfg = cfg.model_copy(
        update={
            "root": root,
            "metrics": cfg.metrics.model_copy(update={"offline": offline}),
            "training": cfg.training.model_copy(update={"mlflow": mlflow_cfg}),
        }
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        registry.ensure_experiment(test_cfg)
        yield test_cfg, root


@pytest.fixture(scope="module")
def splits():
    return items(600, 1, "2026-01-01"), items(600, 2, "2026-01-08"), items(600, 3, "2026-01-15")


def named(cfg, model_name: str):
    """The shared store with a registered-model name of the test's own."""
    mlflow_cfg = cfg.training.mlflow.model_copy(update={"registered_model": model_name})
    return cfg.model_copy(
        update={"training": cfg.training.model_copy(update={"mlflow": mlflow_cfg})}
    )


def make_bundle(cfg, splits, signals: int, folder) -> object:
    """A logistic regression on the first ``signals`` columns, threshold set on validation."""
    train, val, _ = splits
    columns = [f"s{k}" for k in range(signals)]
    features = ColumnTransformer([("num", "passthrough", columns)]).fit(train)
    model = LogisticRegression().fit(features.transform(train), positives(cfg, train["label"]))
    bundle = build_bundle(cfg, "xgboost", features, model, train)
    # A stricter target on validation than the contract's, so the test precision clears it.
    choice = choose_threshold(positives(cfg, val["label"]), bundle.score(val), 0.97)
    bundle.threshold = choice.threshold
    save_bundle(bundle, folder)
    return bundle


def test_no_champion_is_a_clear_error(store):
    cfg, _ = store
    with pytest.raises(registry.NoChampionError, match="no model has the alias 'champion' yet"):
        registry.load_registered_bundle(named(cfg, "empty"), "champion")


def test_register_and_load_round_trip(store, splits, tmp_path):
    import mlflow

    cfg = named(store[0], "roundtrip")
    _, _, test = splits
    bundle = make_bundle(cfg, splits, 4, tmp_path / "b")

    info = registry.register_bundle(cfg, tmp_path / "b", tags={"origin": "test"})
    assert info.version == 1
    assert info.tags["bundle_sha256"] and info.tags["origin"] == "test"
    assert info.tags["training_fingerprint"] == bundle.metadata["training"]["fingerprint"]
    # The same bundle again is the same version, not a duplicate.
    assert registry.register_bundle(cfg, tmp_path / "b").version == 1

    loaded, loaded_info = registry.load_registered_bundle(cfg, "1")
    assert loaded_info.version == 1
    np.testing.assert_array_equal(loaded.score(test), bundle.score(test))
    assert loaded.threshold == bundle.threshold

    # MLflow's own loader runs the models-from-code pyfunc around the same bundle.
    pyfunc = mlflow.pyfunc.load_model("models:/roundtrip/1")
    out = pyfunc.predict(test)
    np.testing.assert_allclose(out["score"].to_numpy(), bundle.score(test))
    assert set(out["label"]) <= {POS, NEG}
    # Artifacts live beside the sqlite file, not in the working directory.
    stored = [
        p
        for p in (store[1] / "mlruns").rglob("bundle.json")
        if file_sha256(p) == info.tags["bundle_sha256"]
    ]
    assert stored
    # A bundle.json rewritten in the store (hashes and all) no longer matches the registry.
    stored[0].write_text(stored[0].read_text().replace('"threshold"', ' "threshold"', 1))
    with pytest.raises(TamperedArtifactError, match="registered"):
        registry.load_registered_bundle(cfg, "1")


def test_promotion_gates_and_rollback(store, splits, tmp_path):
    cfg = named(store[0], "gated")
    _, _, test = splits
    baseline_dir = tmp_path / "baseline"
    make_bundle(cfg, splits, 2, baseline_dir)
    baseline_metrics = registry.bundle_test_metrics(cfg, load_bundle(baseline_dir), test)

    def candidate(signals: int) -> int:
        folder = tmp_path / f"m{signals}"
        make_bundle(cfg, splits, signals, folder)
        return registry.register_bundle(cfg, folder).version

    # First model ever: nothing to beat but the contract and the baseline.
    good = candidate(4)
    first = registry.promote(cfg, good, test, baseline_metrics=baseline_metrics)
    assert first.outcome == "champion", first.summary()
    names = [c.name for c in first.checks]
    assert names == ["contract", "baseline", "contract_version", "champion"]
    assert registry.get_version(cfg, "champion").version == good

    # Below the contract: rejected, whatever else.
    weak = candidate(1)
    below = registry.promote(cfg, weak, test, baseline_metrics=baseline_metrics)
    assert below.outcome == "rejected"
    assert any("recall" in r and "below the target" in r for r in below.reasons)
    assert registry.get_version(cfg, "champion").version == good

    # Meets the contract and beats the baseline, but is worse than the champion: challenger.
    worse = candidate(3)
    decision = registry.promote(cfg, worse, test, baseline_metrics=baseline_metrics)
    assert decision.outcome == "challenger", decision.summary()
    assert [c.name for c in decision.checks if not c.passed] == ["champion"]
    assert "champion version 1" in decision.reasons[0]
    assert registry.get_version(cfg, "champion").version == good
    assert registry.get_version(cfg, "challenger").version == worse

    # Better than the champion by the margin: the new champion; the old one is remembered.
    better = candidate(6)
    promoted = registry.promote(cfg, None, test, baseline_metrics=baseline_metrics)
    assert promoted.version == better and promoted.outcome == "champion", promoted.summary()
    assert promoted.previous_champion == good
    assert registry.get_version(cfg, "champion").version == better

    restored = registry.rollback(cfg)
    assert (restored.version, restored.replaced) == (good, better)
    bundle, info = registry.load_registered_bundle(cfg, "champion")
    assert info.version == good
    with pytest.raises(registry.RollbackError, match="nothing to roll back to"):
        registry.rollback(cfg)
