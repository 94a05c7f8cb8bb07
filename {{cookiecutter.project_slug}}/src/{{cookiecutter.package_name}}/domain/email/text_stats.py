"""Text statistics of mail: what spam filters have always counted.

``TextStats`` counts suspicious phrases (matched after undoing l33t spelling, so "FR33" counts as
"free"), obfuscated words, shouting, exclamation marks and currency symbols. Per-row Python
over C-level string methods: the same code runs for a batch and for one request.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ...features.columns import Columns
from ...features.text import joined_text

# Phrase -> literal spellings, counted in the lower-cased text after undoing l33t spelling.
# Literal ``str.count`` runs at C speed; a regex alternation here costs ~10x more per email.
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
# Digits and symbols that stand in for letters in obfuscated spam ("v1agra", "fr33", "$ave").
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "$": "s"})
# ASCII class map: letter -> "a", l33t stand-in -> "1", anything else -> " ". A letter next to
# a stand-in ("a1" / "1a" in the mapped bytes) marks an obfuscated word.
_CLASSES = bytes(
    ord("a") if b < 128 and chr(b).isalpha() else ord("1") if chr(b) in "013457$" else ord(" ")
    for b in range(256)
)
# Every spelling once, and the 0/1 matrix that sums spelling counts into phrase counts.
_SPELLINGS = tuple(spelling for group in SUSPICIOUS_PHRASES.values() for spelling in group)
_SPELLING_TO_PHRASE = np.array(
    [[float(s in group) for group in SUSPICIOUS_PHRASES.values()] for s in _SPELLINGS]
)
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LETTERS = _UPPER + b"abcdefghijklmnopqrstuvwxyz"
_CURRENCY = "$€£"


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
        texts = joined_text(df, tuple(self.text_columns))
        stats = np.array([_text_stats(t) for t in texts], dtype=np.float64)
        stats = stats.reshape(len(texts), 5 + len(_SPELLINGS))
        phrases = stats[:, 5:] @ _SPELLING_TO_PHRASE  # spelling counts -> phrase counts
        return np.hstack([stats[:, :5], phrases, phrases.sum(axis=1, keepdims=True)])


def _text_stats(text: str) -> list[float]:
    """Five style values, then the count of each phrase spelling (``_SPELLINGS`` order)."""
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
        *map(text.lower().translate(_LEET).count, _SPELLINGS),
    ]
