"""``data``: generate or ingest raw emails, validate them against the contract, split by time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import ConfigOption, console, errors, fail, load

app = typer.Typer(help="Generate, ingest, validate and split raw records.", no_args_is_help=True)

VALIDATED_DIR = Path("data/validated")
SPLIT_DIR = Path("data/split")


@app.command("generate")
def data_generate(
    out: Annotated[
        Path | None, typer.Option(help="Parquet file [default: data.source.path]")
    ] = None,
    rows: Annotated[int, typer.Option(min=1, help="Number of emails")] = 20_000,
    seed: Annotated[int | None, typer.Option(help="[default: training.seed]")] = None,
    days: Annotated[int, typer.Option(min=1, help="Days the emails span")] = 30,
    drift: Annotated[float, typer.Option(min=0.0, max=1.0, help="0 = reference world")] = 0.0,
    holdout: Annotated[
        int,
        typer.Option(
            min=0,
            help="Keep the latest N of the emails out of training, in --holdout-out: the same "
            "world's future, for `traffic` to replay",
        ),
    ] = 0,
    holdout_out: Annotated[Path, typer.Option(help="File of the held-out emails")] = Path(
        "data/live/emails.parquet"
    ),
    config: ConfigOption = None,
) -> None:
    """Write a realistic synthetic email corpus (offline, deterministic for a seed)."""
    from ..data import synthetic

    cfg = load(config)
    target = cfg.path(out or cfg.data.source.path)
    if holdout >= rows:
        raise fail(f"--holdout {holdout} must be smaller than --rows {rows}")
    try:
        summary = synthetic.run(
            cfg,
            target,
            rows=rows,
            seed=cfg.training.seed if seed is None else seed,
            days=days,
            drift=drift,
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if holdout:
        kept, held = synthetic.hold_out(cfg, target, cfg.path(holdout_out), holdout)
        console.print(
            f"held out the latest {held:,} emails -> {cfg.path(holdout_out)} "
            f"({kept:,} left for training)",
            highlight=False,
        )
    percent = 100 * summary.positives / max(summary.rows, 1)
    rate = summary.rows / max(summary.seconds, 1e-9)
    console.print(
        f"[green]generated[/green] {summary.rows:,} emails ({percent:.1f} % "
        f"{cfg.problem.positive_class}) in {summary.seconds:.1f} s ({rate:,.0f}/s) -> {target}",
        highlight=False,
    )


@app.command("ingest")
def data_ingest(
    source: Annotated[Path, typer.Argument(help="CSV / Parquet / JSONL file, .eml tree or mbox")],
    out: Annotated[
        Path | None, typer.Option(help="Parquet file [default: data.source.path]")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv|parquet|jsonl|eml|mbox [default: detect]")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="CSV of message_id or file -> label")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes parsing raw mail")] = 1,
    config: ConfigOption = None,
) -> None:
    """Read real mail or a labelled table into the contract's schema; quarantine what breaks."""
    from ..data import ingest

    cfg = load(config)
    target = cfg.path(out or cfg.data.source.path)
    try:
        result = ingest.run(cfg, source, target, fmt=fmt, labels_file=labels, workers=workers)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc
    counts = result.counts
    console.print(f"{counts.summary()} -> {target}", highlight=False)
    for note in result.notes:
        console.print(f"  note: {note}", highlight=False)
    for entry in result.skipped[:20]:
        console.print(
            f"  skipped {entry.path}: {entry.reason} {entry.detail}".rstrip(),
            highlight=False,
            markup=False,
        )
    if len(result.skipped) > 20:
        console.print(f"  ... and {len(result.skipped) - 20:,} more skipped", highlight=False)
    if counts.quarantined:
        console.print(f"quarantine: {ingest.quarantine_path(target)}", highlight=False)
    if not counts.ingested:
        raise fail(f"nothing ingested from {source}", code=1)


@app.command("validate")
def data_validate(
    path: Annotated[
        Path | None, typer.Argument(help="Parquet file [default: data.source.path]")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the validated data and reports")] = (
        VALIDATED_DIR
    ),
    docs: Annotated[bool, typer.Option(help="Write Great Expectations data docs")] = True,
    config: ConfigOption = None,
) -> None:
    """Check the data against the contract with Great Expectations; exit 1 when it is refused.

    Rows failing a row check are quarantined; up to data.max_quarantine_share of them, the valid
    rest is kept and the command succeeds (as the pipeline's check-data does).
    """
    from ..data import validate

    cfg = load(config)
    source = cfg.path(path or cfg.data.source.path)
    if not source.is_file():
        raise fail(f"{source}: no such file (run `data generate` or `data ingest` first)")
    out_dir = cfg.path(out)
    try:
        report = validate.run(cfg, source, out_dir, docs=docs)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    decision = validate.decide(report)
    console.print(report.summary(), highlight=False)
    for failure in report.failures:
        errors.print(f"  FAILED {failure.line()}", highlight=False, markup=False)
    for failure in report.remainder_failures:
        errors.print(f"  FAILED after quarantine {failure.line()}", highlight=False, markup=False)
    console.print(f"report: {out_dir / 'report.json'}", highlight=False)
    if report.docs_path:
        console.print(f"data docs: {report.docs_path}", highlight=False)
    if report.quarantine_path:
        console.print(f"quarantine: {report.quarantine_path}", highlight=False)
    if report.validated_path and decision.status == validate.PARTIAL:
        console.print(f"valid remainder: {report.validated_path}", highlight=False)
    if not decision.proceed:
        raise typer.Exit(1)


@app.command("split")
def data_split(
    path: Annotated[Path, typer.Argument(help="Validated Parquet file")] = (
        VALIDATED_DIR / "validated.parquet"
    ),
    out: Annotated[Path, typer.Option(help="Folder for train / validation / test")] = SPLIT_DIR,
    config: ConfigOption = None,
) -> None:
    """Split by received time into train / validation / test, never shuffling across time."""
    from ..data import split

    cfg = load(config)
    source = cfg.path(path)
    if not source.is_file():
        raise fail(f"{source}: no such file (run `data validate` first)")
    try:
        result = split.run(cfg, source, cfg.path(out))
    except ValueError as exc:
        raise fail(str(exc)) from exc
    console.print(result.summary(), highlight=False)
    console.print(f"summary: {result.summary_path}", highlight=False)
