"""``features``, ``baseline``, ``tune``, ``evaluate``, ``promote``: from split data to a champion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import GATE_REJECTED, NO_CHAMPION, ConfigOption, console, errors, fail, load

features_app = typer.Typer(help="Attach point-in-time entity history and fill the entity store.")

SPLIT_DIR = Path("data/split")
FEATURES_DIR = Path("data/features")
BASELINE_DIR = Path("artifacts/baseline")
CANDIDATE_DIR = Path("artifacts/candidate")
EVALUATION_DIR = Path("reports/evaluation")

FeaturesDir = Annotated[
    Path, typer.Option("--features-dir", help="Splits with entity history (`features build`)")
]


def _split_file(cfg, folder: Path, name: str) -> Path:
    path = cfg.path(folder) / f"{name}.parquet"
    if not path.is_file():
        raise fail(f"{path}: no such file (run `features build` first)")
    return path


@features_app.command("build")
def features_build(
    split_dir: Annotated[Path, typer.Option(help="Output of `data split`")] = SPLIT_DIR,
    out: Annotated[Path, typer.Option(help="Folder for the splits with history")] = FEATURES_DIR,
    config: ConfigOption = None,
) -> None:
    """Add point-in-time entity history to each split and materialize the serving store."""
    from ..features import build

    cfg = load(config)
    for name in ("train", "validation", "test"):
        if not (cfg.path(split_dir) / f"{name}.parquet").is_file():
            raise fail(f"{cfg.path(split_dir)}: no {name}.parquet (run `data split` first)")
    try:
        result = build.run(cfg, cfg.path(split_dir), cfg.path(out))
    except ValueError as exc:
        raise fail(str(exc)) from exc
    console.print(result.summary(), highlight=False)


def baseline(
    features_dir: FeaturesDir = FEATURES_DIR,
    out: Annotated[Path, typer.Option(help="Bundle folder")] = BASELINE_DIR,
    config: ConfigOption = None,
) -> None:
    """Train the baseline: a logistic regression on the contract's roles (TF-IDF on text)."""
    from ..models import baseline as floor

    cfg = load(config)
    result = floor.run(cfg, _split_file(cfg, features_dir, "train"), cfg.path(out))
    console.print(result.summary(), highlight=False)


def tune(
    features_dir: FeaturesDir = FEATURES_DIR,
    out: Annotated[Path, typer.Option(help="Bundle folder")] = CANDIDATE_DIR,
    trials: Annotated[
        int | None, typer.Option(min=1, help="[default: training.optuna.trials]")
    ] = None,
    timeout: Annotated[
        int | None, typer.Option(min=1, help="Seconds [default: training.optuna.timeout_s]")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Tune the contract's estimator (training.model) with Optuna and save the best model."""
    from ..models import tune as tuning

    cfg = load(config)
    result = tuning.run(
        cfg,
        _split_file(cfg, features_dir, "train"),
        _split_file(cfg, features_dir, "validation"),
        cfg.path(out),
        trials=trials,
        timeout_s=timeout,
    )
    console.print(result.summary(), highlight=False)


def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder")] = CANDIDATE_DIR,
    baseline: Annotated[
        Path | None, typer.Option(help="Baseline bundle to compare with")
    ] = BASELINE_DIR,
    features_dir: FeaturesDir = FEATURES_DIR,
    out: Annotated[Path, typer.Option(help="Folder for the report")] = EVALUATION_DIR,
    config: ConfigOption = None,
) -> None:
    """Choose the threshold on validation, measure the held-out test set against the contract."""
    from ..models import evaluate as evaluation

    cfg = load(config)
    baseline_dir = cfg.path(baseline) if baseline else None
    if baseline_dir is not None and not baseline_dir.is_dir():
        baseline_dir = None
    if not cfg.path(bundle).is_dir():
        raise fail(f"{cfg.path(bundle)}: no bundle (run `tune` or `baseline` first)")
    result = evaluation.run(
        cfg,
        cfg.path(bundle),
        _split_file(cfg, features_dir, "validation"),
        _split_file(cfg, features_dir, "test"),
        cfg.path(out),
        baseline_dir=baseline_dir,
        history=_split_file(cfg, features_dir, "train"),
    )
    console.print(_metrics_table(cfg, result))
    verdict = "meets" if result.meets_contract else "does NOT meet"
    console.print(f"{result.bundle_dir.name} {verdict} the contract", highlight=False)
    for reason in result.contract_reasons:
        console.print(f"  - {reason}", highlight=False)
    if not cfg.data.timestamp:
        from ..models.evaluate import split_note

        console.print(f"split: {split_note(cfg)}", highlight=False)
    console.print(f"report: {result.evaluation_path}; model card: {result.model_card_path}")


def _metrics_table(cfg, result):
    from rich.table import Table

    offline = cfg.metrics.offline
    table = Table(title="Held-out test set, threshold chosen on validation")
    for column in ("model", "threshold", "precision", "recall", "F1", "ROC-AUC", "PR-AUC"):
        table.add_column(column, justify="left" if column == "model" else "right")

    def row(name: str, threshold: float, m: dict) -> None:
        keys = ("precision", "recall", "f1", "roc_auc", "pr_auc")
        values = [f"{m[k]:.4f}" if m.get(k) is not None else "-" for k in keys]
        table.add_row(name, f"{threshold:.4f}", *values)

    if result.baseline:
        base = result.baseline
        row("baseline", base["threshold"]["threshold"], base["test"])
    row(result.bundle_dir.name, result.choice.threshold, result.test)
    table.add_row(
        "target",
        "",
        f">= {offline.target_precision:g}",
        f">= {offline.target_recall:g}",
        "",
        "",
        "",
    )
    return table


def promote(
    bundle: Annotated[Path, typer.Argument(help="Evaluated bundle to register")] = CANDIDATE_DIR,
    version: Annotated[
        int | None, typer.Option(help="Gate an already registered version instead")
    ] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Move champion back to the previous version")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help=f"Exit {GATE_REJECTED} when the gate rejects the candidate (make train uses it)",
        ),
    ] = False,
    features_dir: FeaturesDir = FEATURES_DIR,
    evaluation_dir: Annotated[Path, typer.Option(help="Output of `evaluate`")] = EVALUATION_DIR,
    config: ConfigOption = None,
) -> None:
    """Register the candidate and gate it: champion, challenger or rejected, with reasons."""
    import pandas as pd

    from ..models import registry

    cfg = load(config)
    if rollback:
        try:
            result = registry.rollback(cfg)
        except registry.RegistryError as exc:
            raise fail(str(exc), code=1) from exc
        console.print(
            f"champion is version {result.version} again (was version {result.replaced})",
            highlight=False,
        )
        return
    evaluation_file = cfg.path(evaluation_dir) / "evaluation.json"
    if not evaluation_file.is_file():
        raise fail(f"{evaluation_file}: no such file (run `evaluate` first)")
    try:
        evaluation = json.loads(evaluation_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"{evaluation_file}: not the JSON `evaluate` writes ({exc})", code=1) from exc
    baseline_metrics = (evaluation.get("baseline") or {}).get("test", {})
    if version is None:
        if not cfg.path(bundle).is_dir():
            raise fail(f"{cfg.path(bundle)}: no bundle (run `tune` and `evaluate` first)")
        info = registry.register_bundle(cfg, cfg.path(bundle))
        console.print(f"registered {info.uri}", highlight=False)
        version = info.version
    test_df = pd.read_parquet(_split_file(cfg, features_dir, "test"))
    decision = registry.promote(cfg, version, test_df, baseline_metrics=baseline_metrics)
    head, *checks = decision.summary()
    console.print(head, highlight=False)
    for line in checks:
        (console if line.startswith("ok") else errors).print(f"  {line}", highlight=False)
    if decision.outcome == "rejected":
        rejected = f"the gate rejected version {version}: {'; '.join(decision.reasons)}"
        if strict:
            raise fail(rejected, code=GATE_REJECTED)
        if not registry.has_champion(cfg):
            raise fail(f"{rejected}; {NO_CHAMPION}", code=GATE_REJECTED)
        errors.print("going on without --strict: the current champion stays")
