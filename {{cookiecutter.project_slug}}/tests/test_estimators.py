"""The estimator seam: the contract chooses XGBoost or LightGBM (``training.model``) and every
stage asks ``models/estimators.py``: the search space, the bundle's native model file, the
registry's requirement, serving. The last test trains, evaluates, registers and serves a
LightGBM model over HTTP from a contract that chooses it."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from {{cookiecutter.package_name}}.bundle import (
    BUNDLE_FILE,
    FEATURES_FILE,
    BundleFormatError,
    TamperedArtifactError,
    build_bundle,
    load_bundle,
    read_manifest,
    save_bundle,
)
from {{cookiecutter.package_name}}.cli import app
from {{cookiecutter.package_name}}.config import Training, load_config
from {{cookiecutter.package_name}}.models import estimators

NAMES = list(estimators.NAMES)
SIGNALS = 4
# How each library's own model file starts (UBJ: an object; LightGBM: its text header).
MAGIC = {"xgboost": b"{", "lightgbm": b"tree\n"}


def with_model(cfg, name: str):
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"model": name})})


def rows(cfg, n: int, seed: int) -> pd.DataFrame:
    """Labelled rows whose numeric signals carry the label, in the contract's column names."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    return pd.DataFrame(
        {
            cfg.data.column("timestamp").name: pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.arange(n) + seed * n, "min"),
            **{f"s{k}": positive * 1.5 + rng.normal(size=n) for k in range(SIGNALS)},
            cfg.data.column("label").name: np.where(
                positive, cfg.problem.positive_class, cfg.problem.negative_class
            ),
        }
    )


def targets(cfg, frame: pd.DataFrame) -> np.ndarray:
    return (frame[cfg.data.column("label").name] == cfg.problem.positive_class).to_numpy(int)


def signals() -> ColumnTransformer:
    return ColumnTransformer([("num", "passthrough", [f"s{k}" for k in range(SIGNALS)])])


def small_bundle(cfg, name: str, train: pd.DataFrame):
    """A fitted bundle of ``name``; also the library's own fitted classifier."""
    estimator = estimators.get(name)
    features = signals().fit(train)
    fitted = estimator.small(trees=20, depth=3, seed=0).fit(
        features.transform(train), targets(cfg, train)
    )
    bundle = build_bundle(cfg, name, features, estimator.bundled(fitted), train)
    return bundle, fitted


# ---------------------------------------------------------------------------------------------
# The contract


def test_the_contract_chooses_among_the_estimators_this_package_has(cfg):
    allowed = get_args(Training.model_fields["model"].annotation)
    assert set(allowed) == set(estimators.NAMES) == {"xgboost", "lightgbm"}
    assert estimators.for_config(cfg).name == cfg.training.model
    with pytest.raises(estimators.UnknownEstimatorError, match="xgboost, lightgbm"):
        estimators.get("catboost")


def test_config_check_refuses_an_unknown_estimator_in_one_line(tmp_path, project_root):
    raw = yaml.safe_load((project_root / "configs/system.yaml").read_text(encoding="utf-8"))
    raw["training"]["model"] = "catboost"
    bad = tmp_path / "configs" / "system.yaml"
    bad.parent.mkdir()
    bad.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "check", "-c", str(bad)])
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if "training.model" in line]
    assert "'xgboost'" in line and "'lightgbm'" in line
    # A contract from before the choice existed tunes XGBoost, as it always did.
    del raw["training"]["model"]
    bad.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_config(bad).training.model == "xgboost"


@pytest.mark.parametrize("name", NAMES)
def test_search_space_and_fixed_parameters_do_not_overlap(name):
    import optuna

    estimator = estimators.get(name)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    tuned = estimator.search_space(trial)
    assert tuned and set(tuned) == set(trial.params)
    fixed = estimator.fixed_params(seed=7, pos_weight=2.5, n_jobs=3)
    # A fixed value would silently override the tuned one in {**fixed, **tuned}'s reverse.
    assert not set(tuned) & set(fixed)
    assert fixed["n_estimators"] == estimators.MAX_ESTIMATORS
    assert (fixed["scale_pos_weight"], fixed["random_state"], fixed["n_jobs"]) == (2.5, 7, 3)


# ---------------------------------------------------------------------------------------------
# The bundle: each library's own format, the same scores after loading


@pytest.mark.parametrize("name", NAMES)
def test_bundle_keeps_the_model_in_its_own_format_with_identical_scores(cfg, name, tmp_path):
    estimator = estimators.get(name)
    cfg = with_model(cfg, name)
    train, test = rows(cfg, 400, 1), rows(cfg, 200, 2)
    bundle, fitted = small_bundle(cfg, name, train)
    folder = tmp_path / "b"
    # The folder held the other estimator's bundle: its model file must not linger.
    other = next(n for n in NAMES if n != name)
    save_bundle(small_bundle(with_model(cfg, other), other, train)[0], folder)
    save_bundle(bundle, folder)

    assert {p.name for p in folder.iterdir()} == {BUNDLE_FILE, FEATURES_FILE, estimator.model_file}
    manifest = read_manifest(folder)
    assert manifest["files"]["model"]["format"] == estimator.model_format
    assert manifest["libraries"][name] == estimator.version()
    assert (folder / estimator.model_file).read_bytes().startswith(MAGIC[name])

    x_test = bundle.features.transform(test)
    # What the bundle carries scores exactly as the library's own classifier does.
    np.testing.assert_array_equal(
        bundle.model.predict_proba(x_test)[:, 1], fitted.predict_proba(x_test)[:, 1]
    )
    loaded = load_bundle(folder)
    assert loaded.kind == name and type(loaded.model) is type(bundle.model)
    scores = bundle.score(test)
    np.testing.assert_array_equal(loaded.score(test), scores)
    assert roc_auc_score(targets(cfg, test), scores) > 0.8
    # Serving's model (one thread, the booster called in place): the same scores, one row as
    # in a batch.
    one = estimators.for_serving(loaded.model)
    assert estimators.for_model(one) is estimator
    threads = one.threads if name == "lightgbm" else one.get_params()["n_jobs"]
    assert threads == 1
    served = dataclasses.replace(loaded, model=one)
    np.testing.assert_array_equal(served.score(test), scores)
    for row in (0, 3, len(test) - 1):
        np.testing.assert_array_equal(served.score(test.iloc[[row]]), scores[[row]])

    model_file = folder / estimator.model_file
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 1
    model_file.write_bytes(bytes(data))
    with pytest.raises(TamperedArtifactError, match=estimator.model_file):
        load_bundle(folder)


def test_an_unknown_model_format_is_refused_by_name(cfg, tmp_path):
    import json

    bundle, _ = small_bundle(cfg, "lightgbm", rows(cfg, 200, 1))
    save_bundle(bundle, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / BUNDLE_FILE).read_text())
    manifest["files"]["model"]["format"] = "catboost-cbm"
    (tmp_path / "b" / BUNDLE_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleFormatError, match="unknown model format 'catboost-cbm'"):
        load_bundle(tmp_path / "b")


def test_lightgbm_without_its_openmp_runtime_fails_in_one_line_naming_the_fix(monkeypatch):
    import builtins
    import sys

    real_import = builtins.__import__

    def without_openmp(name, *args, **kwargs):
        if name == "lightgbm":
            raise OSError("libgomp.so.1: cannot open shared object file: No such file or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "lightgbm", raising=False)
    monkeypatch.setattr(builtins, "__import__", without_openmp)
    with pytest.raises(RuntimeError, match=r"^training\.model: lightgbm cannot load .*libgomp1"):
        estimators.get("lightgbm").small(trees=2, depth=2, seed=0)


def test_requirements_name_the_installed_libraries():
    for estimator in estimators.ESTIMATORS.values():
        assert estimator.version(), f"{estimator.name} is not installed"
        assert estimator.requirement() == f"{estimator.requirement_name}=={estimator.version()}"
    # The registry asks pip for the CPU-only XGBoost: the default wheel pulls CUDA.
    assert estimators.get("xgboost").requirement_name == "xgboost-cpu"


# ---------------------------------------------------------------------------------------------
# Tuning with each estimator: pruning, resume, refit


def prune_after_first():
    """A pruner that prunes every trial but trial 0 at its first report."""
    import optuna

    class Pruner(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number > 0

    return Pruner()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_tuning_prunes_resumes_and_refits_with_each_estimator(cfg, name, tmp_path):
    import optuna

    from {{cookiecutter.package_name}}.models import study, tune

    cfg = with_model(cfg.model_copy(update={"root": tmp_path}), name)
    train, val = rows(cfg, 800, 1), rows(cfg, 400, 2)
    options = {
        "storage": f"sqlite:///{tmp_path}/optuna.db",
        "study_name": f"seam-{name}",
        "progress": False,
        "features": signals(),
        "track": False,
        "n_jobs": 1,
    }
    first = tune.tune(cfg, train, val, trials=1, **options)
    # The second call's trials are pruned: its best is the first call's trial, refitted.
    again = tune.tune(cfg, train, val, trials=2, pruner=prune_after_first(), **options)

    assert first.estimator == again.estimator == name
    states = [t.state for t in again.study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] + [optuna.trial.TrialState.PRUNED] * 2
    # Reports come every REPORT_EVERY rounds (0-based steps); a pruned trial stops at its first.
    trials = again.study.trials
    assert min(trials[0].intermediate_values) == study.REPORT_EVERY - 1
    assert list(trials[1].intermediate_values) == [study.REPORT_EVERY - 1]
    assert set(again.best_params) == set(trials[0].params)
    assert again.best_trial == 0 and again.bundle.kind == name
    assert estimators.for_model(again.bundle.model) is estimators.get(name)
    refit = average_precision_score(targets(cfg, val), again.bundle.score(val))
    assert refit == pytest.approx(first.best_value, abs=1e-9)
    assert 1 <= again.bundle.metadata["params"]["n_estimators"] <= estimators.MAX_ESTIMATORS
    assert f"{name} validation PR-AUC" in again.summary()

    # The same study name with the other estimator is refused: the parameters differ.
    other = next(n for n in NAMES if n != name)
    with pytest.raises(ValueError, match=f"tunes {name}, the contract chooses {other}"):
        tune.tune(with_model(cfg, other), train, val, trials=1, **options)


# ---------------------------------------------------------------------------------------------
# The registry records the library that reads the model


def requirements_of(info) -> list[str]:
    import mlflow

    path = mlflow.pyfunc.get_model_dependencies(info.uri)
    return Path(path).read_text(encoding="utf-8").split()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_registry_pins_the_library_of_the_registered_model(cfg, name, tmp_path, monkeypatch):
    from {{cookiecutter.package_name}}.models import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    cfg = with_model(cfg.model_copy(update={"root": tmp_path}), name)
    train, test = rows(cfg, 300, 1), rows(cfg, 100, 2)
    bundle, _ = small_bundle(cfg, name, train)
    save_bundle(bundle, tmp_path / "b")
    info = registry.register_bundle(cfg, tmp_path / "b")
    assert info.tags["kind"] == name

    pins = requirements_of(info)
    estimator = estimators.get(name)
    assert estimator.requirement() in pins
    others = [e.requirement_name for e in estimators.ESTIMATORS.values() if e is not estimator]
    assert not [p for p in pins if p.split("==")[0] in others], pins
    loaded, _ = registry.load_registered_bundle(cfg, info.version)
    np.testing.assert_array_equal(loaded.score(test), bundle.score(test))


# ---------------------------------------------------------------------------------------------
# training.model: lightgbm, end to end: features, tuning, evaluation, registry, HTTP serving


@pytest.mark.slow
def test_lightgbm_contract_trains_evaluates_registers_and_serves(
    project_root, tmp_path, monkeypatch
):
    from sample_project import request_bodies, scaled_rows, write_contract
    from test_serving import Server

    from {{cookiecutter.package_name}}.data.split import split_by_time
    from {{cookiecutter.package_name}}.data.synthetic import generate
    from {{cookiecutter.package_name}}.features import build as features_stage
    from {{cookiecutter.package_name}}.models import evaluate, registry, tune

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config_path = write_contract(
        project_root / "configs" / "system.yaml", tmp_path, {"training": {"model": "lightgbm"}}
    )
    cfg = load_config(config_path)
    assert cfg.training.model == "lightgbm"
    problem = cfg.problem
    items = generate(cfg, scaled_rows(1500), 11, days=14)
    split_dir, features_dir = tmp_path / "data" / "split", tmp_path / "data" / "features"
    split_dir.mkdir(parents=True)
    parts = split_by_time(cfg, items)
    for part, frame in parts.items():
        frame.to_parquet(split_dir / f"{part}.parquet")
    features_stage.run(cfg, split_dir, features_dir)

    candidate = tmp_path / "artifacts" / "candidate"
    tuned = tune.run(
        cfg,
        features_dir / "train.parquet",
        features_dir / "validation.parquet",
        candidate,
        trials=3,
        progress=False,
        report_dir=tmp_path / "reports" / "tuning",
        n_jobs=1,
    )
    assert tuned.estimator == "lightgbm" and tuned.trials_run == 3
    assert "-lightgbm-" in tuned.study_name
    assert read_manifest(candidate)["files"]["model"]["format"] == "lightgbm-text"
    result = evaluate.run(
        cfg,
        candidate,
        features_dir / "validation.parquet",
        features_dir / "test.parquet",
        tmp_path / "reports" / "evaluation",
        history=features_dir / "train.parquet",
    )
    # Well above the positive share, which is what a model without skill scores.
    share = result.test["support"]["positive"] / result.test["support"]["rows"]
    assert result.test["pr_auc"] > min(0.8, 10 * share)
    assert "(lightgbm)" in result.model_card_path.read_text(encoding="utf-8").splitlines()[0]

    info = registry.register_bundle(cfg, candidate)
    assert info.tags["kind"] == "lightgbm"
    assert estimators.get("lightgbm").requirement() in requirements_of(info)
    client = registry.connect(cfg)
    client.set_registered_model_alias(
        cfg.training.mlflow.registered_model, registry.CHAMPION, str(info.version)
    )

    served = SimpleNamespace(cfg=cfg, config_path=config_path)
    server = Server(served, "lightgbm", SERVING_ROUTING="single")
    try:
        server.wait_ready()
        import httpx

        # The latest rows of each class: both are needed to judge the ranking.
        test = parts["test"]
        positive = test[cfg.data.column("label").name] == problem.positive_class
        test = pd.concat([test[positive].tail(15), test[~positive].tail(45)]).sort_index()
        response = httpx.post(
            server.url + "/classify_batch", json=request_bodies(cfg, test), timeout=60
        )
        assert response.status_code == 200, response.text
        answers = response.json()
    finally:
        server.stop()
    assert len(answers) == len(test)
    assert {a["model_version"] for a in answers} == {info.version}
    assert {a["label"] for a in answers} <= {problem.positive_class, problem.negative_class}
    scores = np.array([a["score"] for a in answers])
    assert ((scores >= 0) & (scores <= 1)).all()
    # Sensible, not merely well-formed: the served scores rank the held-out labels (by chance,
    # the ROC-AUC of 15 + 45 rows is 0.5 with a standard error near 0.085).
    assert roc_auc_score(targets(cfg, test), scores) > 0.75
