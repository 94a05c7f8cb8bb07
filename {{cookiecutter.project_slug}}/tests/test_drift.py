"""Drift statistics: numeric, category and text drift, KS, prediction drift, input signals."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from {{cookiecutter.package_name}} import profiles
from {{cookiecutter.package_name}}.distributions import distribution, reference_distributions
from {{cookiecutter.package_name}}.monitoring import drift

RULES = {"psi_max": 0.2, "missing_max": 0.1, "warn_fraction": 0.5, "min_rows": 200}
WORDS_A = [f"alpha{i}" for i in range(300)]
WORDS_B = [f"beta{i}" for i in range(300)]


def _numeric_reference(rng, n=20_000) -> dict:
    frame = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.exponential(2.0, n)})
    return reference_distributions(frame)


def _texts(rng, n, words, per_row=12) -> list[str]:
    # Zipf-like word use: a few common words, a long tail of rare ones.
    weights = 1.0 / np.arange(1, len(words) + 1)
    picks = rng.choice(len(words), size=(n, per_row), p=weights / weights.sum())
    return [" ".join(words[i] for i in row) for row in picks]


def _text_signals(reference: dict, texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(profiles.InputSignals(reference).row_signals(pd.DataFrame({"body": texts})))


def test_distribution_has_101_quantiles():
    dist = distribution(np.arange(1000, dtype=float), 10)
    assert len(dist["quantiles"]) == 101
    assert dist["quantiles"][0] == 0 and dist["quantiles"][-1] == 999
    assert np.all(np.diff(dist["quantiles"]) >= 0)
    assert distribution(np.array([np.nan]), 10)["quantiles"] == []


def test_same_distribution_is_ok_with_small_psi():
    rng = np.random.default_rng(1)
    reference = _numeric_reference(rng)
    window = pd.DataFrame({"a": rng.normal(0, 1, 5000), "b": rng.exponential(2.0, 5000)})
    results = drift.data_drift(reference, window, **RULES)
    assert [r.status for r in results] == ["ok", "ok"]
    assert all(r.psi < 0.02 and r.ks < 0.03 for r in results)
    json.dumps([r.to_dict() for r in results])  # the JSON summary must serialise


def test_shifted_numeric_feature_alerts_and_is_named_first():
    rng = np.random.default_rng(2)
    reference = _numeric_reference(rng)
    window = pd.DataFrame({"a": rng.normal(0, 1, 5000), "b": rng.exponential(2.0, 5000) + 2})
    results = drift.data_drift(reference, window, **RULES)
    worst = results[0]
    assert (worst.name, worst.status, worst.kind) == ("b", "alert", "numeric")
    assert worst.reason.startswith(f"PSI {worst.psi:.3f} > 0.2")
    assert worst.detail["mean_now"] > worst.detail["mean_ref"] + 1.5
    assert results[1].status == "ok"


def test_missing_rate_rise_alerts_and_absent_feature_counts_as_missing():
    rng = np.random.default_rng(3)
    reference = _numeric_reference(rng)
    a = rng.normal(0, 1, 5000)
    a[:1500] = np.nan  # 30 % missing where the reference had none
    results = drift.data_drift(reference, pd.DataFrame({"a": a}), **RULES)
    by_name = {r.name: r for r in results}
    assert by_name["a"].status == "alert" and "missing 30.0% vs 0.0%" in by_name["a"].reason
    assert by_name["a"].psi < 0.05  # the values that are there did not move
    assert by_name["b"].status == "alert" and by_name["b"].detail["absent"]
    assert by_name["b"].null_share_now == 1.0


def test_a_clock_feature_is_judged_only_over_a_window_that_spans_its_cycle():
    """A day of traffic holds one or two weekdays however steady the data: the weekday's PSI is
    reported, not judged, on a window shorter than its week; the hour is judged on a day. The
    server's drift gauges, over the last requests whatever time they span, leave both out."""
    from {{cookiecutter.package_name}}.features.clock import TimestampFeatures
    from {{cookiecutter.package_name}}.serving.metrics import DriftWindow

    rng = np.random.default_rng(9)
    hour, weekday = "ts_t_hour", "ts_t_weekday"
    week = pd.DataFrame({weekday: rng.integers(0, 7, 20_000), hour: rng.integers(0, 24, 20_000)})
    reference = reference_distributions(week.astype(float))
    reference["cycles"] = TimestampFeatures("t").cycle_hours()
    assert reference["cycles"] == {hour: 24.0, weekday: 168.0}
    tuesday = pd.DataFrame({weekday: np.full(3000, 1.0), hour: rng.integers(0, 24, 3000)})
    by_name = {r.name: r for r in drift.data_drift(reference, tuesday, **RULES, window_hours=24)}
    assert by_name[weekday].psi > 1 and by_name[weekday].status == "ok"
    assert "PSI not judged: a 168 h cycle in 24 h" in by_name[weekday].reason
    assert by_name[hour].status == "ok" and "not judged" not in by_name[hour].reason
    weekly = {r.name: r for r in drift.data_drift(reference, tuesday, **RULES, window_hours=168)}
    assert weekly[weekday].status == "alert"
    gauges = DriftWindow(reference, min_rows=10)
    assert gauges.features == [] and gauges.scores() == {}


def test_the_reference_names_the_clock_features_of_its_model(cfg):
    """Every use case's model: the clock features it computes are in ``cycles``, nothing else."""
    from sample_project import fit_bundle

    from {{cookiecutter.package_name}}.data.synthetic import generate
    from {{cookiecutter.package_name}}.features.history import attach_history

    bundle = fit_bundle(cfg, attach_history(cfg, generate(cfg, 400, 3, days=3)), trees=5)
    names = bundle.metadata["feature_names"]
    clock = {n for n in names if n.startswith(("ts_", "clock_")) and not n.endswith("_missing")}
    assert set(bundle.reference["cycles"]) == clock
    assert set(bundle.reference["cycles"].values()) <= {24.0, 168.0}


def test_warn_between_half_and_full_threshold():
    result = drift.numeric_drift(
        "x",
        {"cuts": [0.0], "shares": [0.5, 0.5], "null_share": 0.0},
        np.r_[-np.ones(300), np.ones(700)],  # PSI 0.17: above 0.1, below 0.2
        **RULES,
    )
    assert result.status == "warn" and "(warn)" in result.reason


def test_category_with_new_values_alerts_and_names_them():
    rng = np.random.default_rng(4)
    values = ["a", "b", "c", "d", "e"]
    profile = profiles.category_profile(pd.Series(rng.choice(values, 5000)))
    assert profile["other_share"] == 0 and profile["distinct"] == 5
    same = drift.category_drift("domain", profile, pd.Series(rng.choice(values, 2000)), **RULES)
    assert same.status == "ok" and same.psi < 0.02
    now = rng.choice(values, 2000).astype(object)
    now[:600] = "new.example"
    moved = drift.category_drift("domain", profile, pd.Series(now), **RULES)
    assert moved.status == "alert" and moved.psi > 1
    assert moved.detail["new_share_now"] == pytest.approx(0.3)
    assert moved.detail["new_values"][0]["value"] == "new.example"


def test_category_churn_of_the_reference_raises_the_bar():
    # A column whose shares swing between quarters of the reference (bursts) tolerates as
    # much swing in the window; the same shift on a steady column alerts.
    bursty = pd.Series(["x"] * 900 + ["y"] * 100 + ["y"] * 900 + ["x"] * 100)
    steady = pd.Series(["x", "y"] * 1000)
    window = pd.Series(["x"] * 850 + ["y"] * 150)
    bursty_profile = profiles.category_profile(bursty)
    assert (
        bursty_profile["churn_psi"] > 0.5 and profiles.category_profile(steady)["churn_psi"] < 1e-6
    )
    assert drift.category_drift("c", bursty_profile, window, **RULES).status == "ok"
    steady_result = drift.category_drift("c", profiles.category_profile(steady), window, **RULES)
    assert steady_result.status == "alert"


def test_text_with_new_vocabulary_raises_unseen_share_and_alerts():
    rng = np.random.default_rng(5)
    reference = {"text": {"body": profiles.text_profile(pd.Series(_texts(rng, 4000, WORDS_A)))}}
    same = _text_signals(reference, _texts(rng, 2000, WORDS_A))
    shifted = _texts(rng, 2000, WORDS_A)
    shifted[:600] = _texts(rng, 600, WORDS_B)
    new = _text_signals(reference, shifted)
    results = {}
    for name, frame in (("same", same), ("new", new)):
        results[name] = drift.data_drift(reference, frame, **RULES)[0]
    assert results["same"].status == "ok" and results["same"].psi < 0.1
    assert results["new"].status == "alert" and results["new"].kind == "text"
    assert "unseen-token PSI" in results["new"].reason
    detail = results["new"].detail
    assert detail["unseen_mean_now"] > detail["unseen_mean_ref"] + 0.2


def test_top_token_shift_is_detected_and_named():
    rng = np.random.default_rng(6)
    # Two topics over one vocabulary: no new words, only the mix moves.
    words = WORDS_A[:40]
    topic_a = [" ".join(rng.choice(words[:20], 8)) for _ in range(3000)]
    topic_b = [" ".join(rng.choice(words[20:], 8)) for _ in range(3000)]
    mixed = [t for pair in zip(topic_a, topic_b, strict=True) for t in pair]
    reference = {"text": {"body": profiles.text_profile(pd.Series(mixed))}}
    window = _text_signals(reference, topic_a[:1900] + topic_b[:100])
    result = drift.data_drift(reference, window, **RULES)[0]
    assert result.status == "alert" and "top-token mix PSI" in result.reason
    assert result.detail["unseen_psi"] < 0.05  # nothing new: only the mix moved
    assert result.detail["top_token_shift"] > 0.1
    assert result.detail["movers"][0]["token"] in words[:20]
    calm = drift.data_drift(reference, _text_signals(reference, mixed[:2000]), **RULES)[0]
    assert calm.status == "ok" and calm.detail["top_token_shift"] < 0.02


def test_too_few_rows_is_not_judged():
    rng = np.random.default_rng(7)
    reference = _numeric_reference(rng)
    reference["categories"] = {"domain": profiles.category_profile(pd.Series(["a", "b"] * 500))}
    window = pd.DataFrame({"a": rng.normal(0, 1, 50), "b": rng.normal(9, 1, 50)})
    results = drift.data_drift(reference, window, **RULES)
    assert {r.status for r in results} == {"too_few_rows"}
    assert all(r.psi is None and "50 rows < 200" in r.reason for r in results)
    # A text column too: a few rows, or none (an empty window), is not judged either.
    reference["text"] = {"body": profiles.text_profile(pd.Series(_texts(rng, 400, WORDS_A)))}
    for texts in (_texts(rng, 50, WORDS_A), []):
        window = _text_signals(reference, texts)
        (text,) = [r for r in drift.data_drift(reference, window, **RULES) if r.kind == "text"]
        assert text.status == "too_few_rows" and text.detail["unseen_mean_now"] is None


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: (rng.normal(0, 1, 200_000), rng.normal(0.15, 1.1, 100_000)),
        lambda rng: (rng.exponential(1, 200_000), rng.exponential(1.3, 100_000)),
        lambda rng: (rng.poisson(1.5, 200_000), rng.poisson(1.8, 100_000)),
        lambda rng: (rng.normal(0, 1, 200_000), rng.normal(0, 1, 100_000)),
    ],
    ids=["normal", "exponential", "poisson", "same"],
)
def test_ks_from_quantiles_agrees_with_scipy(make):
    reference, live = make(np.random.default_rng(8))
    quantiles = distribution(reference.astype(float), 10)["quantiles"]
    ours = drift.ks_from_quantiles(quantiles, live.astype(float))
    assert ours == pytest.approx(stats.ks_2samp(reference, live).statistic, abs=0.02)


def test_ks_is_none_without_quantiles_or_values():
    assert drift.ks_from_quantiles([], np.ones(10)) is None
    assert drift.ks_from_quantiles(list(range(101)), np.array([np.nan])) is None


def test_prediction_drift_scores_and_positive_rate():
    rng = np.random.default_rng(9)
    ref_scores = rng.beta(1, 3, 20_000)
    reference = reference_distributions(pd.DataFrame({"x": ref_scores}), ref_scores)
    reference["predicted_positive_rate"] = float((ref_scores >= 0.5).mean())
    same = rng.beta(1, 3, 5000)
    result = drift.prediction_drift(
        reference, same, same >= 0.5, psi_max=0.2, warn_fraction=0.5, min_rows=200, confidence=0.95
    )
    assert result["status"] == "ok" and result["score"]["kind"] == "score"
    rate = result["positive_rate"]
    assert rate["low"] <= rate["reference"] <= rate["high"]
    shifted = rng.beta(2, 2, 5000)
    result = drift.prediction_drift(
        reference,
        shifted,
        shifted >= 0.5,
        psi_max=0.2,
        warn_fraction=0.5,
        min_rows=200,
        confidence=0.95,
    )
    assert result["status"] == "alert" and "positive rate" in result["reason"]
    histogram = result["histogram"]
    assert len(histogram["reference"]) == len(histogram["window"]) == len(histogram["cuts"]) + 1
    fine = result["fine_histogram"]
    assert sum(fine["reference"]) == pytest.approx(1.0) and sum(fine["window"]) == pytest.approx(1)
    json.dumps(result)


def test_input_signals_on_one_row():
    reference = {
        "categories": {"content_type": profiles.category_profile(pd.Series(["text/plain"] * 4))},
        "text": {"body": profiles.text_profile(pd.Series(["Hello there friend"] * 10))},
    }
    signals = profiles.InputSignals(reference)
    assert reference["text"]["body"]["top_tokens"] == ["friend", "hello", "there"]
    row = pd.DataFrame({"content_type": ["text/html"], "body": ["Hello stranger, hello THERE"]})
    (out,) = signals.row_signals(row)
    assert out == {
        "cat.content_type": "text/html",
        "text.body.unseen": pytest.approx(1 / 3),
        "text.body.top": [1, 2],
    }
    assert list(out) == signals.keys
    (empty,) = signals.row_signals(pd.DataFrame({"body": [None]}))
    assert empty == {"cat.content_type": None, "text.body.unseen": None, "text.body.top": []}
    assert profiles.InputSignals({}).row_signals(row) == [{}]


def test_tokenize():
    assert profiles.tokenize("Win $500 NOW, 30% off x-ray don't") == [
        "win",
        "500",
        "now",
        "30%",
        "off",
        "x-ray",
        "don't",
    ]
    assert profiles.tokenize(None) == [] and profiles.tokenize(float("nan")) == []


def test_text_profile_measures_unseen_share_on_held_out_rows():
    rng = np.random.default_rng(10)
    words = [f"w{i}" for i in range(20_000)]  # a long tail: rare words keep appearing
    texts = pd.Series(_texts(rng, 5000, words, per_row=6))
    profile = profiles.text_profile(texts, holdout=0.2)
    assert profile["holdout_rows"] == 1000 and profile["unseen"]["mean"] > 0.1
    # The held-out rows are new text, like live traffic: a fresh sample of the same process
    # has the same unseen share, so it shows no drift.
    reference = {"text": {"body": profile}}
    fresh = _text_signals(reference, _texts(rng, 3000, words, per_row=6))
    assert fresh["text.body.unseen"].mean() == pytest.approx(profile["unseen"]["mean"], rel=0.1)
    assert drift.data_drift(reference, fresh, **RULES)[0].status == "ok"
    # Scored on its own fitting rows instead, the share would be biased low.
    fitting = _text_signals(reference, texts.iloc[:4000].tolist())
    assert fitting["text.body.unseen"].mean() < 0.8 * profile["unseen"]["mean"]
