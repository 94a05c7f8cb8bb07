"""The model bundle: round trip, no pickle for XGBoost, tamper detection, fingerprints."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from contract_labels import NEG, POS
from reference_contract import reference_config
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from {{cookiecutter.package_name}}.bundle import (
    BUNDLE_FILE,
    FEATURES_FILE,
    PICKLED_MODEL_FILE,
    XGBOOST_FILE,
    BundleFormatError,
    ModelBundle,
    TamperedArtifactError,
    build_bundle,
    fingerprint_frame,
    load_bundle,
    save_bundle,
)
from {{cookiecutter.package_name}}.distributions import bin_shares, reference_distributions


@pytest.fixture(scope="module")
def cfg(cfg):
    """The reference contract: this module's frames are built by hand in its schema."""
    return reference_config(cfg)


NUMERIC = ["recipient_count", "attachment_count", "inline_image_count"]


def items(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A small hand-made canonical frame whose numeric columns carry the label signal."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    start = pd.Timestamp("2026-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "message_id": [f"<{seed}-{i}@example.org>" for i in range(n)],
            "received_at": start + pd.to_timedelta(np.sort(rng.uniform(0, 86400 * 20, n)), "s"),
            "account": [f"user{k}@example.org" for k in rng.integers(0, 40, n)],
            "recipient_count": np.where(positive, rng.integers(3, 40, n), rng.integers(1, 6, n)),
            "attachment_count": rng.integers(0, 3, n),
            "inline_image_count": np.where(positive, rng.integers(0, 5, n), rng.integers(0, 2, n)),
            "urls": np.where(rng.random(n) < 0.5, "https://example.org/a", ""),
            "label": np.where(positive, POS, NEG),
        }
    )


def fitted(df: pd.DataFrame, model=None) -> ModelBundle:
    features = ColumnTransformer([("num", StandardScaler(), NUMERIC)]).fit(df)
    y = (df["label"] == POS).to_numpy().astype(int)
    model = (model or LogisticRegression()).fit(features.transform(df), y)
    return ModelBundle(
        features=features,
        model=model,
        threshold=0.5,
        metadata={"kind": "baseline", "labels": {"positive": POS, "negative": NEG}},
        reference=reference_distributions(df[NUMERIC], None, y),
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return items()


def test_round_trip_gives_identical_scores(tmp_path, frame):
    bundle = fitted(frame)
    bundle.threshold = 0.42
    save_bundle(bundle, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")

    np.testing.assert_array_equal(loaded.score(frame), bundle.score(frame))
    assert loaded.threshold == 0.42
    assert loaded.metadata == bundle.metadata
    assert loaded.reference == json.loads(json.dumps(bundle.reference))
    assert set(loaded.predict(frame)) <= {POS, NEG}
    expected = np.where(bundle.score(frame) >= 0.42, POS, NEG)
    np.testing.assert_array_equal(loaded.predict(frame), expected)
    files = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert files == [BUNDLE_FILE, FEATURES_FILE, PICKLED_MODEL_FILE]
    manifest = json.loads((tmp_path / "b" / BUNDLE_FILE).read_text())
    assert manifest["libraries"]["scikit-learn"]
    assert len(manifest["files"]["features"]["sha256"]) == 64


def test_xgboost_model_is_stored_without_pickle(tmp_path, frame):
    from xgboost import XGBClassifier

    bundle = fitted(frame, XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1))
    # A bundle folder that held a pickled model before must not keep it.
    save_bundle(fitted(frame), tmp_path / "b")
    save_bundle(bundle, tmp_path / "b")

    names = {p.name for p in (tmp_path / "b").iterdir()}
    assert XGBOOST_FILE in names and PICKLED_MODEL_FILE not in names
    raw = (tmp_path / "b" / XGBOOST_FILE).read_bytes()
    assert not raw.startswith(b"\x80"), "model.ubj must not be a pickle"
    manifest = json.loads((tmp_path / "b" / BUNDLE_FILE).read_text())
    assert manifest["files"]["model"]["format"] == "xgboost-ubj"
    loaded = load_bundle(tmp_path / "b")
    assert type(loaded.model).__name__ == "XGBClassifier"
    np.testing.assert_allclose(loaded.score(frame), bundle.score(frame), rtol=0, atol=1e-7)


def test_tampered_pickle_is_refused_before_unpickling(tmp_path, frame):
    save_bundle(fitted(frame), tmp_path / "b")
    marker = tmp_path / "unpickled"

    class Payload:
        # Unpickling this object would create the marker file.
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "b" / FEATURES_FILE).write_bytes(pickle.dumps(Payload()))
    with pytest.raises(TamperedArtifactError, match=FEATURES_FILE):
        load_bundle(tmp_path / "b")
    assert not marker.exists()

    # Corrupting one byte of the model is caught too, naming that file.
    save_bundle(fitted(frame), tmp_path / "c")
    path = tmp_path / "c" / PICKLED_MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TamperedArtifactError, match=PICKLED_MODEL_FILE):
        load_bundle(tmp_path / "c")


def test_incomplete_bundle_is_a_clear_error(tmp_path, frame):
    with pytest.raises(BundleFormatError, match="no model bundle"):
        load_bundle(tmp_path / "nothing")
    save_bundle(fitted(frame), tmp_path / "b")
    (tmp_path / "b" / FEATURES_FILE).unlink()
    with pytest.raises(BundleFormatError, match="missing"):
        load_bundle(tmp_path / "b")


def test_fingerprint_is_content_based(frame):
    base = fingerprint_frame(frame)
    shuffled = frame.sample(frac=1, random_state=1)[list(reversed(frame.columns))]
    assert fingerprint_frame(shuffled.reset_index(drop=True)) == base
    changed = frame.copy()
    changed.loc[5, "recipient_count"] += 1
    assert fingerprint_frame(changed) != base
    assert fingerprint_frame(frame.iloc[:-1]) != base
    assert fingerprint_frame(frame.rename(columns={"urls": "links"})) != base


def test_reference_distributions_are_json_and_reusable(frame):
    y = (frame["label"] == POS).to_numpy()
    scores = np.linspace(0, 1, len(frame))
    features = frame[NUMERIC].assign(flag=frame["urls"] != "", text=frame["account"])
    ref = json.loads(json.dumps(reference_distributions(features, scores, y), allow_nan=False))

    assert set(ref["features"]) == {*NUMERIC, "flag"}  # non-numeric columns are skipped
    assert ref["positive_rate"] == pytest.approx(y.mean())
    for dist in [*ref["features"].values(), ref["score"]]:
        assert len(dist["shares"]) == len(dist["cuts"]) + 1
        assert sum(dist["shares"]) == pytest.approx(1)
    # Monitoring bins live values with the stored cuts and gets the same shares.
    score = ref["score"]
    np.testing.assert_allclose(bin_shares(scores, score["cuts"]), score["shares"])
    assert len(score["cuts"]) == 9


def test_build_bundle_records_metadata(cfg, frame):
    features = ColumnTransformer([("num", "passthrough", NUMERIC)]).fit(frame)
    y = (frame["label"] == cfg.problem.positive_class).to_numpy().astype(int)
    model = LogisticRegression().fit(features.transform(frame), y)
    bundle = build_bundle(cfg, "baseline", features, model, frame, feature_names=NUMERIC)

    meta = bundle.metadata
    assert meta["kind"] == "baseline"
    assert meta["contract_version"] == cfg.contract_version
    assert meta["training"]["fingerprint"] == fingerprint_frame(frame)
    assert meta["training"]["window"]["start"].startswith("2026-01-01")
    assert meta["labels"]["positive"] == cfg.problem.positive_class
    assert set(bundle.reference["features"]) == set(NUMERIC)
    assert "score" in bundle.reference
