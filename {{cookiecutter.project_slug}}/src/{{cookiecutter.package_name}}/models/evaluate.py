"""Evaluate a model bundle against the contract's offline targets.

The decision threshold is chosen on the validation split (the highest recall among thresholds
whose precision meets ``metrics.offline.target_precision``) and written into the bundle; the
time-held-out test split then reports precision, recall, F1, ROC-AUC and PR-AUC at that
threshold, per slice (new vs established entities, with vs without links) and next to the
baseline. Outputs: ``evaluation.json``, ``model_card.md`` and three plots, also logged to the
active MLflow run when there is one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..bundle import ModelBundle, load_bundle, save_bundle, time_window
from ..config import SystemConfig
from ..domain import pack_of
from ..features.history import entity_created_column

PLOT_FILES = {
    "pr_curve": "pr_curve.png",
    "confusion_matrix": "confusion_matrix.png",
    "calibration": "calibration.png",
}
METRIC_ROWS = (
    "precision",
    "recall",
    "f1",
    "fpr",
    "roc_auc",
    "pr_auc",
    "recall_at_target_precision",
)
# Precision comparisons tolerate float noise (99/100 must count as 0.99).
_EPS = 1e-12


# ---------------------------------------------------------------------------------------------
# Metrics


def _binary(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true)
    if y.dtype == bool:
        return y.astype(np.int8)
    if not np.issubdtype(y.dtype, np.number):
        raise TypeError("y_true must be 0/1 or boolean: compare labels with the positive class")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    return y.astype(np.int8)


def _scores(scores: Any, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.shape != (n,):
        raise ValueError(f"scores has shape {s.shape}, expected ({n},)")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return s


def positives(cfg: SystemConfig, labels: Any) -> np.ndarray:
    """0/1 targets from label names: 1 where the label is the contract's positive class."""
    return (np.asarray(labels, dtype=object) == cfg.problem.positive_class).astype(np.int8)


def _ratio(num: float, den: float) -> float:
    # An undefined ratio (nothing predicted positive, no positives) reports 0, as scikit-learn
    # does with zero_division=0: it can never satisfy a target by accident.
    return float(num / den) if den else 0.0


def metrics_at_threshold(y_true: Any, scores: Any, threshold: float) -> dict:
    """Confusion counts and rates when rows scoring ``>= threshold`` are predicted positive."""
    y = _binary(y_true)
    s = _scores(scores, y.size)
    predicted = s >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    tn = int(np.sum(~predicted & (y == 0)))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "fpr": _ratio(fp, fp + tn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "support": {"rows": int(y.size), "positive": tp + fn, "negative": fp + tn},
        "predicted_positive_rate": _ratio(tp + fp, y.size),
    }


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds (distinct scores, descending) with cumulative TP and FP counts.

    Rows with equal scores are always on the same side of a threshold, so ties are one step.
    """
    order = np.argsort(-s, kind="mergesort")
    sorted_scores, sorted_y = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), y.size - 1]
    tps = np.cumsum(sorted_y)[ends].astype(np.int64)
    fps = (ends + 1) - tps
    return sorted_scores[ends], tps, fps


def recall_at_precision(y_true: Any, scores: Any, target_precision: float) -> float:
    """The highest recall of any threshold whose precision reaches ``target_precision``."""
    y = _binary(y_true)
    s = _scores(scores, y.size)
    if y.sum() == 0:
        return 0.0
    _, tps, fps = _curve(y, s)
    ok = tps / (tps + fps) >= target_precision - _EPS
    return float(tps[ok].max() / y.sum()) if ok.any() else 0.0


def evaluate_scores(
    y_true: Any, scores: Any, threshold: float, *, target_precision: float | None = None
) -> dict:
    """:func:`metrics_at_threshold` plus ROC-AUC, PR-AUC (average precision) and Brier score.

    The AUCs are ``None`` when ``y_true`` holds a single class. With ``target_precision``,
    also ``recall_at_target_precision`` (threshold-free: the best recall meeting the target).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = _binary(y_true)
    s = _scores(scores, y.size)
    result = metrics_at_threshold(y, s, threshold)
    both = 0 < y.sum() < y.size
    result["roc_auc"] = float(roc_auc_score(y, s)) if both else None
    result["pr_auc"] = float(average_precision_score(y, s)) if both else None
    result["brier"] = float(np.mean((s - y) ** 2)) if y.size else None
    if target_precision is not None:
        result["recall_at_target_precision"] = recall_at_precision(y, s, target_precision)
    return result


# ---------------------------------------------------------------------------------------------
# Threshold


@dataclass(frozen=True)
class ThresholdChoice:
    """The decision threshold picked on validation, and why."""

    threshold: float
    met: bool
    target_precision: float
    precision: float
    recall: float
    rows: int
    positives: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def choose_threshold(y_true: Any, scores: Any, target_precision: float) -> ThresholdChoice:
    """Pick the threshold with the highest recall whose precision reaches the target.

    Candidates are the distinct scores (predict positive when ``score >= threshold``). Among
    thresholds meeting the target, the highest recall wins, then the higher precision. When no
    threshold meets it, ``met`` is False and the threshold of maximum precision is returned
    (highest recall among those), with the reason. With no positive rows the threshold sits
    just above the highest score, so nothing is flagged.
    """
    y = _binary(y_true)
    s = _scores(scores, y.size)
    if y.size == 0:
        raise ValueError("cannot choose a threshold on an empty validation set")
    n, p = int(y.size), int(y.sum())
    if p == 0:
        return ThresholdChoice(
            threshold=float(np.nextafter(s.max(), np.inf)),
            met=False,
            target_precision=target_precision,
            precision=0.0,
            recall=0.0,
            rows=n,
            positives=0,
            reason=f"validation has no positive rows ({n} rows): no threshold can be chosen; "
            "the threshold is set above every score, so nothing is flagged",
        )
    thresholds, tps, fps = _curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / p
    meets = precision >= target_precision - _EPS
    pool = np.flatnonzero(meets) if meets.any() else np.arange(thresholds.size)
    if meets.any():
        # Highest recall, then highest precision (lexsort: last key is primary).
        best = pool[np.lexsort((precision[pool], recall[pool]))[-1]]
    else:
        best = pool[np.lexsort((recall[pool], precision[pool]))[-1]]
    choice = {
        "threshold": float(thresholds[best]),
        "target_precision": float(target_precision),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "rows": n,
        "positives": p,
    }
    counts = f"on {n} validation rows ({p} positive)"
    if meets.any():
        reason = (
            f"highest recall ({choice['recall']:.4f}) among thresholds with validation precision "
            f">= {target_precision:g} (precision {choice['precision']:.4f}) {counts}"
        )
        if p == n:
            reason += "; validation has no negative rows, so precision is trivially 1"
    else:
        reason = (
            f"target precision {target_precision:g} NOT reached at any threshold {counts}; "
            f"fell back to the threshold of maximum precision ({choice['precision']:.4f}, "
            f"recall {choice['recall']:.4f})"
        )
    return ThresholdChoice(met=bool(meets.any()), reason=reason, **choice)


# ---------------------------------------------------------------------------------------------
# Slices

Mask = np.ndarray | pd.Series | Callable[[pd.DataFrame], Any]


def slice_metrics(
    frame: pd.DataFrame,
    y_true: Any,
    scores: Any,
    threshold: float,
    slices: Mapping[str, Mask],
    *,
    target_precision: float | None = None,
) -> dict[str, dict]:
    """:func:`evaluate_scores` on each slice; a mask is a boolean array or ``frame -> mask``."""
    y = _binary(y_true)
    s = _scores(scores, y.size)
    result = {}
    for name, mask in slices.items():
        selected = np.asarray(mask(frame) if callable(mask) else mask, dtype=bool)
        if selected.shape != y.shape:
            raise ValueError(f"slice {name!r}: mask has shape {selected.shape}, expected {y.shape}")
        metrics = evaluate_scores(
            y[selected], s[selected], threshold, target_precision=target_precision
        )
        metrics["share"] = _ratio(int(selected.sum()), y.size)
        result[name] = metrics
    return result


def _first_seen(cfg: SystemConfig, frames: list[pd.DataFrame]) -> pd.Series:
    entity = cfg.data.entity
    ts = cfg.data.timestamp
    both = pd.concat([f[[entity, ts]] for f in frames if entity in f and ts in f])
    return pd.to_datetime(both[ts], utc=True).groupby(both[entity]).min()


def default_slices(
    raw_df: pd.DataFrame, cfg: SystemConfig, *, history: pd.DataFrame | None = None
) -> dict[str, np.ndarray]:
    """New vs established entities, then the domain pack's slices, as masks over ``raw_df``.

    An entity is new when it was created (``features.history.entity_created_column``) or, when
    that is unknown, first seen (in ``history`` and ``raw_df``) fewer than
    ``training.new_entity_days`` days before the record. Pass earlier splits as ``history``:
    without them every entity of the first days of ``raw_df`` looks new.
    """
    ts_col = cfg.data.timestamp
    entity_col = cfg.data.entity
    pack = pack_of(cfg)
    created_col = entity_created_column(cfg)
    slices: dict[str, np.ndarray] = {}
    if entity_col and ts_col in raw_df and entity_col in raw_df:
        received = pd.to_datetime(raw_df[ts_col], utc=True)
        frames = [raw_df] if history is None else [history, raw_df]
        start = raw_df[entity_col].map(_first_seen(cfg, frames))
        if created_col and created_col in raw_df:
            created = pd.to_datetime(raw_df[created_col], utc=True)
            start = created.where(created.notna(), pd.to_datetime(start, utc=True))
        age_days = (received - pd.to_datetime(start, utc=True)).dt.total_seconds() / 86400
        new = (age_days < cfg.training.new_entity_days).fillna(False).to_numpy(dtype=bool)
        slices["new_entity"] = new
        slices["established_entity"] = ~new
    if pack.slices is not None:
        slices.update(pack.slices(raw_df))
    return slices


# ---------------------------------------------------------------------------------------------
# The contract


def contract_check(cfg: SystemConfig, test_metrics: Mapping[str, Any]) -> list[str]:
    """Why ``test_metrics`` (at the bundle's threshold) miss the offline targets; empty when met."""
    targets = cfg.metrics.offline
    reasons = []
    at = f" at threshold {test_metrics['threshold']:.4g}" if "threshold" in test_metrics else ""
    for name, target in (
        ("precision", targets.target_precision),
        ("recall", targets.target_recall),
    ):
        value = test_metrics.get(name)
        if value is None:
            reasons.append(f"{name} is missing from the test metrics")
        elif value < target - _EPS:
            reasons.append(f"test {name} {value:.4f} is below the target {target:g}{at}")
    return reasons


# ---------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pr_curve(
    path: Path,
    curves: Mapping[str, tuple[Any, Any, float]],
    *,
    target_precision: float,
    target_recall: float,
) -> Path:
    """Precision-recall curves, one per ``name -> (y_true, scores, threshold)``, with targets
    and each model's operating point at its threshold."""
    from sklearn.metrics import precision_recall_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (y_true, scores, threshold) in curves.items():
        y = _binary(y_true)
        if 0 < y.sum() < y.size:
            precision, recall, _ = precision_recall_curve(y, scores)
            line = ax.plot(recall, precision, label=name)[0]
            point = metrics_at_threshold(y, scores, threshold)
            ax.plot(point["recall"], point["precision"], "o", color=line.get_color())
    ax.axhline(target_precision, color="grey", ls="--", lw=1, label="target precision")
    ax.axvline(target_recall, color="grey", ls=":", lw=1, label="target recall")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)", xlim=(0, 1.01))
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion_matrix(path: Path, metrics: Mapping[str, Any], labels: tuple[str, str]) -> Path:
    """The test confusion matrix at the threshold; ``labels`` = (negative, positive)."""
    plt = _pyplot()
    matrix = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, f"{count:,}", ha="center", va="center", color=color)
    ax.set_xticks([0, 1], labels=[f"predicted {labels[0]}", f"predicted {labels[1]}"])
    ax.set_yticks([0, 1], labels=[f"true {labels[0]}", f"true {labels[1]}"])
    ax.set_title(f"Confusion matrix (test, threshold {metrics['threshold']:.3g})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_calibration(path: Path, y_true: Any, scores: Any, *, bins: int = 10) -> Path:
    """Reliability diagram: observed positive rate per score bin, with the score histogram."""
    y = _binary(y_true)
    s = _scores(scores, y.size)
    plt = _pyplot()
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    observed = np.bincount(index, weights=y, minlength=bins) / np.maximum(counts, 1)
    mean_score = np.bincount(index, weights=s, minlength=bins) / np.maximum(counts, 1)
    used = counts > 0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    top.plot(mean_score[used], observed[used], "o-", label="model")
    top.set(ylabel="observed positive rate", title="Calibration (test)")
    top.legend(loc="upper left")
    bottom.bar(edges[:-1], counts, width=1 / bins, align="edge", color="tab:blue", alpha=0.6)
    bottom.set(xlabel="score", ylabel="rows", yscale="log" if counts.max() > 100 else "linear")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Model card


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def split_note(cfg: SystemConfig) -> str:
    """How the parts were drawn: by time, or at random when the records have no time."""
    if cfg.data.timestamp:
        return f"by time ({cfg.data.timestamp}): the test part is the held-out future"
    return (
        "a seeded random split stratified by label (the records have no timestamp column): "
        "time leakage cannot be ruled out, so the test figures may be optimistic"
    )


def _window(window: Mapping[str, Any] | None) -> str:
    if not window or not window.get("start"):
        return "unknown"
    return f"{window['start']} to {window['end']}"


def model_card(
    cfg: SystemConfig,
    *,
    metadata: Mapping[str, Any],
    choice: ThresholdChoice,
    test: Mapping[str, Any],
    baseline: Mapping[str, Any] | None = None,
    slices: Mapping[str, Mapping[str, Any]] | None = None,
    contract_reasons: list[str] | None = None,
    windows: Mapping[str, Any] | None = None,
) -> str:
    """A Markdown model card: data, metrics vs baseline vs targets, slices, threshold, limits.

    ``baseline`` is the baseline's test metrics (same keys as ``test``); ``windows`` maps
    ``validation`` / ``test`` to ``{"start", "end"}``.
    """
    targets = cfg.metrics.offline
    training = metadata.get("training", {})
    windows = windows or {}
    reasons = contract_reasons or []
    lines = [
        f"# Model card: {cfg.problem.name} ({metadata.get('kind', 'model')})",
        "",
        f"Predicts `{cfg.problem.positive_class}` vs `{cfg.problem.negative_class}`. "
        f"Goal: {cfg.problem.business_goal}",
        "",
        "## Data",
        "",
        f"- Training: {_window(training.get('window'))}, {training.get('rows', 'n/a')} rows, "
        f"positive rate {_fmt(training.get('positive_rate'))}, "
        f"fingerprint `{str(training.get('fingerprint', 'n/a'))[:16]}`",
        f"- Validation (threshold choice): {_window(windows.get('validation'))}, "
        f"{choice.rows} rows, {choice.positives} positive",
        f"- Test: {_window(windows.get('test'))}, "
        f"{test['support']['rows']} rows, {test['support']['positive']} positive",
        f"- Split: {split_note(cfg)}",
        f"- Contract version {metadata.get('contract_version', cfg.contract_version)}, "
        f"trained at {metadata.get('trained_at', 'n/a')}",
        "",
        "## Metrics on the test set",
        "",
        "| metric | baseline | candidate | target |",
        "|---|---|---|---|",
    ]
    target_of = {
        "precision": f">= {targets.target_precision:g}",
        "recall": f">= {targets.target_recall:g}",
        "fpr": f"<= {cfg.alerts.false_positive_rate_max:g} (online alert)",
        targets.selection_metric: "selection metric",
    }
    for name in METRIC_ROWS:
        base = _fmt(baseline.get(name)) if baseline else "n/a"
        lines.append(f"| {name} | {base} | {_fmt(test.get(name))} | {target_of.get(name, '')} |")
    verdict = "**meets the contract**" if not reasons else "**does NOT meet the contract**"
    lines += ["", f"The candidate {verdict}."]
    lines += [f"- {r}" for r in reasons]
    lines += [
        "",
        "## Decision threshold",
        "",
        f"Threshold **{choice.threshold:.6g}**, chosen on the validation set: {choice.reason}. "
        f"Test precision and recall above are measured at this threshold.",
        "",
    ]
    if slices:
        lines += [
            "## Slices (test)",
            "",
            "| slice | share | rows | positive | precision | recall | fpr | pr_auc |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, m in slices.items():
            lines.append(
                f"| {name} | {_fmt(m['share'])} | {m['support']['rows']} | "
                f"{m['support']['positive']} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | "
                f"{_fmt(m['fpr'])} | {_fmt(m.get('pr_auc'))} |"
            )
        lines.append("")
    positives_in_test = test["support"]["positive"]
    lines += [
        "## Limitations",
        "",
        f"- A precision of {targets.target_precision:g} allows one false positive in "
        f"{round(1 / max(1 - targets.target_precision, 1e-9))} flagged records; on "
        f"{positives_in_test} test positives the estimate moves by several tenths of a point "
        "from one sample to the next: watch online precision from user feedback.",
        "- The threshold is tuned on one validation window; a shift in traffic (new campaigns, "
        "new entities) moves the score distribution: drift monitoring compares live scores with "
        "the reference stored in the bundle.",
        "- Slices with few rows give noisy metrics; new entities are the hardest case because "
        "they have no reputation history.",
        "- Scores are not guaranteed to be calibrated probabilities (see calibration.png).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Stage


@dataclass
class EvaluationResult:
    """What ``run`` measured and wrote."""

    bundle_dir: Path
    choice: ThresholdChoice
    validation: dict
    test: dict
    slices: dict
    contract_reasons: list[str]
    baseline: dict | None = None
    evaluation_path: Path | None = None
    model_card_path: Path | None = None
    plots: dict[str, Path] = field(default_factory=dict)

    @property
    def meets_contract(self) -> bool:
        return not self.contract_reasons


def _read_split(cfg: SystemConfig, path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_parquet(path)
    label = cfg.data.column("label").name
    if label not in frame:
        raise ValueError(f"{path}: no {label!r} column: evaluation needs labelled rows")
    return frame, positives(cfg, frame[label])


def _evaluate_bundle(
    cfg: SystemConfig, bundle: ModelBundle, val: pd.DataFrame, y_val, test: pd.DataFrame, y_test
) -> tuple[ThresholdChoice, np.ndarray, dict, np.ndarray, dict]:
    offline = cfg.metrics.offline
    target = offline.target_precision
    s_val = bundle.score(val)
    aim = min(1.0, target + offline.threshold_precision_margin)
    choice = choose_threshold(y_val, s_val, aim)
    if not choice.met and aim > target:
        choice = choose_threshold(y_val, s_val, target)
    validation = evaluate_scores(y_val, s_val, choice.threshold, target_precision=target)
    s_test = bundle.score(test)
    metrics = evaluate_scores(y_test, s_test, choice.threshold, target_precision=target)
    return choice, s_val, validation, s_test, metrics


def _log_to_mlflow(
    cfg: SystemConfig, result: EvaluationResult, out_dir: Path, run_id: str | None
) -> None:
    """Log into the active run, else into the training run recorded in the bundle."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        _log_evaluation(mlflow, result, out_dir)
        return
    if not run_id:
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    from .tracking import connect

    connect(cfg)
    try:
        mlflow.get_run(run_id)
    except MlflowException:
        return  # trained against another tracking store: nothing to attach to
    with mlflow.start_run(run_id=run_id):
        _log_evaluation(mlflow, result, out_dir)


def _log_evaluation(mlflow, result: EvaluationResult, out_dir: Path) -> None:
    numeric = ("precision", "recall", "f1", "fpr", "roc_auc", "pr_auc", "brier")
    metrics = {f"test_{k}": result.test[k] for k in numeric if result.test.get(k) is not None}
    val = result.validation
    metrics |= {f"val_{k}": val[k] for k in numeric if val.get(k) is not None}
    metrics["threshold"] = result.choice.threshold
    if result.baseline:
        base = result.baseline["test"]
        metrics |= {f"baseline_test_{k}": base[k] for k in numeric if base.get(k) is not None}
    mlflow.log_metrics(metrics)
    mlflow.set_tags(
        {"contract_met": str(result.meets_contract), "threshold_met": str(result.choice.met)}
    )
    mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")


def run(
    cfg: SystemConfig,
    bundle_dir: Path,
    validation: Path,
    test: Path,
    out_dir: Path,
    *,
    baseline_dir: Path | None = None,
    history: Path | None = None,
) -> EvaluationResult:
    """Choose the threshold on ``validation``, measure ``test``, write reports to ``out_dir``.

    The bundle in ``bundle_dir`` is re-saved with the chosen threshold, validation and test
    metrics, and the monitoring reference built on validation (``reference.build_reference``).
    A baseline bundle, when given, gets its own threshold chosen the same way (in memory: its
    folder is not modified). ``history`` (e.g. the train split) tells the slices which entities
    were already seen. Writes ``evaluation.json``, ``model_card.md`` and the PNG plots.
    """
    from rich.console import Console

    from ..reference import build_reference

    console = Console(stderr=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = cfg.metrics.offline.target_precision
    with console.status("Evaluating on validation and test"):
        bundle = load_bundle(bundle_dir)
        val_df, y_val = _read_split(cfg, validation)
        test_df, y_test = _read_split(cfg, test)
        choice, s_val, val_metrics, s_test, test_metrics = _evaluate_bundle(
            cfg, bundle, val_df, y_val, test_df, y_test
        )
        baseline = None
        if baseline_dir is not None:
            base_bundle = load_bundle(baseline_dir)
            b_choice, _, b_val, b_scores, b_test = _evaluate_bundle(
                cfg, base_bundle, val_df, y_val, test_df, y_test
            )
            baseline = {
                "bundle": str(baseline_dir),
                "kind": base_bundle.kind,
                "threshold": b_choice.to_dict(),
                "validation": b_val,
                "test": b_test,
            }
        earlier = [val_df] if history is None else [pd.read_parquet(history), val_df]
        masks = default_slices(test_df, cfg, history=pd.concat(earlier, ignore_index=True))
        slices = slice_metrics(
            test_df, y_test, s_test, choice.threshold, masks, target_precision=target
        )
        reasons = contract_check(cfg, test_metrics)

    ts_col = cfg.data.timestamp
    windows = {"validation": time_window(val_df, ts_col), "test": time_window(test_df, ts_col)}
    selection = cfg.metrics.offline.selection_metric
    with console.status("Writing plots and the model card"):
        curves = {bundle.kind: (y_test, s_test, choice.threshold)}
        if baseline is not None:
            curves[f"{baseline['kind']} (baseline)"] = (y_test, b_scores, b_choice.threshold)
        plots = {
            "pr_curve": plot_pr_curve(
                out_dir / PLOT_FILES["pr_curve"],
                curves,
                target_precision=target,
                target_recall=cfg.metrics.offline.target_recall,
            ),
            "confusion_matrix": plot_confusion_matrix(
                out_dir / PLOT_FILES["confusion_matrix"],
                test_metrics,
                (cfg.problem.negative_class, cfg.problem.positive_class),
            ),
            "calibration": plot_calibration(out_dir / PLOT_FILES["calibration"], y_test, s_test),
        }
        card = model_card(
            cfg,
            metadata=bundle.metadata,
            choice=choice,
            test=test_metrics,
            baseline=baseline["test"] if baseline else None,
            slices=slices,
            contract_reasons=reasons,
            windows=windows,
        )
        card_path = out_dir / "model_card.md"
        card_path.write_text(card, encoding="utf-8")

    # The threshold and the evidence travel with the model.
    bundle.threshold = choice.threshold
    bundle.metadata["threshold_choice"] = choice.to_dict()
    bundle.metadata["metrics"] = {"validation": val_metrics, "test": test_metrics}
    bundle.metadata["evaluation_windows"] = windows
    bundle.metadata["contract_met"] = not reasons
    # Monitoring compares live traffic with held-out rows, featurised as serving does.
    with console.status("Building the monitoring reference from validation"):
        bundle.reference = build_reference(cfg, bundle, val_df, labels=y_val)
    save_bundle(bundle, bundle_dir)

    result = EvaluationResult(
        bundle_dir=Path(bundle_dir),
        choice=choice,
        validation=val_metrics,
        test=test_metrics,
        slices=slices,
        contract_reasons=reasons,
        baseline=baseline,
        model_card_path=card_path,
        plots=plots,
    )
    candidate_value = test_metrics.get(selection)
    baseline_value = baseline["test"].get(selection) if baseline else None
    body = {
        "bundle": str(bundle_dir),
        "kind": bundle.kind,
        "contract_version": cfg.contract_version,
        "targets": cfg.metrics.offline.model_dump(),
        "threshold": choice.to_dict(),
        "validation": val_metrics,
        "test": test_metrics,
        "baseline": baseline,
        "slices": slices,
        "contract": {"met": not reasons, "reasons": reasons},
        "selection": {
            "metric": selection,
            "candidate": candidate_value,
            "baseline": baseline_value,
            "beats_baseline": None
            if baseline_value is None or candidate_value is None
            else candidate_value > baseline_value,
        },
        "windows": {"training": bundle.metadata.get("training", {}).get("window"), **windows},
        "split": {"by_time": bool(cfg.data.timestamp), "note": split_note(cfg)},
        "plots": {k: str(v) for k, v in plots.items()},
        "model_card": str(card_path),
    }
    result.evaluation_path = out_dir / "evaluation.json"
    result.evaluation_path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    _log_to_mlflow(cfg, result, out_dir, bundle.metadata.get("mlflow_run_id"))
    return result
