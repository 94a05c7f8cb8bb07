"""The server's drift window: the newest values of each feature, whatever way they arrive."""

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from {{cookiecutter.package_name}}.serving.metrics import SCORE_FEATURE, DriftWindow

NAMES = ["a", "b", "c"]
REFERENCE = {
    "features": {n: {"cuts": [0.5], "shares": [0.5, 0.5]} for n in NAMES},
    "score": {"cuts": [0.5], "shares": [0.5, 0.5]},
}
SIZE = 7

# A call: rows of all features at once, or the values of one name (some unknown to the window).
calls = st.one_of(
    st.integers(0, 2 * SIZE).map(lambda n: ("rows", n)),
    st.tuples(st.sampled_from([*NAMES, SCORE_FEATURE, "unknown"]), st.integers(0, 2 * SIZE)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(calls, max_size=12))
def test_the_window_holds_the_newest_values_of_each_feature(sequence):
    window = DriftWindow(REFERENCE, size=SIZE, min_rows=1)
    expected = {name: deque(maxlen=SIZE) for name in [*NAMES, SCORE_FEATURE]}
    counter = iter(range(1, 10**6))
    for kind, n in sequence:
        if kind == "rows":
            values = np.array(
                [[next(counter) for _ in NAMES] for _ in range(n)], dtype=float
            ).reshape(n, len(NAMES))
            window.observe_rows([*NAMES, "unknown"], np.hstack([values, np.zeros((n, 1))]))
            for j, name in enumerate(NAMES):
                expected[name].extend(values[:, j].tolist())
        else:
            values = [float(next(counter)) for _ in range(n)]
            window.observe(kind, values)
            if kind in expected:
                expected[kind].extend(values)
    for name, kept in expected.items():
        j = window._column[name]
        held = window._ring[: min(int(window._seen[j]), SIZE), j]
        assert sorted(held.tolist()) == sorted(kept), name


def test_drift_is_unknown_below_the_minimum_and_scored_above_it():
    window = DriftWindow(REFERENCE, size=100, min_rows=10)
    window.observe_rows(NAMES, np.full((9, 3), 0.1))
    assert all(np.isnan(v) for v in window.scores().values())
    window.observe_rows(NAMES, np.full((1, 3), 0.1))
    scores = window.scores()
    # Every value below the cut against a 50/50 reference: a large PSI, the same per feature.
    assert scores["a"] == scores["b"] == scores["c"] > 1
    assert np.isnan(scores[SCORE_FEATURE])
    window.observe(SCORE_FEATURE, [np.nan] * 20)  # missing values do not count
    assert np.isnan(window.scores()[SCORE_FEATURE])


def test_observed_rows_must_match_the_names():
    window = DriftWindow(REFERENCE, size=SIZE)
    with pytest.raises(IndexError):
        window.observe_rows(NAMES, np.zeros((2, 2)))
