"""The compiled forest scores as XGBoost's booster does, bit for bit, or is not used."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from {{cookiecutter.package_name}}.models import estimators, forest

FEATURES = 6


def fitted(trees: int, depth: int | None, seed: int = 0, cut: float = 0.4, **params):
    from xgboost import XGBClassifier

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, FEATURES)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    signal = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) ** 2 - np.isnan(x[:, 2])
    y = ((signal > cut) ^ (rng.random(len(x)) < 0.01)).astype(int)
    if depth is not None:
        params["max_depth"] = depth
    model = XGBClassifier(n_estimators=trees, n_jobs=1, **params)
    if "early_stopping_rounds" in params:
        model.fit(x[:1000], y[:1000], eval_set=[(x[1000:], y[1000:])], verbose=False)
    else:
        model.fit(x, y)
    return model


@pytest.fixture(scope="module")
def models():
    """name -> (the fitted classifier, as serving wraps it)."""
    fits = {
        "shallow": fitted(40, 3),
        "deep": fitted(120, 7, seed=1),
        "early_stopped": fitted(300, 4, seed=2, early_stopping_rounds=5, learning_rate=0.5),
        # A rare positive class: scores near 0, where float32 holds the most digits.
        "rare": fitted(60, 4, seed=3, cut=4.5),
    }
    return {name: (model, estimators.InPlaceXGBoost(model)) for name, model in fits.items()}


def booster_scores(model, served, x):
    return model.get_booster().inplace_predict(
        x, iteration_range=served._range, missing=np.nan, validate_features=False
    )


def test_early_stopping_left_trees_out_of_the_served_range(models):
    model, served = models["early_stopped"]
    assert 0 < served._range[1] < model.get_booster().num_boosted_rounds()
    assert len(served._forest.roots) == served._range[1]


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["shallow", "deep", "early_stopped", "rare"]),
    x=arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.just(FEATURES)),
        elements=st.one_of(
            st.floats(-3, 3, width=32), st.just(float("nan")), st.sampled_from([0.0, -0.0])
        ),
    ),
)
def test_compiled_scores_equal_the_boosters_bit_for_bit(models, name, x):
    model, served = models[name]
    assert served._forest is not None
    np.testing.assert_array_equal(served._forest.predict(x), booster_scores(model, served, x))


def test_the_sigmoid_uses_cs_expf_even_where_rounding_it_is_a_close_call(models):
    # numpy's exp rounded to float32 and C's expf disagree on about one value in 500, close
    # to a midpoint between two floats; XGBoost's scores follow expf.
    import ctypes
    import ctypes.util

    expf = ctypes.CDLL(ctypes.util.find_library("m")).expf
    expf.restype, expf.argtypes = ctypes.c_float, [ctypes.c_float]
    z = np.random.default_rng(7).normal(0, 8, 20_000).astype(np.float32)
    expected = np.array([expf(float(v)) for v in z], dtype=np.float32)
    assert (np.exp(z.astype(np.float64)).astype(np.float32) != expected).any()
    np.testing.assert_array_equal(forest._expf(z), expected)
    few = [forest._expf(z[i : i + 3]) for i in range(0, 3000, 3)]  # called value by value
    np.testing.assert_array_equal(np.concatenate(few), expected[:3000])
    model, served = models["rare"]
    x = forest._probe_rows(served._forest, 5000)
    assert np.median(booster_scores(model, served, x)) < 0.05
    np.testing.assert_array_equal(served._forest.predict(x), booster_scores(model, served, x))


def test_a_request_walks_the_compiled_trees_and_a_batch_the_booster(models, monkeypatch):
    model = models["shallow"][0]
    served = estimators.InPlaceXGBoost(model)  # its own: predict is patched below
    assert served._forest_rows >= 1
    walked = []
    original = served._forest.predict
    monkeypatch.setattr(served._forest, "predict", lambda x: walked.append(len(x)) or original(x))
    rng = np.random.default_rng(5)
    for rows in (1, served._forest_rows, served._forest_rows + 1, 2000):
        x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
        proba = served.predict_proba(x)
        np.testing.assert_array_equal(proba[:, 1], booster_scores(model, served, x))
        np.testing.assert_allclose(proba, model.predict_proba(x), rtol=0, atol=1e-7)
    assert walked == [1, served._forest_rows]
    # What the compiled trees leave to the booster: other dtypes, infinities.
    served.predict_proba(np.ones((1, FEATURES)))
    served.predict_proba(np.full((1, FEATURES), np.inf, dtype=np.float32))
    served.predict_proba(np.empty((0, FEATURES), dtype=np.float32))
    assert walked == [1, served._forest_rows]


def test_a_forest_that_would_score_differently_is_not_used(models, monkeypatch):
    booster = models["shallow"][0].get_booster()
    assert forest.compile_forest(booster, (0, 0), np.nan) is not None
    original = forest.CompiledForest.predict
    monkeypatch.setattr(
        forest.CompiledForest, "predict", lambda self, x: original(self, x) + np.float32(1e-6)
    )
    assert forest.compile_forest(booster, (0, 0), np.nan) is None


def test_models_outside_what_it_covers_keep_the_booster(models):
    booster = models["shallow"][0].get_booster()
    assert forest.compile_forest(booster, (0, 0), 0.0) is None  # another missing marker
    parallel = fitted(5, 3, num_parallel_tree=2).get_booster()
    assert forest.compile_forest(parallel, (0, 0), np.nan) is None
    linear = fitted(5, None, booster="gblinear").get_booster()
    assert forest.compile_forest(linear, (0, 0), np.nan) is None
