"""Text statistics of mail: what spam filters have always counted.

``TextStats`` counts suspicious phrases (matched after undoing l33t spelling, so "FR33" counts as
"free"), obfuscated words, shouting, exclamation marks and currency symbols. The style values are
per-row Python over C-level string methods; the phrases are searched in all rows of a call at
once (``_spelling_counts``), so a row gets the same values alone as in a batch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ...features.columns import Columns, as_columns
from ...features.text import joined_text, lowered_text

# Phrase -> literal spellings, counted in the lower-cased text after undoing l33t spelling.
# Literal ``bytes.find`` runs at C speed; a regex alternation here costs ~10x more per email.
SUSPICIOUS_PHRASES = {
    "free": ("free",),
    "winner": ("winner", "you won", "you have won"),
    "urgent": ("urgent", "immediately", "act now"),
    "verify_account": ("verify your account", "verify account", "confirm your account"),
    "click_here": ("click here", "click below", "click the link"),
    "limited_time": ("limited time", "expires today", "last chance"),
    "prize": ("prize", "lottery", "jackpot", "cash"),
    "credentials": ("password", "login", "log in", "sign in"),
    "unsubscribe": ("unsubscribe",),
}
# Digits and symbols that stand in for letters in obfuscated spam ("v1agra", "fr33", "$ave"),
# undone in the UTF-8 bytes of the lower-cased text: the spellings are ASCII, and in UTF-8 an
# ASCII byte is only ever that character, so a spelling matches the bytes where it matches the
# text (a bytes table translates ~10x faster than a str one).
_LEET = bytes.maketrans(b"013457$", b"oieasts")
# ASCII class map: letter -> "a", l33t stand-in -> "1", anything else -> " ". A letter next to
# a stand-in ("a1" / "1a" in the mapped bytes) marks an obfuscated word.
_CLASSES = bytes(
    ord("a") if b < 128 and chr(b).isalpha() else ord("1") if chr(b) in "013457$" else ord(" ")
    for b in range(256)
)
# Every spelling once, and the 0/1 matrix that sums spelling counts into phrase counts.
_SPELLINGS = tuple(spelling for group in SUSPICIOUS_PHRASES.values() for spelling in group)
_SPELLING_BYTES = tuple(s.encode("ascii") for s in _SPELLINGS)
_SPELLING_TO_PHRASE = np.array(
    [[float(s in group) for group in SUSPICIOUS_PHRASES.values()] for s in _SPELLINGS]
)
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LETTERS = _UPPER + b"abcdefghijklmnopqrstuvwxyz"
_CURRENCY = "$€£"
# Found spellings per row of a call before a spelling is counted row by row instead: the
# search steps from match to match in Python, so texts that repeat the phrases cost at most
# about 1.4x the row-by-row count, and a typical batch never reaches it.
_FINDS_PER_ROW = 1
_STYLE_VALUES = 5


class TextStats(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Length, uppercase share, exclamations, obfuscation, currency, suspicious phrases."""

    def __init__(self, text_columns: tuple[str, ...] = ("subject", "body")):
        self.text_columns = text_columns

    @property
    def consumes(self) -> tuple[str, ...]:
        """The contract columns this family reads."""
        return tuple(self.text_columns)

    def fit(self, df: pd.DataFrame, y=None, **_):
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [
            "text_length_log",
            "text_uppercase_ratio",
            "text_exclamations",
            "text_obfuscation_ratio",
            "text_currency_symbols",
            *(f"text_phrase_{name}" for name in SUSPICIOUS_PHRASES),
            "text_phrase_total",
        ]
        return np.array(names, dtype=object)

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        columns = tuple(self.text_columns)
        texts = joined_text(cols, columns)
        style = np.array([_style(t) for t in texts], dtype=np.float64)
        style = style.reshape(len(texts), _STYLE_VALUES)
        phrases = _spelling_counts(lowered_text(cols, columns)) @ _SPELLING_TO_PHRASE
        return np.hstack([style, phrases, phrases.sum(axis=1, keepdims=True)])


def _style(text: str) -> list[float]:
    """Length, uppercase share, exclamations, obfuscation, currency symbols."""
    raw = text.encode("ascii", "ignore")
    letters = len(raw) - len(raw.translate(None, _LETTERS))
    upper = len(raw) - len(raw.translate(None, _UPPER))
    classes = raw.translate(_CLASSES)
    obfuscated = classes.count(b"a1") + classes.count(b"1a")
    return [
        math.log1p(len(text)),
        upper / letters if letters else 0.0,
        text.count("!"),
        obfuscated / max(len(text.split()), 1),
        sum(map(text.count, _CURRENCY)),
    ]


def _spelling_counts(lowered: list[str]) -> np.ndarray:
    """Count of each spelling (``_SPELLINGS`` order) in each lower-cased text, as ``str.count``
    counts them (left to right, without overlaps), shape (rows, spellings).

    The rows are searched together, joined by NUL: no spelling holds a NUL, so no match spans
    two rows, and a NUL inside a text changes nothing. Most spellings occur in few rows of a
    call, which makes one search of the call cheaper than one count per row and spelling.
    """
    n = len(lowered)
    counts = np.zeros((n, len(_SPELLINGS)))
    rows = [t.encode("utf-8", "surrogatepass").translate(_LEET) for t in lowered]
    if n == 1:
        counts[0] = [rows[0].count(s) for s in _SPELLING_BYTES]
        return counts
    joined = b"\x00".join(rows)
    starts = np.cumsum([0, *(len(r) + 1 for r in rows[:-1])])
    cap = _FINDS_PER_ROW * n
    for j, spelling in enumerate(_SPELLING_BYTES):
        found, at, step = [], joined.find(spelling), len(spelling)
        while at >= 0 and len(found) < cap:
            found.append(at)
            at = joined.find(spelling, at + step)
        if at >= 0:  # a spelling that fills the text: one C-level count per row
            counts[:, j] = [r.count(spelling) for r in rows]
        elif found:
            row_of = np.searchsorted(starts, found, side="right") - 1
            counts[:, j] = np.bincount(row_of, minlength=n)
    return counts
