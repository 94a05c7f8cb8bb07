"""The text role's family: an out-of-fold TF-IDF + logistic regression score.

``TextScorer`` turns the record's text columns into one number, the positive-class probability
of a logistic regression on hashed TF-IDF word 1-2-grams and character 3-5-grams (see
``hashing.py``). The TF-IDF vector of a document is ``tf * idf`` divided by ``sqrt(sum over
its n-gram occurrences of idf**2)`` (the L2 norm when no n-gram repeats): that normalisation
needs no sort, so scoring is one gather per n-gram and one sum per document. ``fit_transform``
returns out-of-fold scores (a row is scored by a model that never saw its label);
``transform`` uses the model fitted on all training rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .columns import Columns, as_columns
from .hashing import ngram_kinds, ngram_occurrences, ngram_segments

CHAR_NGRAMS = (3, 4, 5)
# Characters of the joined text that feed character n-grams / word n-grams. Hooks and
# obfuscation sit at the start; the bounds keep scoring cost and training memory per record flat.
CHAR_WINDOW = 256
WORD_WINDOW = 3000
HASH_BITS = 17
CHUNK_ROWS = 256  # texts hashed together: arrays stay in cache
IDF_SAMPLE = 5000  # documents that estimate the idf (exact counting needs a sort per document)


def joined_text(data: pd.DataFrame | Columns, columns: tuple[str, ...]) -> list[str]:
    """The text columns of each row joined by newlines (e.g. subject and body)."""
    cols = as_columns(data)

    def join() -> list[str]:
        parts = [cols.strings(c) for c in columns]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return [""] * len(cols)
        return ["\n".join(row) for row in zip(*parts, strict=True)]

    return cols.memo(("joined", columns), join)


def lowered_text(data: pd.DataFrame | Columns, columns: tuple[str, ...]) -> list[str]:
    """``joined_text`` lower-cased, computed once for every family that reads it."""
    cols = as_columns(data)
    return cols.memo(("lower", columns), lambda: [t.lower() for t in joined_text(cols, columns)])


def time_folds(n: int, k: int, order: np.ndarray | None = None) -> np.ndarray:
    """Fold id per row: ``k`` contiguous blocks of rows in ``order`` (time order)."""
    k = max(1, min(k, n))
    rank = np.empty(n, dtype=np.int64)
    rank[np.arange(n) if order is None else order] = np.arange(n)
    return (rank * k) // max(n, 1)


def _document_sums(segments: np.ndarray, weights: np.ndarray, n: int, kinds: int) -> np.ndarray:
    """Per-document float64 sums of each column of ``weights`` (occurrences x k), shape (n, k),
    over ``hashing.ngram_segments``' sorted segments.

    Each (kind, document) segment is summed on its own (``reduceat``, many times faster than a
    ``bincount`` over unsorted documents), then a document's kinds are added in kind order:
    its sum depends on its own n-grams only, never on the other texts of the call.
    """
    bounds = np.searchsorted(segments, np.arange(kinds * n + 1))
    filled = bounds[1:] > bounds[:-1]  # reduceat would give an empty segment a value
    per_segment = np.zeros((kinds * n, weights.shape[1]))
    if len(segments):
        per_segment[filled] = np.add.reduceat(weights, bounds[:-1][filled], dtype=np.float64)
    total = per_segment[:n]
    for kind in range(1, kinds):
        total += per_segment[kind * n : (kind + 1) * n]
    return total


def _expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class TextScorer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Positive-class probability from hashed TF-IDF n-grams and a logistic regression (one column).

    The logistic regression is fitted by stochastic gradient descent (``SGDClassifier`` with
    log loss): on 2**18 hashed columns L-BFGS spent ~20x longer per fit for the same ROC-AUC,
    and the scorer is fitted once per fold. At most ``max_fit_rows`` rows (a seeded sample)
    train the models, which bounds memory; every row still gets a score.
    """

    def __init__(
        self,
        text_columns: tuple[str, ...] = ("subject", "body"),
        *,
        bits: int = HASH_BITS,
        char_window: int = CHAR_WINDOW,
        word_window: int = WORD_WINDOW,
        folds: int = 5,
        max_fit_rows: int = 30_000,
        alpha: float = 2e-5,
        epochs: int = 8,
        seed: int = 0,
    ):
        self.text_columns = text_columns
        self.bits = bits
        self.char_window = char_window
        self.word_window = word_window
        self.folds = folds
        self.max_fit_rows = max_fit_rows
        self.alpha = alpha
        self.epochs = epochs
        self.seed = seed

    # The score is label-derived: training rows get it out of fold (``fit_transform``).
    out_of_fold = True

    def __setstate__(self, state):
        # Scorers pickled before the pair table kept its two columns apart.
        if "score_table_" not in state and "weighted_idf_" in state:
            state = dict(state)
            idf = state["idf_"]
            squared = state.pop("idf_squared_", None)
            state["score_table_"] = np.column_stack(
                [state.pop("weighted_idf_"), idf * idf if squared is None else squared]
            )
        super().__setstate__(state)

    @property
    def consumes(self) -> tuple[str, ...]:
        """The contract columns this family reads."""
        return tuple(self.text_columns)

    # -- hashing -------------------------------------------------------------------------------

    def _texts(self, df: pd.DataFrame | Columns) -> list[str]:
        return lowered_text(df, tuple(self.text_columns))

    def _hashing(self) -> dict:
        return {
            "bits": self.bits,
            "char_ngrams": CHAR_NGRAMS,
            "char_window": self.char_window,
            "word_window": self.word_window,
        }

    def _chunks(self, texts: list[str], hashed=ngram_occurrences):
        """(start, texts, columns, documents) per chunk of texts, hashed by ``hashed``
        (``ngram_segments``: segments in place of documents)."""
        for start in range(0, len(texts), CHUNK_ROWS):
            chunk = texts[start : start + CHUNK_ROWS]
            yield start, chunk, *hashed(chunk, **self._hashing())

    def _fit_idf(self, texts: list[str], rng: np.random.Generator) -> None:
        """Smoothed idf, ``ln((1 + n) / (1 + df)) + 1``, from up to ``IDF_SAMPLE`` documents."""
        if len(texts) > IDF_SAMPLE:
            texts = [texts[i] for i in rng.choice(len(texts), IDF_SAMPLE, replace=False)]
        width = 2 << self.bits
        frequency = np.zeros(width, dtype=np.int64)
        for _, _, cols, docs in self._chunks(texts):
            # Distinct (document, column) pairs; a plain sort beats np.unique's hash table here.
            keys = np.sort(docs * width + cols)
            distinct = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
            frequency += np.bincount(distinct % width, minlength=width)
        self.idf_ = (np.log((1 + len(texts)) / (1 + frequency)) + 1).astype(np.float32)

    def _design(self, texts: list[str]):
        """Normalised TF-IDF rows as a CSR matrix with one entry per n-gram occurrence.

        Repeated n-grams stay separate entries: linear models sum them, which equals their
        count, and skipping the de-duplication sort halves the build time.
        """
        import scipy.sparse as sp

        idf = self.idf_.astype(np.float64)
        data, indices, lengths = [], [], []
        for _, chunk, cols, docs in self._chunks(texts):
            order = np.argsort(docs.astype(np.uint16), kind="stable")  # radix sort
            cols, docs = cols[order], docs[order]
            weights = idf[cols]
            norms = np.sqrt(np.bincount(docs, weights=weights * weights, minlength=len(chunk)))
            data.append((weights / norms[docs]).astype(np.float32))
            indices.append(cols.astype(np.int32))
            lengths.append(np.bincount(docs, minlength=len(chunk)))
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(lengths))])
        return sp.csr_matrix(
            (np.concatenate(data), np.concatenate(indices), indptr.astype(np.int64)),
            shape=(len(texts), 2 << self.bits),
        )

    def _fit_linear(self, x, y: np.ndarray) -> tuple[np.ndarray, float]:
        """(weights, intercept); a constant model when only one class is present."""
        from sklearn.linear_model import SGDClassifier

        if len(y) == 0 or y.min() == y.max():
            rate = float(np.clip(y.mean() if len(y) else 0.5, 1e-3, 1 - 1e-3))
            return np.zeros(x.shape[1]), math.log(rate / (1 - rate))
        model = SGDClassifier(
            loss="log_loss",
            alpha=self.alpha,
            max_iter=self.epochs,
            tol=None,
            random_state=self.seed,
        )
        model.fit(x, y)
        return model.coef_.ravel().astype(np.float64), float(model.intercept_[0])

    def _linear_scores(self, texts: list[str], weights: np.ndarray, intercept: float):
        """Probabilities under a linear model on the normalised TF-IDF, hashing in chunks."""
        return self._scores(texts, self._score_table(weights), intercept)

    def _score_table(self, weights: np.ndarray) -> np.ndarray:
        """Per column: the linear weight times the idf, and the idf squared (float32 pairs, so
        one gather fetches both)."""
        return np.column_stack([(self.idf_ * weights).astype(np.float32), self.idf_ * self.idf_])

    def _scores(self, texts: list[str], table: np.ndarray, intercept: float) -> np.ndarray:
        out = np.empty(len(texts))
        kinds = ngram_kinds(CHAR_NGRAMS)
        for start, chunk, cols, segments in self._chunks(texts, ngram_segments):
            # take() gathers rows several times faster than fancy indexing.
            pairs = table.take(cols, axis=0)
            dot, norm = _document_sums(segments, pairs, len(chunk), kinds).T
            norm = np.sqrt(norm)
            # A text without a single n-gram ("?", "k", an emoji) scores the intercept alone.
            dot = np.divide(dot, norm, out=np.zeros_like(dot), where=norm > 0)
            out[start : start + len(chunk)] = _expit(dot + intercept)
        return out

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, df: pd.DataFrame, y, **_):
        """Fit idf and the logistic regression on (at most ``max_fit_rows``) training rows."""
        self._fit(df, y, folds=None)
        return self

    def fit_transform(self, df: pd.DataFrame, y=None, folds: np.ndarray | None = None, **_):
        """Fit on all rows; return out-of-fold scores (contiguous ``folds``, row order if None)."""
        if y is None:
            raise ValueError("TextScorer needs labels y to fit")
        if folds is None:
            folds = time_folds(len(df), self.folds)
        return self._fit(df, y, folds=np.asarray(folds)).reshape(-1, 1)

    def _fit(self, df: pd.DataFrame, y, folds: np.ndarray | None) -> np.ndarray | None:
        texts = self._texts(df)
        y = np.asarray(y).astype(np.int8)
        n = len(texts)
        rng = np.random.default_rng(self.seed)
        self._fit_idf(texts, rng)
        # Training memory is bounded: the models see a sample, every row gets a score.
        if n > self.max_fit_rows:
            sample = np.sort(rng.choice(n, self.max_fit_rows, replace=False))
        else:
            sample = np.arange(n)
        x = self._design([texts[i] for i in sample])
        weights, intercept = self._fit_linear(x, y[sample])
        self.score_table_ = self._score_table(weights)
        self.intercept_ = intercept
        if folds is None:
            return None

        oof = np.empty(n)
        in_sample = np.zeros(n, dtype=bool)
        in_sample[sample] = True
        for k in np.unique(folds):
            held_out = folds[sample] == k
            w_k, b_k = self._fit_linear(x[~held_out], y[sample][~held_out])
            oof[sample[held_out]] = _expit(x[held_out] @ w_k + b_k)
            rest = np.flatnonzero((folds == k) & ~in_sample)
            if len(rest):
                oof[rest] = self._linear_scores([texts[i] for i in rest], w_k, b_k)
        return oof

    # -- scoring -------------------------------------------------------------------------------

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Positive-class probability of each row's text, shape (n, 1)."""
        return self._scores(self._texts(df), self.score_table_, self.intercept_).reshape(-1, 1)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array(["text_model_score"], dtype=object)
