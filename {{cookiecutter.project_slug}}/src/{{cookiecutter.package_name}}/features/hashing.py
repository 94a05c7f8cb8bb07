"""Hashed word and character n-grams, vectorised with numpy.

scikit-learn's ``HashingVectorizer`` builds every n-gram as a Python string: about 600 texts/s
for character 3-5-grams on this machine class, far from the 10,000 records/s batch target. Here a
batch of texts becomes one array of code points; a polynomial prefix hash (arithmetic modulo
2**64, which numpy's unsigned integers do natively) gives the hash of any substring in O(1), so
all n-grams of all texts are hashed with a handful of array operations.

``ngram_occurrences`` returns one (column, document) pair per n-gram occurrence, duplicates
included: linear scores need no de-duplication (a repeated n-gram simply adds twice). Columns
``[0, 2**bits)`` are character n-grams, ``[2**bits, 2**(bits + 1))`` word unigrams and bigrams.
Hash values are fixed by the constants below and do not depend on the process (unlike Python's
``hash``), so a pickled model scores the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_P = np.uint64(0x100000001B3)  # odd, so invertible modulo 2**64
_P_INVERSE = np.uint64(pow(0x100000001B3, -1, 1 << 64))
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(29)
_BIGRAM = np.uint64(0x51ED27)
_WORD_SALT, _BIGRAM_SALT = 11, 13
# Up to this many n-grams in a call (a request or two), every kind is mixed in one pass; past it
# kind by kind, so each pass runs over arrays that stay in cache.
_ONE_PASS = 8192
# Word characters, indexed by min(code point, 128): ASCII letters, digits and underscore, and the
# last entry for every non-ASCII code point (accented and non-Latin words stay words).
_WORD = np.zeros(129, dtype=bool)
for _ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD[ord(_ch)] = True
_WORD[128] = True

_powers_cache: tuple[np.ndarray, np.ndarray] = (np.ones(1, np.uint64), np.ones(1, np.uint64))


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i modulo 2**64 for i < n (cached, grown by doubling)."""
    global _powers_cache
    powers, inverses = _powers_cache
    if len(powers) < n:
        size = max(n, 2 * len(powers))
        powers = np.empty(size, np.uint64)
        inverses = np.empty(size, np.uint64)
        powers[0] = inverses[0] = 1
        np.cumprod(np.full(size - 1, _P, dtype=np.uint64), out=powers[1:])
        np.cumprod(np.full(size - 1, _P_INVERSE, dtype=np.uint64), out=inverses[1:])
        _powers_cache = (powers, inverses)  # one assignment: safe for concurrent readers
    return powers[:n], inverses[:n]


def _bucket(hashes: np.ndarray, bits: int, salt: np.ndarray) -> np.ndarray:
    """Mix 64-bit hashes with their salts (uint64: one, or one per hash) and keep the top
    ``bits`` bits as a column index."""
    h = hashes + salt
    h *= _MIX
    h ^= h >> _SHIFT
    h *= _MIX
    h >>= np.uint64(64 - bits)
    return h.view(np.int64)  # below 2**63: the same numbers


def _code_points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texts joined by one separator position: code points, prefix hashes, boundaries.

    ``prefix[j] = sum(points[k] * P**k for k < j)``, so the hash of ``points[i:j]``,
    normalised to start at power 0, is ``(prefix[j] - prefix[i]) * P**-i``.
    ``boundaries[j]`` counts separator positions in ``points[:j]``: the document of position i,
    and a window ``[i, j)`` lies inside one document when ``boundaries[j] == boundaries[i]``.
    Boundaries come from the texts' lengths, never from their content: a text may hold any
    code point, NUL included, without moving a boundary.
    """
    joined = "\x00".join(texts).encode("utf-32-le", errors="surrogatepass")
    points = np.frombuffer(joined, dtype=np.uint32)
    powers, _ = _powers(len(points) + 1)
    prefix = np.zeros(len(points) + 1, np.uint64)
    np.cumsum(points * powers[: len(points)], out=prefix[1:])
    # utf-32 gives one unit per code point, which is what len() counts (lone surrogates too);
    # document k owns its characters and the separator after it.
    boundaries = np.repeat(np.arange(len(texts)), [len(t) + 1 for t in texts])
    return points, prefix, boundaries


def ngram_occurrences(
    texts: Sequence[str],
    *,
    bits: int,
    char_ngrams: tuple[int, ...],
    char_window: int,
    word_window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(column, document) of every n-gram occurrence in ``texts`` (already lower-cased).

    Character n-grams come from the first ``char_window`` characters of each text, word
    unigrams and bigrams (words of two or more word characters) from the first
    ``word_window``. Documents are numbered by their position in ``texts``.
    """
    columns, documents, _ = _hashed(texts, bits, char_ngrams, char_window, word_window)
    return columns, documents


def ngram_kinds(char_ngrams: tuple[int, ...]) -> int:
    """Kinds of n-gram: one per character n-gram length, word unigrams, word bigrams."""
    return len(char_ngrams) + 2


def ngram_segments(
    texts: Sequence[str],
    *,
    bits: int,
    char_ngrams: tuple[int, ...],
    char_window: int,
    word_window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``ngram_occurrences`` with (column, segment) pairs, ``segment = kind * len(texts) +
    document`` (kinds in ``ngram_kinds`` order): the pairs come sorted by segment, so the
    occurrences of one kind in one document are contiguous whatever the other texts."""
    columns, documents, counts = _hashed(texts, bits, char_ngrams, char_window, word_window)
    return columns, documents + np.repeat(np.arange(len(counts)) * len(texts), counts)


def _hashed(texts, bits, char_ngrams, char_window, word_window):
    """(columns, documents, occurrences per kind): kinds in ``ngram_kinds`` order, documents
    ascending within a kind."""
    if len(texts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), [0] * ngram_kinds(char_ngrams)
    words = [t[:word_window] for t in texts]
    points, prefix, boundaries = _code_points(words)
    if char_window <= word_window and all(len(t) <= char_window for t in words[:-1]):
        # Only the last text is cut by the character window: that join is a prefix of this one.
        size = len(prefix) - len(words[-1]) + min(len(words[-1]), char_window)
        char_prefix, char_boundaries = prefix[:size], boundaries[:size]
    else:
        _, char_prefix, char_boundaries = _code_points([t[:char_window] for t in texts])
    inverses = _powers(max(len(prefix), len(char_prefix)))[1]
    hashes, documents = [], []
    for n in char_ngrams:
        m = max(len(char_prefix) - n, 0)
        # Hash every window with slices (cheap), then keep those inside one document.
        window_hashes = (char_prefix[n:] - char_prefix[:m]) * inverses[:m]
        if len(texts) == 1:  # every window lies inside the one text
            hashes.append(window_hashes)
            documents.append(char_boundaries[:m])
        else:
            starts = np.flatnonzero(char_boundaries[n:] == char_boundaries[:m])
            hashes.append(window_hashes[starts])
            documents.append(char_boundaries[starts])

    # Words: runs of two or more word characters (the separator, code point 0, is none).
    is_word = np.zeros(len(points) + 2, np.int8)
    is_word[1:-1] = _WORD[np.minimum(points, 128)]
    edges = np.diff(is_word)
    first, stop = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = stop - first >= 2
    first, stop = first[keep], stop[keep]
    doc = boundaries[first]
    word_hashes = (prefix[stop] - prefix[first]) * inverses[first]
    hashes.append(word_hashes)
    documents.append(doc)
    same = doc[1:] == doc[:-1]
    hashes.append((word_hashes[:-1] * _BIGRAM + word_hashes[1:])[same])
    documents.append(doc[:-1][same])

    counts = [len(d) for d in documents]
    salts = np.array([*char_ngrams, _WORD_SALT, _BIGRAM_SALT], np.uint64)
    if sum(counts) <= _ONE_PASS:
        columns = _bucket(np.concatenate(hashes), bits, np.repeat(salts, counts))
    else:
        pairs = zip(hashes, salts, strict=True)
        columns = np.concatenate([_bucket(h, bits, salt) for h, salt in pairs])
    columns[sum(counts[: len(char_ngrams)]) :] += 1 << bits  # word n-grams: the upper half
    return columns, np.concatenate(documents), counts
