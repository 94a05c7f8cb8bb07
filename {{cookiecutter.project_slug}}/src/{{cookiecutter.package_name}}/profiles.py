"""Reference profiles of the raw inputs (categories, text) and the per-row signals drift needs.

Evaluation builds the profiles from the validation split (:func:`input_profiles`) and stores
them in the bundle's reference; serving turns each request into a few small signals
(:class:`InputSignals`) that the prediction log keeps, so monitoring can compare a window of
traffic with the reference without storing raw text:

``cat.<column>``          the raw category value (str or None)
``text.<column>.unseen``  share of the row's distinct tokens missing from the reference
                          vocabulary (None when the row has no tokens)
``text.<column>.top``     sorted indexes into the reference ``top_tokens`` present in the row

Text is profiled on distinct tokens per row (document frequency), so an HTML body repeating
its markup weighs the same as a short plain one.

Some inputs churn by nature: campaigns arrive in bursts, so one category value's share (or
one token's) swings from day to day without anything having drifted. Profiles therefore
record ``churn_psi``: the largest PSI of a quarter of the reference rows (in time order)
against the whole, with ``chunk_rows`` rows per quarter. Monitoring counts only the PSI
beyond that churn (see ``monitoring.drift``).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .distributions import REFERENCE_BINS, bin_shares, distribution, psi
from .domain import pack_of
from .tables import RecordTable, cells

if TYPE_CHECKING:
    from .config import SystemConfig

# Words, numbers, amounts ("$50", "30%") and hyphenated or quoted forms; length 2 to 31.
_TOKEN = re.compile(r"[a-z0-9][a-z0-9'$%-]{1,30}")
# Unseen-share bins: reference quantiles weighted to the upper tail, where new vocabulary
# shows (a drifted campaign puts a minority of rows far above the usual unseen share).
UNSEEN_LEVELS = (0.5, 0.75, 0.9, 0.95, 0.99)
# Churn is measured over this many consecutive chunks of the reference rows.
CHURN_CHUNKS = 4


def tokenize(text: str | None) -> list[str]:
    """Lowercase word tokens of ``text`` (empty for None, NaN or a non-string)."""
    if not isinstance(text, str):
        return []
    return _TOKEN.findall(text.lower())


def _churn(whole: np.ndarray, parts: list[np.ndarray]) -> float:
    """Largest PSI of a part's share vector against the whole's (0 without parts)."""
    return max((psi(whole, part) for part in parts), default=0.0)


def category_profile(values: pd.Series, top: int = 50) -> dict:
    """Shares of the ``top`` most frequent values among non-null rows, the rest and the nulls.

    Returns ``{"shares": {value: share}, "other_share", "null_share", "distinct",
    "churn_psi", "chunk_rows"}``. Values are compared as strings (the log stores text);
    ``values`` should be in time order for the churn to mean day-to-day variation.
    """
    rows = len(values)
    present = values.dropna().astype(str)
    counts = present.value_counts()
    shares = (counts.iloc[:top] / max(len(present), 1)).to_dict()
    keys = list(shares)
    whole = np.array([*shares.values(), max(0.0, 1.0 - sum(shares.values()))])
    parts = []
    for chunk in np.array_split(present.to_numpy(dtype=object), CHURN_CHUNKS):
        if len(chunk):
            chunk_counts = pd.Series(chunk).value_counts()
            known = chunk_counts.reindex(keys, fill_value=0).to_numpy(dtype=float) / len(chunk)
            parts.append(np.append(known, max(0.0, 1.0 - known.sum())))
    return {
        "shares": {str(k): float(v) for k, v in shares.items()},
        "other_share": float(whole[-1]) if len(present) else 0.0,
        "null_share": float(1 - len(present) / rows) if rows else 0.0,
        "distinct": int(len(counts)),
        "churn_psi": _churn(whole, parts),
        "chunk_rows": len(present) // CHURN_CHUNKS,
    }


def unseen_distribution(unseen: np.ndarray) -> dict:
    """A bundle distribution of per-row unseen shares, binned for the upper tail.

    The cuts separate rows with no unseen token from the rest and then follow the
    reference quantiles ``UNSEEN_LEVELS`` of the positive shares' range, so a new campaign's
    rows stand out instead of hiding in a decile bin.
    """
    unseen = np.asarray(unseen, dtype=float)
    dist = distribution(unseen, REFERENCE_BINS)
    finite = unseen[np.isfinite(unseen)]
    if finite.size:
        tail = np.quantile(finite, UNSEEN_LEVELS)
        cuts = sorted({1e-9, *(float(c) for c in tail if c > 0)})
        dist["cuts"] = cuts
        dist["shares"] = [float(s) for s in bin_shares(unseen, cuts)]
    return dist


def text_profile(
    texts: pd.Series, *, vocabulary_size: int = 20000, top: int = 50, holdout: float = 0.2
) -> dict:
    """Vocabulary, most common tokens and unseen-token distribution of a text column.

    ``texts`` are in time order. The vocabulary (tokens in at least two rows, most frequent
    first, at most ``vocabulary_size``) comes from the first ``1 - holdout`` of the rows; the
    distribution of the per-row unseen share (``unseen``, see :func:`unseen_distribution`) is
    measured on the last ``holdout`` rows, which the vocabulary never saw: live traffic is
    new text too, so measuring on the fitting rows would make every window look drifted.
    ``top_tokens`` are the ``top`` tokens in most fitting rows; ``top_doc_share`` is the share
    of rows with tokens (all rows) that contain each; ``churn_psi`` the churn of their mix.
    """
    token_sets = [set(tokenize(t)) for t in texts.tolist()]
    fit_rows = len(token_sets) - int(round(len(token_sets) * holdout))
    if holdout > 0 and len(token_sets) >= 2:
        fit_rows = min(max(fit_rows, 1), len(token_sets) - 1)
    document_frequency: Counter[str] = Counter()
    for tokens in token_sets[:fit_rows]:
        document_frequency.update(tokens)
    ranked = sorted(document_frequency.items(), key=lambda kv: (-kv[1], kv[0]))
    vocabulary = [token for token, count in ranked[:vocabulary_size] if count >= 2]
    top_tokens = [token for token, _ in ranked[:top]]

    index = {token: i for i, token in enumerate(top_tokens)}
    with_tokens = [tokens for tokens in token_sets if tokens]
    chunks = [
        np.bincount(
            np.fromiter((index[t] for tokens in part for t in tokens & index.keys()), np.int64),
            minlength=len(top_tokens),
        )
        for part in np.array_split(np.array(with_tokens, dtype=object), CHURN_CHUNKS)
    ]
    contains = np.sum(chunks, axis=0)
    known = frozenset(vocabulary)
    unseen = [
        len(tokens - known) / len(tokens) if tokens else np.nan for tokens in token_sets[fit_rows:]
    ]
    mix = [c / c.sum() for c in chunks if c.sum()]
    whole = contains / max(contains.sum(), 1)
    return {
        "vocabulary": vocabulary,
        "top_tokens": top_tokens,
        "top_doc_share": [float(c) / max(len(with_tokens), 1) for c in contains],
        "rows": len(token_sets),
        "holdout_rows": len(token_sets) - fit_rows,
        "unseen": unseen_distribution(np.asarray(unseen, dtype=float)),
        "churn_psi": _churn(whole, mix),
        "chunk_rows": len(with_tokens) // CHURN_CHUNKS,
    }


def input_profiles(cfg: SystemConfig, frame: pd.DataFrame) -> dict:
    """Profiles of the contract's categorical and prose text columns present in ``frame``.

    ``frame`` holds raw canonical rows in time order (the validation split).
    """
    return {
        "categories": {
            c.name: category_profile(frame[c.name])
            for c in cfg.data.columns_with("categorical")
            if c.name in frame
        },
        # Structured text (a pack's lists, such as URLs) is not prose: its tokens are one-off.
        "text": {
            name: text_profile(frame[name])
            for name in pack_of(cfg).text_columns(cfg)
            if name in frame
        },
    }


class InputSignals:
    """Turns raw request rows into the per-row drift signals the prediction log keeps.

    Built once per loaded model from its ``reference``; :meth:`row_signals` runs on the request
    path, so it only tokenises and does set lookups.
    """

    def __init__(self, reference: dict):
        self.categories = [str(c) for c in (reference.get("categories") or {})]
        self.text: list[tuple[str, frozenset[str], dict[str, int]]] = []
        self._top: dict[str, frozenset[str]] = {}  # a set meets a set faster than dict keys
        for column, profile in (reference.get("text") or {}).items():
            vocabulary = frozenset(profile.get("vocabulary", []))
            index = {token: i for i, token in enumerate(profile.get("top_tokens", []))}
            self.text.append((str(column), vocabulary, index))
            self._top[str(column)] = frozenset(index)

    @property
    def columns(self) -> list[str]:
        """The raw columns the signals are read from."""
        return [*self.categories, *(column for column, _, _ in self.text)]

    @property
    def keys(self) -> list[str]:
        """The signal names every row gets, in order."""
        names = [f"cat.{c}" for c in self.categories]
        for column, _, _ in self.text:
            names += [f"text.{column}.unseen", f"text.{column}.top"]
        return names

    def row_signals(self, frame: pd.DataFrame | RecordTable) -> list[dict]:
        """One dict of signals per row of ``frame`` (a column missing from it gives None)."""
        rows: list[dict] = [{} for _ in range(len(frame))]
        for column in self.categories:
            key = f"cat.{column}"
            for row, value in zip(rows, _cells(frame, column), strict=True):
                row[key] = _category_value(value)
        for column, vocabulary, index in self.text:
            top = self._top[column]
            unseen_key, top_key = f"text.{column}.unseen", f"text.{column}.top"
            if column not in frame:
                for row in rows:
                    row[unseen_key] = row[top_key] = None
                continue
            for row, text in zip(rows, _cells(frame, column), strict=True):
                tokens = set(_TOKEN.findall(text.lower())) if isinstance(text, str) else set()
                if tokens:
                    row[unseen_key] = len(tokens - vocabulary) / len(tokens)
                    row[top_key] = sorted([index[t] for t in tokens & top])
                else:
                    row[unseen_key], row[top_key] = None, []
        return rows


def _cells(frame: pd.DataFrame | RecordTable, column: str) -> list:
    """The values of one column as Python objects, cheaply for the 1-row frames of requests."""
    if column not in frame:
        return [None] * len(frame)
    if isinstance(frame, RecordTable):
        return cells(frame, column)
    position = frame.columns.get_loc(column)
    if len(frame) <= 8 and isinstance(position, int):
        # frame.iat costs ~4 us a cell; frame[column].tolist() ~25 us whatever the length.
        return [frame.iat[i, position] for i in range(len(frame))]
    return frame[column].tolist()


def _category_value(value) -> str | None:
    # Missing values arrive as None, NaN or pd.NA depending on the frame's dtype.
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return str(value)
