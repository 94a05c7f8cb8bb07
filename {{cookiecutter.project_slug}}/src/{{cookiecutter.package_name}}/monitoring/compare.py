"""Champion vs challenger from the prediction log and its feedback labels.

Shadow mode logs both models' answers to the same request (same ``request_id``): the pairs are
compared with paired statistics (McNemar on the discordant pairs, a paired bootstrap of the
difference). In canary mode each request meets one model, so the two arms are compared
unpaired (two-proportion z-tests). Only explicit feedback counts as a label here: the
challenger's shadow answers were never shown, so "no feedback = correct" says nothing about them.

The challenger is "better" only when its error rate is significantly lower AND its false-positive
rate is not significantly higher (false positives are the contract's costly error); "worse" when
either is significantly higher. Below ``min_labels`` labelled pairs it refuses to decide.

Bootstraps resample through the contingency table: a multinomial draw of the cell counts has
the same distribution as resampling the pairs (or rows) themselves, at a cost independent of
their number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .online import Estimate, json_number, z_value

BETTER, WORSE, UNDECIDED, TOO_FEW = "better", "worse", "not_distinguishable", "too_few_labels"
POWER = 0.8
# Minimal detectable effect (difference in error rate) when no difference is observed.
MIN_EFFECT = 0.01
# Below this many discordant pairs McNemar uses the exact binomial test.
EXACT_BELOW = 100
# Above this share of labelled pairs contradicting the champion, labels look like user corrections.
CORRECTION_SHARE = 0.5
TEST_NAMES = {"error_rate": "error rate", "false_positive_rate": "FP rate"}
COLUMNS = ("request_id", "role", "model_version", "served", "label", "feedback")


@dataclass
class CompareResult:
    """The comparison: verdict, per-model metrics, tests, bootstrap differences, labels needed."""

    verdict: str  # better | worse | not_distinguishable | too_few_labels
    mode: str  # paired (shadow) | unpaired (canary) | none (nothing to compare)
    confidence: float
    min_labels: int
    champion_versions: list[int]
    challenger_version: int | None
    pairs: int  # requests with both models' answers (0 when unpaired)
    labelled: int  # labelled pairs; unpaired: labelled rows of the smaller arm
    agreement: Estimate | None  # over all pairs, labelled or not
    champion: dict  # {"rows", "labelled", "errors", "metrics": {name: Estimate}}
    challenger: dict
    tests: dict  # {"error_rate": {...}, "false_positive_rate": {...}}
    difference: dict  # challenger - champion, bootstrap: {metric: {"value", "low", "high"}}
    labels_needed: int | None  # more labels to detect the difference (80 % power)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready (NaN becomes None), with the summary sentence."""

        def arm(a: dict) -> dict:
            return {**a, "metrics": {k: e.to_dict() for k, e in a["metrics"].items()}}

        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["agreement"] = self.agreement.to_dict() if self.agreement else None
        out["champion"], out["challenger"] = arm(self.champion), arm(self.challenger)
        return {**_clean(out), "summary": self.summary()}

    def summary(self) -> str:
        """One sentence for a terminal or a log line."""
        if self.mode == "none":
            return f"Nothing to compare: {'; '.join(self.notes) or 'no data'}."
        who = f"challenger v{self.challenger_version}"
        champ = "champion " + "/".join(f"v{v}" for v in self.champion_versions)
        unit = "labelled pairs" if self.mode == "paired" else "labelled rows in the smaller arm"
        h, c = self.challenger["metrics"], self.champion["metrics"]
        detail = (
            f"error rate {_pct(1 - h['accuracy'].value)} vs {_pct(1 - c['accuracy'].value)}, "
            f"FP rate {_pct(h['false_positive_rate'].value)} vs "
            f"{_pct(c['false_positive_rate'].value)} on {self.labelled} {unit}"
        )
        if self.verdict != TOO_FEW:
            detail += f" (error test p={self.tests['error_rate']['p_value']:.2g})"
        if self.agreement is not None:
            detail += f"; agreement {_pct(self.agreement.value)} over {self.pairs} pairs"
        if self.verdict == TOO_FEW:
            return (
                f"Too few labels to compare {who} with {champ} ({self.min_labels} needed): "
                f"{detail}{self._needed()}."
            )
        if self.verdict == UNDECIDED:
            return f"The {who} and {champ} are not distinguishable yet: {detail}{self._needed()}."
        direction = "lower" if self.verdict == BETTER else "higher"
        why = " and ".join(
            TEST_NAMES[name]
            for name, t in self.tests.items()
            if t["significant"] and t["challenger"] == direction
        )
        return (
            f"The {who} is {self.verdict} than {champ} (significantly {direction} {why}): {detail}."
        )

    def _needed(self) -> str:
        what = "pairs" if self.mode == "paired" else "rows"
        return (
            f"; about {self.labels_needed} more labelled {what} needed"
            if self.labels_needed
            else ""
        )


def _pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f} %"


def _clean(value):
    """Nested dicts/lists with JSON-safe numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    return json_number(value)


# -- statistics ---------------------------------------------------------------------------------


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n trials at p = 0.5."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def mcnemar(b: int, c: int) -> dict:
    """McNemar's test on discordant pairs: b = only the champion wrong, c = only the challenger.

    Exact binomial below EXACT_BELOW discordant pairs, else chi-square with continuity correction.
    """
    b, c = int(b), int(c)
    out = {"champion_only": b, "challenger_only": c}
    if b + c < EXACT_BELOW:
        return {
            **out,
            "method": "mcnemar exact",
            "statistic": None,
            "p_value": binomial_two_sided(b, b + c),
        }
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    p = math.erfc(math.sqrt(statistic / 2))  # chi-square, 1 degree of freedom
    return {**out, "method": "mcnemar chi-square", "statistic": statistic, "p_value": p}


def two_proportion(k1: int, n1: int, k2: int, n2: int) -> dict:
    """Pooled two-proportion z-test of the challenger's k2/n2 against the champion's k1/n1."""
    counts = {"champion": [int(k1), int(n1)], "challenger": [int(k2), int(n2)]}
    out = {"method": "two-proportion z-test", "counts": counts}
    pooled = (k1 + k2) / (n1 + n2) if n1 and n2 else 0.0
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2) if n1 and n2 else 0.0
    if var <= 0:
        return {**out, "statistic": None, "p_value": 1.0}
    z = (k2 / n2 - k1 / n1) / math.sqrt(var)
    return {**out, "statistic": z, "p_value": math.erfc(abs(z) / math.sqrt(2))}


def mcnemar_sample_size(
    discordant: float, delta: float, confidence: float, power: float = POWER
) -> float:
    """Pairs needed to detect a difference ``delta`` in error rate (Connor 1987).

    ``discordant`` is the share of pairs where exactly one model is right (for a binary label:
    the pairs where the models disagree).
    """
    za, zb, delta = z_value(confidence), z_value(2 * power - 1), abs(delta)
    psi = max(discordant, delta)
    return ((za * math.sqrt(psi) + zb * math.sqrt(max(psi - delta**2, 0.0))) / delta) ** 2


def two_proportion_sample_size(
    p1: float, p2: float, ratio: float, confidence: float, power: float = POWER
) -> tuple[float, float]:
    """Labelled rows per arm (n1, n2 = ratio * n1) to detect p1 vs p2 (two-proportion test)."""
    za, zb = z_value(confidence), z_value(2 * power - 1)
    pbar = (p1 + ratio * p2) / (1 + ratio)
    root = za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / ratio)) + zb * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2) / ratio
    )
    n1 = root**2 / (p2 - p1) ** 2
    return n1, ratio * n1


# -- tables: [..., truth, predicted] with index 1 = positive ------------------------------------


def _arm(table: np.ndarray, rows: int, confidence: float) -> dict:
    tp, fp, fn, tn = (int(table[i, j]) for i, j in ((1, 1), (0, 1), (1, 0), (0, 0)))
    metrics = {
        "precision": Estimate.of(tp, tp + fp, confidence),
        "false_positive_rate": Estimate.of(fp, fp + tn, confidence),
        "recall": Estimate.of(tp, tp + fn, confidence),
        "accuracy": Estimate.of(tp + tn, tp + fp + fn + tn, confidence),
    }
    return {"rows": rows, "labelled": int(table.sum()), "errors": fp + fn, "metrics": metrics}


def _rates(table: np.ndarray) -> dict[str, np.ndarray]:
    """Error and FP rates of tables (NaN where undefined), vectorised over bootstrap draws."""
    fp, fn, negatives = table[..., 0, 1], table[..., 1, 0], table[..., 0, :].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "error_rate": (fp + fn) / table.sum(axis=(-2, -1)),
            "false_positive_rate": fp / negatives,
        }


def _differences(champion: tuple, challenger: tuple, confidence: float) -> dict:
    """Challenger minus champion, observed and bootstrap interval; each arm is (table, draws)."""
    alpha = 1 - confidence
    out = {}
    observed = {k: _rates(t[0]) for k, t in (("c", champion), ("h", challenger))}
    drawn = {k: _rates(t[1]) for k, t in (("c", champion), ("h", challenger))}
    for metric in ("error_rate", "false_positive_rate"):
        draws = drawn["h"][metric] - drawn["c"][metric]
        draws = draws[np.isfinite(draws)]
        low = high = None
        if draws.size:
            low, high = np.percentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        value = float(observed["h"][metric] - observed["c"][metric])
        out[metric] = {"value": value, "low": json_number(low), "high": json_number(high)}
    out["primary"] = "error_rate"
    return out


# -- the comparison -----------------------------------------------------------------------------


def compare_models(
    predictions: pd.DataFrame,
    positive: str,
    negative: str,
    *,
    confidence: float = 0.95,
    min_labels: int = 200,
    seed: int = 0,
    bootstrap: int = 2000,
) -> CompareResult:
    """Compare the challenger with the champion on the window's predictions and feedback.

    ``predictions`` is the monitoring window (columns request_id, role, model_version, served,
    label, feedback), in log order. The challenger is the version of the last challenger row;
    every champion row takes part (their versions are reported). A request logged twice by the
    same model keeps its last answer.
    """
    missing = [c for c in COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"compare: the predictions frame lacks column(s) {', '.join(missing)}")
    z_value(confidence)  # validates it
    frame = predictions.loc[:, list(COLUMNS)]
    champion = frame[(frame["role"] == "champion").to_numpy(dtype=bool)]
    challenger = frame[(frame["role"] == "challenger").to_numpy(dtype=bool)]
    base = {
        "confidence": confidence,
        "min_labels": min_labels,
        "champion_versions": sorted(int(v) for v in champion["model_version"].unique()),
        "challenger_version": None,
    }
    if challenger.empty or champion.empty:
        nothing = np.zeros((2, 2), dtype=np.int64)
        which = "challenger" if challenger.empty else "champion"
        return CompareResult(
            verdict=TOO_FEW,
            mode="none",
            pairs=0,
            labelled=0,
            agreement=None,
            champion=_arm(nothing, len(champion), confidence),
            challenger=_arm(nothing, len(challenger), confidence),
            tests={},
            difference={},
            labels_needed=None,
            notes=[f"no {which} predictions in the window"],
            **base,
        )
    base["challenger_version"] = version = int(challenger["model_version"].iloc[-1])
    challenger = challenger[(challenger["model_version"] == version).to_numpy(dtype=bool)]
    champion = champion.drop_duplicates("request_id", keep="last")
    challenger = challenger.drop_duplicates("request_id", keep="last")
    pairs = champion.merge(challenger, on="request_id", suffixes=("_c", "_h"))
    rng = np.random.default_rng(seed)
    if len(pairs):
        fields = _paired(pairs, positive, negative, confidence, min_labels, rng, bootstrap)
    else:
        fields = _unpaired(
            champion, challenger, positive, negative, confidence, min_labels, rng, bootstrap
        )
    left_out = len(challenger) - fields["pairs"] if fields["pairs"] else 0
    if left_out:
        fields["notes"].append(
            f"{left_out} challenger predictions without a champion answer to the same request "
            "(canary traffic) were left out of the paired comparison"
        )
    return CompareResult(**base, **fields)


def _labels(feedback: pd.Series, positive: str, negative: str) -> tuple[np.ndarray, np.ndarray]:
    """(labelled, truth is positive) as boolean arrays."""
    pos = (feedback == positive).to_numpy(dtype=bool)
    return pos | (feedback == negative).to_numpy(dtype=bool), pos


def _paired(pairs, positive, negative, confidence, min_labels, rng, bootstrap) -> dict:
    # Both rows carry the request's feedback; fall back to the challenger's if the champion's is lost.
    feedback = pairs["feedback_c"].where(pairs["feedback_c"].notna(), pairs["feedback_h"])
    labelled, truth = _labels(feedback, positive, negative)
    c_pos = (pairs["label_c"] == positive).to_numpy(dtype=bool)
    h_pos = (pairs["label_h"] == positive).to_numpy(dtype=bool)
    agreement = Estimate.of(int((c_pos == h_pos).sum()), len(pairs), confidence)
    # cells[truth, champion, challenger] over the labelled pairs.
    index = (4 * truth + 2 * c_pos + h_pos)[labelled].astype(np.int64)
    cells = np.bincount(index, minlength=8).reshape(2, 2, 2)
    n = int(cells.sum())
    champion, challenger = (
        _arm(cells.sum(axis=2), len(pairs), confidence),
        _arm(cells.sum(axis=1), len(pairs), confidence),
    )
    # Discordant pairs: exactly one model right (for a binary label: the models disagree).
    only_c, only_h = int(cells[0, 1, 0] + cells[1, 0, 1]), int(cells[0, 0, 1] + cells[1, 1, 0])
    tests = {
        "error_rate": mcnemar(only_c, only_h),
        # Among true negatives: only the champion flagged it vs only the challenger did.
        "false_positive_rate": mcnemar(int(cells[0, 1, 0]), int(cells[0, 0, 1])),
    }
    difference = {}
    if n:
        draws = rng.multinomial(n, cells.ravel() / n, size=bootstrap).reshape(-1, 2, 2, 2)
        difference = _differences(
            (cells.sum(axis=2), draws.sum(axis=3)),
            (cells.sum(axis=1), draws.sum(axis=2)),
            confidence,
        )
    notes = []
    if n and champion["errors"] / n > CORRECTION_SHARE:
        notes.append(
            f"{champion['errors']} of {n} labelled pairs contradict the champion: the labels look "
            "like user corrections of served answers, which favours the challenger; label an "
            "unbiased sample of requests for a fair comparison"
        )
    verdict = _verdict(tests, n, min_labels, confidence)
    needed = 0 if verdict in (BETTER, WORSE) else None
    if needed is None:
        if only_c + only_h:
            psi, delta = (only_c + only_h) / n, (only_c - only_h) / n
        else:  # no labelled discordant pair yet: the disagreement over all pairs estimates psi
            psi, delta = 1 - agreement.value, 0.0
        if delta == 0:
            delta = MIN_EFFECT
            notes.append(_min_effect_note())
        if psi == 0:
            notes.append("the models agree on every pair: no number of labels can tell them apart")
        else:
            needed = max(
                math.ceil(mcnemar_sample_size(psi, delta, confidence)) - n, min_labels - n, 0
            )
            if needed == 0:
                notes.append(
                    f"{n} labelled pairs suffice to detect a difference of {100 * abs(delta):.2g} "
                    "points in error rate: the true difference is probably smaller"
                )
    return {
        "verdict": verdict,
        "mode": "paired",
        "pairs": len(pairs),
        "labelled": n,
        "agreement": agreement,
        "champion": champion,
        "challenger": challenger,
        "tests": tests,
        "difference": difference,
        "labels_needed": needed,
        "notes": notes,
    }


def _unpaired(
    champion, challenger, positive, negative, confidence, min_labels, rng, bootstrap
) -> dict:
    """Canary: each request met one model; compare the arms' labelled rows, unpaired."""
    tables, arms, draws = {}, {}, {}
    for name, rows in (("champion", champion), ("challenger", challenger)):
        labelled, truth = _labels(rows["feedback"], positive, negative)
        predicted = (rows["label"] == positive).to_numpy(dtype=bool)
        index = (2 * truth + predicted)[labelled].astype(np.int64)
        table = tables[name] = np.bincount(index, minlength=4).reshape(2, 2)
        arms[name] = _arm(table, len(rows), confidence)
        n = int(table.sum())
        if n:
            draws[name] = rng.multinomial(n, table.ravel() / n, size=bootstrap).reshape(-1, 2, 2)
    c, h = arms["champion"], arms["challenger"]
    n1, n2 = c["labelled"], h["labelled"]
    tc, th = tables["champion"], tables["challenger"]
    tests = {
        "error_rate": two_proportion(c["errors"], n1, h["errors"], n2),
        "false_positive_rate": two_proportion(tc[0, 1], tc[0].sum(), th[0, 1], th[0].sum()),
    }
    difference = {}
    if n1 and n2:
        difference = _differences((tc, draws["champion"]), (th, draws["challenger"]), confidence)
    notes = [
        "canary: requests were not paired, so the arms are compared unpaired (two-proportion "
        "z-tests on each arm's labelled rows), which needs more labels than shadow pairs"
    ]
    verdict = _verdict(tests, min(n1, n2), min_labels, confidence)
    needed = 0 if verdict in (BETTER, WORSE) else None
    if needed is None:
        p1 = c["errors"] / n1 if n1 else math.nan
        p2 = h["errors"] / n2 if n2 else math.nan
        if not (n1 and n2) or p1 == p2:
            rate = next((p for p in (p1, p2) if math.isfinite(p)), 0.05)
            p1 = min(max(rate, MIN_EFFECT), 1 - 2 * MIN_EFFECT)
            p2 = p1 + MIN_EFFECT
            notes.append(_min_effect_note())
        need1, need2 = two_proportion_sample_size(p1, p2, n2 / n1 if n1 and n2 else 1.0, confidence)
        needed = max(math.ceil(need1) - n1, min_labels - n1, 0)
        needed += max(math.ceil(need2) - n2, min_labels - n2, 0)
    return {
        "verdict": verdict,
        "mode": "unpaired",
        "pairs": 0,
        "labelled": min(n1, n2),
        "agreement": None,
        "champion": c,
        "challenger": h,
        "tests": tests,
        "difference": difference,
        "labels_needed": needed,
        "notes": notes,
    }


def _min_effect_note() -> str:
    return (
        "no difference in error rate observed: labels_needed is for a difference of "
        f"{100 * MIN_EFFECT:g} percentage point"
    )


def _verdict(tests: dict, n: int, min_labels: int, confidence: float) -> str:
    """better / worse / not_distinguishable / too_few_labels; annotates each test."""
    for t in tests.values():
        t["significant"] = t["p_value"] < 1 - confidence
        if "champion_only" in t:  # McNemar: pairs where only one model erred
            c, h = t["champion_only"], t["challenger_only"]
        else:
            (k1, n1), (k2, n2) = t["counts"]["champion"], t["counts"]["challenger"]
            c, h = (k1 / n1, k2 / n2) if n1 and n2 else (0, 0)
        t["challenger"] = "higher" if h > c else "lower" if h < c else "equal"
    if n < min_labels:
        return TOO_FEW
    err, fpr = tests["error_rate"], tests["false_positive_rate"]
    if any(t["significant"] and t["challenger"] == "higher" for t in (err, fpr)):
        return WORSE
    if err["significant"] and err["challenger"] == "lower":
        return BETTER
    return UNDECIDED
