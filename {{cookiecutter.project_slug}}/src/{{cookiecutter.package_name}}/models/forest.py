"""A binary XGBoost forest as numpy arrays, for scoring the few rows of a request.

``Booster.inplace_predict`` has a fixed cost per call (its arguments travel as JSON through
ctypes) whatever the rows, more than the trees of one request cost. Here every tree is flattened into
arrays and walked one level at a time for all rows and trees together. The margin is summed in
float32 in XGBoost's order (the base margin, then each tree in turn) and the sigmoid is
XGBoost's, so the probabilities are XGBoost's own, bit for bit on the versions pinned here.

:func:`compile_forest` returns None for what it does not cover (categorical splits, several
trees per round, other boosters, objectives or missing-value markers, a system without C's
``expf``), and for any model whose compiled scores differ from the booster's on probe rows built
from its own split points: the caller then keeps the booster.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Largest gap between the compiled forest and the booster, on probe rows, that still counts as
# the same score: none (another XGBoost version may round its margin differently).
TOLERANCE = 0.0
PROBE_ROWS = 512


class CompiledForest:
    """The trees of one model as flat arrays; a leaf points to itself."""

    def __init__(
        self,
        feature: np.ndarray,
        threshold: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        default_left: np.ndarray,
        value: np.ndarray,
        roots: np.ndarray,
        depth: int,
        base_margin: np.float32,
        features: int,
    ):
        self.feature, self.threshold = feature, threshold
        self.left, self.right, self.default_left = left, right, default_left
        self.value, self.roots, self.depth = value, roots, depth
        self.base_margin, self.features = base_margin, features

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Raw float32 margins of the rows of ``x`` (n, features), float32 with NaN missing."""
        n = len(x)
        node = np.broadcast_to(self.roots, (n, len(self.roots)))
        rows = np.arange(n)[:, None]
        for _ in range(self.depth):
            v = x[rows, self.feature[node]]
            # XGBoost: a value below the split goes left; a missing one takes the default side.
            go_left = np.where(np.isnan(v), self.default_left[node], v < self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        terms = np.empty((n, len(self.roots) + 1), dtype=np.float32)
        terms[:, 0] = self.base_margin
        terms[:, 1:] = self.value[node]
        return np.cumsum(terms, axis=1, dtype=np.float32)[:, -1]  # sequential, in tree order

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Positive-class probabilities (float32), as XGBoost's sigmoid computes them."""
        z = np.minimum(-self.margin(x), np.float32(88.7))
        return (np.float32(1.0) / (_expf(z) + np.float32(1.0))).astype(np.float32)


@functools.cache
def _libm_expf():
    """C's ``expf``, or None. Looked up when a forest is first compiled, not at import: finding
    the library runs ``ldconfig``, and every stage imports this module through the bundle."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("m")
    if name is None:
        return None
    try:
        expf = ctypes.CDLL(name).expf
    except (OSError, AttributeError):
        return None
    expf.restype, expf.argtypes = ctypes.c_float, [ctypes.c_float]
    return expf


# glibc's expf sums in double to within about 2**-34 of the value, then rounds to float32.
_EXPF_DOUBT = 2.0**-32
# Values up to which calling expf once each costs less than the vectorised check below.
_EXPF_CALLS = 8


def _expf(z: np.ndarray) -> np.ndarray:
    """C's ``expf`` (what XGBoost calls) of float32 values. A few values are each passed to
    expf; more are vectorised: numpy's double exp rounded once to float32 agrees with expf but
    within ``_EXPF_DOUBT`` of a rounding midpoint, where expf's own less exact double decides
    the side; those few values are computed by expf itself."""
    if len(z) <= _EXPF_CALLS:
        expf = _libm_expf()
        return np.array([expf(v) for v in z.tolist()], dtype=np.float32)
    wide = np.exp(z.astype(np.float64))
    out = wide.astype(np.float32)
    near = np.zeros(len(out), dtype=bool)
    for neighbour in (np.float32(-np.inf), np.float32(np.inf)):
        midpoint = (out.astype(np.float64) + np.nextafter(out, neighbour)) / 2
        near |= np.abs(wide - midpoint) <= wide * _EXPF_DOUBT
    for i in np.flatnonzero(near):
        out[i] = _libm_expf()(float(z[i]))
    return out


def compile_forest(booster: Any, iteration_range: tuple[int, int], missing: Any):
    """A :class:`CompiledForest` of ``booster``'s trees in ``iteration_range`` ((0, 0): all), or
    None when the model is outside what it covers or its scores differ from the booster's."""
    if _libm_expf() is None or not (isinstance(missing, float) and np.isnan(missing)):
        return None
    try:
        model = json.loads(bytes(booster.save_raw("json")))
        forest = _from_json(model["learner"], iteration_range)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        logger.debug("the forest is not compiled: %s", exc)
        return None
    if forest is None:
        return None
    probe = _probe_rows(forest)
    expected = booster.inplace_predict(
        probe, iteration_range=iteration_range, missing=missing, validate_features=False
    )
    gap = float(np.max(np.abs(forest.predict(probe) - expected), initial=0.0))
    if not gap <= TOLERANCE:
        logger.warning("the compiled forest differs from the booster by %.3g: not used", gap)
        return None
    return forest


def _from_json(learner: dict, iteration_range: tuple[int, int]) -> CompiledForest | None:
    if learner["objective"]["name"] != "binary:logistic":
        return None
    booster = learner["gradient_booster"]
    if booster["name"] != "gbtree":
        return None
    model = booster["model"]
    if int(model["gbtree_model_param"]["num_parallel_tree"]) != 1:
        return None
    params = learner["learner_model_param"]
    if int(params.get("num_target", "1")) != 1 or int(params.get("num_class", "0")) > 1:
        return None
    base_score = np.float32(float(str(params["base_score"]).strip("[]")))
    if not 0 < base_score < 1:
        return None
    # XGBoost's margin of the base score: 1 / p - 1 in float32, its log in double.
    base_margin = np.float32(-np.log(np.float64(np.float32(1) / base_score - np.float32(1))))
    trees = model["trees"]
    begin, end = iteration_range
    trees = trees[begin : end if end > 0 else len(trees)]
    if not trees:
        return None
    feature, threshold, left, right, default_left, value, roots = [], [], [], [], [], [], []
    depth, offset = 0, 0
    for tree in trees:
        if any(tree.get("split_type") or []) or tree.get("categories_nodes"):
            return None  # categorical splits
        lefts = np.asarray(tree["left_children"], dtype=np.int64)
        rights = np.asarray(tree["right_children"], dtype=np.int64)
        leaf = lefts == -1
        here = np.arange(len(lefts))
        conditions = np.asarray(tree["split_conditions"], dtype=np.float32)
        feature.append(np.where(leaf, 0, np.asarray(tree["split_indices"], dtype=np.int64)))
        threshold.append(np.where(leaf, np.float32(0), conditions))
        left.append(np.where(leaf, here, lefts) + offset)
        right.append(np.where(leaf, here, rights) + offset)
        default_left.append(np.asarray(tree["default_left"], dtype=bool))
        value.append(np.where(leaf, conditions, np.float32(0)))  # a leaf's value is its condition
        roots.append(offset)
        depth = max(depth, _depth(lefts, rights))
        offset += len(lefts)
    features = int(params["num_feature"])
    forest = CompiledForest(
        feature=np.concatenate(feature).astype(np.intp),
        threshold=np.concatenate(threshold).astype(np.float32),
        left=np.concatenate(left).astype(np.intp),
        right=np.concatenate(right).astype(np.intp),
        default_left=np.concatenate(default_left),
        value=np.concatenate(value).astype(np.float32),
        roots=np.asarray(roots, dtype=np.intp),
        depth=depth,
        base_margin=base_margin,
        features=features,
    )
    if forest.feature.size and int(forest.feature.max()) >= features:
        return None
    return forest


def _depth(lefts: np.ndarray, rights: np.ndarray) -> int:
    """Edges on the longest path from the root (0 for a tree that is one leaf)."""
    depth, level = 0, [0]
    while True:
        level = [c for n in level for c in (lefts[n], rights[n]) if c != -1]
        if not level:
            return depth
        depth += 1


def _probe_rows(forest: CompiledForest, rows: int = PROBE_ROWS) -> np.ndarray:
    """Rows whose values sit on, just below and just above the forest's split points, or are
    missing: each branch of each split is taken by some of them."""
    rng = np.random.default_rng(0)
    inner = forest.left != np.arange(len(forest.left))
    choices = []
    for f in range(forest.features):
        points = forest.threshold[inner & (forest.feature == f)]
        points = np.concatenate(
            [
                points,
                np.nextafter(points, np.float32(-np.inf)),
                np.nextafter(points, np.float32(np.inf)),
                np.array([0.0, np.nan], dtype=np.float32),
            ]
        )
        choices.append(points)
    x = np.empty((rows, forest.features), dtype=np.float32)
    for f, points in enumerate(choices):
        x[:, f] = rng.choice(points, size=rows)
    return x
