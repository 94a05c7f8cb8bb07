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
# Word characters: ASCII letters, digits and underscore; every non-ASCII code point counts as a
# letter (accented and non-Latin words stay words).
_ASCII_WORD = np.zeros(128, dtype=bool)
for _ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _ASCII_WORD[ord(_ch)] = True

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


def _bucket(hashes: np.ndarray, bits: int, salt: int) -> np.ndarray:
    """Mix a 64-bit hash and keep its top ``bits`` bits as a column index."""
    h = (hashes + np.uint64(salt)) * _MIX
    h ^= h >> _SHIFT
    h *= _MIX
    return (h >> np.uint64(64 - bits)).astype(np.intp)


def _code_points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Texts joined by one separator position: code points, prefix hashes, boundaries, gaps.

    ``prefix[j] = sum(points[k] * P**k for k < j)``, so the hash of ``points[i:j]``,
    normalised to start at power 0, is ``(prefix[j] - prefix[i]) * P**-i``.
    ``boundaries[j]`` counts separator positions in ``points[:j]``: the document of position i,
    and a window ``[i, j)`` lies inside one document when ``boundaries[j] == boundaries[i]``.
    ``gaps`` marks the separator positions. Both come from the texts' lengths, never from their
    content: a text may hold any code point, NUL included, without moving a boundary.
    """
    joined = "\x00".join(texts).encode("utf-32-le", errors="surrogatepass")
    points = np.frombuffer(joined, dtype=np.uint32)
    powers, _ = _powers(len(points) + 1)
    prefix = np.zeros(len(points) + 1, np.uint64)
    np.cumsum(points * powers[: len(points)], out=prefix[1:])
    gaps = np.zeros(len(points), dtype=bool)
    if len(texts) > 1:
        # utf-32 gives one unit per code point, which is what len() counts (lone surrogates too).
        gaps[np.cumsum([len(t) + 1 for t in texts[:-1]]) - 1] = True
    boundaries = np.zeros(len(points) + 1, np.intp)
    np.cumsum(gaps, out=boundaries[1:])
    return points, prefix, boundaries, gaps


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
    blocks = _kind_blocks(texts, bits, char_ngrams, char_window, word_window)
    return np.concatenate([c for c, _ in blocks]), np.concatenate([d for _, d in blocks])


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
    blocks = _kind_blocks(texts, bits, char_ngrams, char_window, word_window)
    segments = [d + k * len(texts) for k, (_, d) in enumerate(blocks)]
    return np.concatenate([c for c, _ in blocks]), np.concatenate(segments)


def _kind_blocks(texts, bits, char_ngrams, char_window, word_window) -> list:
    """(columns, documents) per kind of n-gram, in ``ngram_kinds`` order, documents ascending."""
    blocks = []
    points, prefix, boundaries, _ = _code_points([t[:char_window] for t in texts])
    inverses = _powers(len(points) + 1)[1]
    for n in char_ngrams:
        m = max(len(points) - n + 1, 0)
        # Hash every window with slices (cheap), then keep those inside one document.
        hashes = (prefix[n:] - prefix[:m]) * inverses[:m]
        starts = np.flatnonzero(boundaries[n:] == boundaries[:m])
        blocks.append((_bucket(hashes[starts], bits, n), boundaries[starts]))

    points, prefix, boundaries, gaps = _code_points([t[:word_window] for t in texts])
    inverses = _powers(len(points) + 1)[1]
    is_word = np.where(points < 128, _ASCII_WORD[points & 127], True) & ~gaps
    edges = np.diff(is_word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    first, stop = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = stop - first >= 2
    first, stop = first[keep], stop[keep]
    doc = boundaries[first]
    hashes = (prefix[stop] - prefix[first]) * inverses[first]
    offset = 1 << bits
    blocks.append((_bucket(hashes, bits, _WORD_SALT) + offset, doc))
    same = doc[1:] == doc[:-1]
    bigrams = (hashes[:-1] * _BIGRAM + hashes[1:])[same]
    blocks.append((_bucket(bigrams, bits, _BIGRAM_SALT) + offset, doc[:-1][same]))
    return blocks
