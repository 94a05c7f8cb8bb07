"""Online quality from feedback, serving health, and champion vs challenger, on generated logs."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from contract_labels import NEG, POS

from {{cookiecutter.package_name}}.monitoring import compare, online
from {{cookiecutter.package_name}}.predlog.store import OnlineCounts

START = pd.Timestamp("2026-01-01")


def served_window(n=20_000, *, fp_share=0.001, positive_rate=0.3, recall=0.9, report=0.5, seed=0):
    """Served champion predictions over 24 h with user feedback.

    Exactly ``fp_share`` of the negatives are predicted positive, and users rescue every one of
    them; a share ``report`` of the missed positives is reported; a few predictions are confirmed.
    """
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < positive_rate
    negatives = np.flatnonzero(~truth)
    predicted = truth & (rng.random(n) < recall)
    predicted[rng.choice(negatives, round(fp_share * len(negatives)), replace=False)] = True
    feedback = np.full(n, None, dtype=object)
    feedback[predicted & ~truth] = NEG
    feedback[~predicted & truth & (rng.random(n) < report)] = POS
    confirm = (predicted == truth) & (rng.random(n) < 0.01)
    feedback[confirm] = np.where(truth[confirm], POS, NEG)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "created_at": START + pd.to_timedelta(np.sort(rng.random(n)) * 24, unit="h"),
            "model_version": 1,
            "role": "champion",
            "served": True,
            "label": np.where(predicted, POS, NEG),
            "latency_ms": rng.gamma(2.0, 4.0, n),
            "feedback": feedback,
        }
    )


def shadow_pairs(n, labelled, *, champion_errors, challenger_errors, positive_rate=0.3, seed=0):
    """Shadow log: each request has a served champion row and an unserved challenger row.

    ``*_errors`` is (FN rate among positives, FP rate among negatives); errors are independent.
    A random sample of ``labelled`` requests has feedback (the truth), like an audit sample.
    """
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < positive_rate

    def answers(fn_rate, fp_rate):
        wrong = np.where(truth, rng.random(n) < fn_rate, rng.random(n) < fp_rate)
        return truth ^ wrong

    champ, chall = answers(*champion_errors), answers(*challenger_errors)
    feedback = np.full(n, None, dtype=object)
    chosen = rng.choice(n, labelled, replace=False)
    feedback[chosen] = np.where(truth[chosen], POS, NEG)
    ids = [f"r{i}" for i in range(n)]
    rows = {
        "request_id": np.repeat(ids, 2),
        "role": np.tile(["champion", "challenger"], n),
        "model_version": np.tile([1, 2], n),
        "served": np.tile([True, False], n),
        "label": np.where(np.column_stack([champ, chall]).ravel(), POS, NEG),
        "feedback": np.repeat(feedback, 2),
    }
    return pd.DataFrame(rows)


# -- Wilson intervals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "confidence", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (Wilson score).
        (81, 263, 0.95, (0.2553, 0.3662)),
        (15, 148, 0.95, (0.0624, 0.1605)),
        (0, 20, 0.95, (0.0, 0.1611)),
        (1, 29, 0.95, (0.0061, 0.1718)),
        # Also checked against scipy.stats.binomtest(k, n).proportion_ci(method="wilson").
        (5, 10, 0.95, (0.2366, 0.7634)),
        (15, 148, 0.99, (0.0536, 0.1833)),
    ],
)
def test_wilson_matches_reference_values(k, n, confidence, expected):
    low, high = online.wilson_interval(k, n, confidence)
    assert low == pytest.approx(expected[0], abs=2e-4)
    assert high == pytest.approx(expected[1], abs=2e-4)


def test_wilson_edge_cases():
    assert all(math.isnan(x) for x in online.wilson_interval(0, 0))
    with pytest.raises(ValueError, match="k <= n"):
        online.wilson_interval(3, 2)
    with pytest.raises(ValueError, match="confidence"):
        online.wilson_interval(1, 2, confidence=1.0)
    e = online.Estimate.of(0, 0)
    assert e.to_dict() == {"value": None, "low": None, "high": None, "k": 0, "n": 0}


# -- online quality -----------------------------------------------------------------------------


def checks_of(frame, training_precision=0.99):
    quality = online.online_quality(frame, POS, NEG, confidence=0.95)
    checks = online.quality_checks(
        quality, training_precision=training_precision, fp_rate_max=0.001, precision_drop_max=0.05
    )
    return quality, {c["name"]: c for c in checks}


def test_quality_follows_the_contract_definitions():
    frame = served_window(fp_share=0.002)
    quality = online.online_quality(frame, POS, NEG)
    counts = OnlineCounts(
        quality["predicted_positive"],
        quality["predicted_negative"],
        quality["rescued"],
        quality["reported"],
    )
    assert quality["precision"]["value"] == pytest.approx(counts.precision)
    assert quality["false_positive_rate"]["value"] == pytest.approx(counts.false_positive_rate)
    assert quality["served"] == 20_000 and quality["labels"] > quality["rescued"]
    # Labelled rows are mostly corrections: their precision is far below the contract's.
    assert quality["labelled_precision"]["value"] < quality["precision"]["value"] - 0.3
    recall = quality["recall"]
    assert recall["n"] == recall["k"] + quality["reported"]
    json.dumps(quality, allow_nan=False)


def test_fp_rate_of_0_2_percent_alerts_and_0_05_percent_does_not():
    quality, checks = checks_of(served_window(fp_share=0.002))
    fp = checks["false_positive_rate"]
    assert fp["status"] == "alert" and fp["interval"][0] > 0.001
    assert quality["false_positive_rate"]["k"] == quality["rescued"] > 0

    _, checks = checks_of(served_window(fp_share=0.0005))
    assert checks["false_positive_rate"]["status"] == "ok"
    assert checks["precision_drop"]["status"] == "ok"


def test_fp_rate_over_the_threshold_but_not_significant_warns():
    _, checks = checks_of(served_window(n=2_000, fp_share=0.0015))
    assert checks["false_positive_rate"]["status"] == "warn"
    assert "not significant" in checks["false_positive_rate"]["reason"]


def test_precision_drop_alerts_when_significant_and_warns_when_not():
    # 3 % of the negatives hidden: ~700 rescues on ~5,400 positive predictions, precision ~0.87.
    quality, checks = checks_of(served_window(fp_share=0.03))
    drop = checks["precision_drop"]
    assert drop["status"] == "alert", drop
    assert drop["value"] == pytest.approx(0.99 - quality["precision"]["value"])
    # The same drop on 120 rows is not significant.
    _, checks = checks_of(served_window(n=120, fp_share=0.03, seed=3))
    assert checks["precision_drop"]["status"] == "warn", checks["precision_drop"]


def test_quality_checks_without_data():
    empty = served_window(n=50).iloc[:0]
    _, checks = checks_of(empty, training_precision=None)
    assert {c["status"] for c in checks.values()} == {"no_data"}
    _, checks = checks_of(served_window(n=500), training_precision=None)
    assert checks["precision_drop"]["status"] == "no_data"


def test_unserved_rows_do_not_count():
    frame = served_window(n=1_000)
    shadow = frame.assign(served=False, role="challenger", label=POS)
    both = pd.concat([frame, shadow], ignore_index=True)
    assert online.online_quality(both, POS, NEG) == online.online_quality(frame, POS, NEG)


def test_quality_over_time():
    frame = served_window()
    points = online.quality_over_time(frame, POS, NEG, freq=None)
    assert 12 <= len(points) <= 48
    assert sum(p["n"] for p in points) == (frame["label"] == POS).sum()
    assert sum(p["served"] for p in points) == len(frame)
    assert points[0]["start"] == START.isoformat()
    assert all(p["low"] <= p["precision"] <= p["high"] for p in points)
    assert len(online.quality_over_time(frame, POS, NEG, freq="6h")) == 4
    json.dumps(points, allow_nan=False)
    assert online.auto_frequency(START, START + pd.Timedelta("1h")) == "5min"


def test_serving_health():
    frame = served_window(n=2_000)
    health = online.serving_health(frame, 0, latency_p99_ms_max=100, error_rate_max=0.01)
    assert health["latency_ms"]["p50"] < health["latency_ms"]["p99"] < 100
    assert [c["status"] for c in health["checks"]] == ["ok", "ok"]
    # 15 errors in 2,015 requests: 0.74 % warns (over half of 1 %); a p99 over budget alerts.
    health = online.serving_health(frame, 15, latency_p99_ms_max=20, error_rate_max=0.01)
    assert health["error_rate"] == pytest.approx(15 / 2_015)
    assert [c["status"] for c in health["checks"]] == ["alert", "warn"]
    health = online.serving_health(frame.iloc[:0], 0, latency_p99_ms_max=20, error_rate_max=0.01)
    assert [c["status"] for c in health["checks"]] == ["no_data", "no_data"]


# -- champion vs challenger ---------------------------------------------------------------------


def test_clearly_better_challenger():
    frame = shadow_pairs(10_000, 2_000, champion_errors=(0.1, 0.04), challenger_errors=(0.05, 0.02))
    result = compare.compare_models(frame, POS, NEG)
    assert result.verdict == "better", result.summary()
    assert result.mode == "paired" and result.pairs == 10_000 and result.labelled == 2_000
    assert result.challenger_version == 2 and result.champion_versions == [1]
    assert result.labels_needed == 0
    diff = result.difference["error_rate"]
    assert diff["high"] < 0 and diff["low"] < diff["value"] < diff["high"]
    assert result.tests["error_rate"]["significant"]
    assert result.summary().startswith("The challenger v2 is better than champion v1")
    payload = result.to_dict()
    json.dumps(payload, allow_nan=False)
    assert payload["challenger"]["metrics"]["precision"]["n"] > 0


def test_models_of_equal_quality_are_not_distinguishable():
    frame = shadow_pairs(5_000, 1_000, champion_errors=(0.1, 0.03), challenger_errors=(0.1, 0.03))
    result = compare.compare_models(frame, POS, NEG)
    assert result.verdict == "not_distinguishable", result.summary()
    assert result.labels_needed > 0
    assert 0.8 < result.agreement.value < 0.95


def test_identical_answers_cannot_be_told_apart():
    frame = shadow_pairs(2_000, 500, champion_errors=(0.1, 0.03), challenger_errors=(0.1, 0.03))
    champion = frame["role"] == "champion"
    frame.loc[~champion, "label"] = frame.loc[champion, "label"].to_numpy()
    result = compare.compare_models(frame, POS, NEG)
    assert result.verdict == "not_distinguishable" and result.agreement.value == 1.0
    assert result.labels_needed is None and "agree on every pair" in " ".join(result.notes)


def test_too_few_labels_refuses_and_still_reports():
    frame = shadow_pairs(5_000, 50, champion_errors=(0.1, 0.04), challenger_errors=(0.05, 0.02))
    result = compare.compare_models(frame, POS, NEG, min_labels=200)
    assert result.verdict == "too_few_labels"
    assert result.labelled == 50 and result.pairs == 5_000
    assert result.champion["metrics"]["accuracy"].n == 50
    assert result.labels_needed >= 150
    assert "Too few labels" in result.summary()


def test_challenger_with_more_false_positives_is_worse_even_with_fewer_errors():
    # Fewer errors overall (it misses fewer positives) but three times the false positives.
    frame = shadow_pairs(10_000, 3_000, champion_errors=(0.2, 0.01), challenger_errors=(0.05, 0.03))
    result = compare.compare_models(frame, POS, NEG)
    assert result.tests["error_rate"]["challenger"] == "lower"
    assert result.tests["false_positive_rate"]["challenger"] == "higher"
    assert result.verdict == "worse", result.summary()


def test_canary_arms_are_compared_unpaired():
    frame = shadow_pairs(20_000, 8_000, champion_errors=(0.1, 0.04), challenger_errors=(0.05, 0.02))
    # Canary: each request met one model (half to each), both served.
    canary = frame[(frame.index // 2) % 2 == (frame["role"] == "challenger")].assign(served=True)
    result = compare.compare_models(canary, POS, NEG)
    assert result.mode == "unpaired" and result.pairs == 0 and result.agreement is None
    assert result.verdict == "better", result.summary()
    assert "canary" in result.notes[0]
    assert result.tests["error_rate"]["method"] == "two-proportion z-test"
    json.dumps(result.to_dict(), allow_nan=False)
    # Canary rows next to shadow pairs: the pairs are compared, the rest is left out (and said).
    mixed = pd.concat([frame.iloc[:4_000], canary.iloc[10_000:]], ignore_index=True)
    result = compare.compare_models(mixed, POS, NEG, min_labels=100)
    assert result.mode == "paired" and result.pairs == 2_000
    assert "left out" in result.notes[-1]


def test_no_challenger_in_the_window():
    frame = served_window(n=100)
    result = compare.compare_models(frame, POS, NEG)
    assert result.verdict == "too_few_labels" and result.mode == "none"
    assert "no challenger" in result.summary()


def test_mcnemar_and_sample_size_reference_values():
    # Exact: 1 of 10 discordant pairs, two-sided p = 2 * 11 / 1024.
    assert compare.mcnemar(1, 9)["p_value"] == pytest.approx(22 / 1024)
    # Chi-square with continuity correction: (|150 - 100| - 1)^2 / 250 = 9.604, p = 0.00194.
    test = compare.mcnemar(150, 100)
    assert test["statistic"] == pytest.approx(9.604) and test["p_value"] == pytest.approx(
        0.00194, abs=1e-5
    )
    # Connor (1987) by hand: (1.96 * sqrt(0.1) + 0.8416 * sqrt(0.1 - 0.05^2))^2 / 0.05^2 = 311.6.
    assert compare.mcnemar_sample_size(0.1, 0.05, 0.95) == pytest.approx(311.6, abs=0.2)
