"""Any text scores, and a row scores the same alone as in any batch (property tests).

Real records carry NUL characters, lone combining marks, zero-width and right-to-left
characters, emoji, one-character bodies and empty ones. The classes of bug these tests generate:
a character that collides with how documents are delimited inside a batch (which moved n-grams to
the wrong rows), a text with no n-gram at all (which crashed scoring), and a frame whose dtypes
depend on the batch size (one request versus many).
"""

import re
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sample_project import fit_bundle, minimal_body

from {{cookiecutter.package_name}}.features import hashing
from {{cookiecutter.package_name}}.features.hashing import ngram_occurrences
from {{cookiecutter.package_name}}.features.history import attach_history
from {{cookiecutter.package_name}}.features.store import EntityStore
from {{cookiecutter.package_name}}.features.text import TextScorer
from {{cookiecutter.package_name}}.serving.schema import FrameBuilder, record_model

# Characters real archives carry that break naive text code, mixed into arbitrary unicode.
AWKWARD = [
    "\x00", "\u0301", "\u200b", "\u200f", "\u202e", "\ufeff", "\ud83d", "👍", "🇫🇷", "\r\n",
    "\t", " ", "é", "ß", "İ", "ﬁ", "\U0010ffff", "\x7f",
]  # fmt: skip
hostile_text = st.one_of(
    st.text(max_size=3),
    st.lists(st.sampled_from(AWKWARD), max_size=12).map("".join),
    st.lists(st.one_of(st.sampled_from(AWKWARD), st.text(max_size=8)), max_size=8).map("".join),
)
# Surrogates cannot come through JSON into the API (pydantic refuses them), so the request
# tests draw text without them; the feature tests take every code point.
request_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

NEGATIVE_TEXTS = ["meeting notes attached", "lunch on friday?", "the report draft is ready"]
POSITIVE_TEXTS = [
    "free cash prize, click here",
    "you are a winner!!! verify your account",
    "act now",
]


def _occurrences(texts):
    return ngram_occurrences(
        texts, bits=12, char_ngrams=(3, 4, 5), char_window=256, word_window=3000
    )


@FAST
@given(st.lists(hostile_text, min_size=1, max_size=8))
def test_each_text_hashes_the_same_alone_as_in_a_batch(texts):
    columns, documents = _occurrences(texts)
    assert len(columns) == len(documents)
    for k, text in enumerate(texts):
        alone, _ = _occurrences([text])
        np.testing.assert_array_equal(np.sort(columns[documents == k]), np.sort(alone))


def test_a_nul_inside_a_text_does_not_move_its_neighbours():
    texts = ["ab\x00cd efgh", "winner winner", "x"]
    columns, documents = _occurrences(texts)
    alone = [_occurrences([t])[0] for t in texts]
    for k in range(len(texts)):
        np.testing.assert_array_equal(np.sort(columns[documents == k]), np.sort(alone[k]))
    # The NUL is an ordinary character: the n-grams across it exist, as in training.
    assert len(alone[0]) > len(_occurrences(["ab"])[0]) + len(_occurrences(["cd efgh"])[0])


# The hashing spelled out one n-gram at a time, in plain integers: the oracle for the vectorised
# code, whose shortcuts (shared prefix hashes, the batch joined into one array, windows cut
# per text) must not change a single column.
_MASK = (1 << 64) - 1
_WORD_RUN = re.compile("[0-9A-Za-z_\u0080-\U0010ffff]{2,}")


def _polynomial(text: str) -> int:
    return sum(ord(c) * pow(int(hashing._P), k, 1 << 64) for k, c in enumerate(text)) & _MASK


def _column(value: int, bits: int, salt: int, offset: int = 0) -> int:
    mix = int(hashing._MIX)
    h = ((value + salt) * mix) & _MASK
    h ^= h >> int(hashing._SHIFT)
    return (((h * mix) & _MASK) >> (64 - bits)) + offset


def _reference_kinds(text, bits, char_ngrams, char_window, word_window) -> list[list[int]]:
    """The text's columns per kind of n-gram (``hashing.ngram_kinds`` order), sorted."""
    head = text[:char_window]
    kinds = [
        [_column(_polynomial(head[i : i + n]), bits, n) for i in range(len(head) - n + 1)]
        for n in char_ngrams
    ]
    words = [_polynomial(w) for w in _WORD_RUN.findall(text[:word_window])]
    offset = 1 << bits
    kinds.append([_column(w, bits, hashing._WORD_SALT, offset) for w in words])
    bigram = int(hashing._BIGRAM)
    kinds.append(
        [
            _column((a * bigram + b) & _MASK, bits, hashing._BIGRAM_SALT, offset)
            for a, b in pairwise(words)
        ]
    )
    return [sorted(kind) for kind in kinds]


# Lengths drawn evenly up to past the small windows, so texts are cut (or not) in every spot.
_window_text = (
    st.integers(0, 16)
    .flatmap(lambda n: st.lists(st.sampled_from([*AWKWARD, *"abZ1_- "]), min_size=n, max_size=n))
    .map("".join)
)


@pytest.mark.parametrize("one_pass", [True, False], ids=["kinds-together", "kind-by-kind"])
@FAST
@given(
    texts=st.lists(_window_text, max_size=6),
    windows=st.sampled_from([(6, 11), (11, 6), (3, 3), (256, 3000)]),
)
def test_batch_hashing_equals_the_reference_one_ngram_at_a_time(
    texts, windows, one_pass, monkeypatch
):
    monkeypatch.setattr(hashing, "_ONE_PASS", hashing._ONE_PASS if one_pass else 0)
    char_window, word_window = windows
    options = dict(bits=10, char_ngrams=(3, 4, 5), char_window=char_window, word_window=word_window)
    expected = [_reference_kinds(text, 10, (3, 4, 5), char_window, word_window) for text in texts]
    columns, documents = ngram_occurrences(texts, **options)
    assert len(columns) == len(documents) == sum(len(c) for kinds in expected for c in kinds)
    for k, kinds in enumerate(expected):
        assert sorted(columns[documents == k].tolist()) == sorted(sum(kinds, []))
    # Segments (kind * texts + document) come sorted: the text score sums each one in place.
    columns, segments = hashing.ngram_segments(texts, **options)
    assert (np.diff(segments) >= 0).all()
    for k, kinds in enumerate(expected):
        for kind, want in enumerate(kinds):
            assert sorted(columns[segments == kind * len(texts) + k].tolist()) == want


@pytest.fixture(scope="module")
def scorer():
    body = NEGATIVE_TEXTS * 40 + POSITIVE_TEXTS * 40
    frame = pd.DataFrame({"subject": [""] * len(body), "body": body})
    labels = np.array([0] * 120 + [1] * 120)
    return TextScorer(bits=12, folds=2).fit(frame, labels)


@pytest.mark.parametrize("body", ["k", "?", "👍", " ", "\u200b", "", "\x00", "ok"])
def test_a_text_without_ngrams_scores_the_prior(scorer, body):
    score = scorer.transform(pd.DataFrame({"subject": [None], "body": [body]}))
    assert score.shape == (1, 1) and 0 < score[0, 0] < 1
    only_tiny = pd.DataFrame({"subject": ["", "?"], "body": [body, "\u200b"]})
    assert np.isfinite(scorer.transform(only_tiny)).all()


def test_a_scorer_pickled_before_the_pair_table_scores_the_same(scorer):
    # Scorers pickled before the pair table held its two columns as separate arrays.
    state = dict(scorer.__getstate__())
    table = state.pop("score_table_")
    state["weighted_idf_"], state["idf_squared_"] = table[:, 0].copy(), table[:, 1].copy()
    old = object.__new__(TextScorer)
    old.__setstate__(state)
    frame = pd.DataFrame({"subject": ["", "re: lunch"], "body": POSITIVE_TEXTS[:2]})
    np.testing.assert_array_equal(old.transform(frame), scorer.transform(frame))


@FAST
@given(st.lists(st.tuples(hostile_text, hostile_text), min_size=1, max_size=10))
def test_text_scores_of_a_batch_equal_scores_alone(scorer, pairs):
    # Object dtype: pandas' string dtype cannot hold a lone surrogate, the scorer can.
    frame = pd.DataFrame(pairs, columns=["subject", "body"], dtype=object)
    batch = scorer.transform(frame)
    assert batch.shape == (len(pairs), 1)
    assert np.isfinite(batch).all() and ((batch > 0) & (batch < 1)).all()
    singles = np.vstack([scorer.transform(frame.iloc[[i]]) for i in range(len(pairs))])
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-12)


# --- the request path: validated items -> frame -> store -> features -> score ---------------


@pytest.fixture(scope="module")
def served(cfg, tmp_path_factory):
    """A small fitted bundle and an entity store that has seen its training items."""
    from {{cookiecutter.package_name}}.data.synthetic import generate

    items = generate(cfg, 400, 3, days=7)
    bundle = fit_bundle(cfg, attach_history(cfg, items), trees=10, depth=3)
    store = EntityStore(f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}")
    timestamp = cfg.data.column("timestamp").name
    store.materialize(cfg, items, as_of=items[timestamp].max() + pd.Timedelta(seconds=1))
    known = items[cfg.data.column("entity_key").name].unique().tolist()
    yield bundle, store, known
    store.close()


def _requests(cfg):
    """Strategy: request bodies whose every free-text field is hostile text."""
    model = record_model(cfg)
    texts = {
        c.name
        for c in cfg.data.columns
        if c.dtype == "string" and not c.allowed and c.name in model.model_fields
    }
    entity = cfg.data.column("entity_key").name

    required = {c.name for c in cfg.data.columns if not c.nullable}
    # A required field must hold a visible character (blank is a 4xx, tested elsewhere): with
    # several such fields, blank draws would otherwise refuse most bodies.
    visible = request_text.map(lambda text: text if text.strip() else f"x{text}")

    @st.composite
    def draw(draw_, known):
        body = {name: draw_(visible if name in required else request_text) for name in texts}
        body = {**minimal_body(cfg), **body}  # the required numbers and categories
        body[entity] = draw_(st.one_of(st.sampled_from(known), request_text))
        try:
            return model.model_validate(body)
        except ValueError:
            return None  # refused at validation: a 4xx, the API tests' business

    return draw


@FAST
@given(data=st.data())
def test_a_request_scores_the_same_alone_as_in_any_batch(cfg, served, data):
    bundle, store, known = served
    items = data.draw(st.lists(_requests(cfg)(known), min_size=5, max_size=12))
    items = [e for e in items if e is not None]
    assume(len(items) >= 5)  # past the small-frame size: the batch takes the typed path
    frames = FrameBuilder(cfg)
    now = pd.Timestamp("2030-01-01", tz="UTC").to_pydatetime()

    def features(batch):
        return bundle.transform(store.lookup(cfg, frames.frame(batch, now), record=False))

    def served(batch):  # the server's path: the rows as a RecordTable, no pandas
        return bundle.transform(store.lookup(cfg, frames.table(batch, now), record=False))

    together = features(items)
    alone = np.vstack([features([e]) for e in items])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(np.vstack([served([e]) for e in items]), alone)
    np.testing.assert_allclose(served(items), together, rtol=1e-6, atol=1e-6, equal_nan=True)
    scores = bundle.score_transformed(together)
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
