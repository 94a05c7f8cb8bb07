"""``data``: generate or ingest raw records, or take the labelled window of served traffic;
validate them against the contract, split by time; profile a user's own table into the
contract's columns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import ConfigError, find_config, load_config
from .common import ConfigOption, LogUrl, console, errors, fail, load

app = typer.Typer(help="Generate, ingest, validate and split raw records.", no_args_is_help=True)

VALIDATED_DIR = Path("data/validated")
SPLIT_DIR = Path("data/split")


@app.command("generate")
def data_generate(
    out: Annotated[
        Path | None, typer.Option(help="Parquet file [default: data.source.path]")
    ] = None,
    rows: Annotated[
        int | None, typer.Option(min=1, help="Number of records [default: the pack's sample_rows]")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="[default: training.seed]")] = None,
    days: Annotated[int, typer.Option(min=1, help="Days the records span")] = 30,
    drift: Annotated[float, typer.Option(min=0.0, max=1.0, help="0 = reference world")] = 0.0,
    holdout: Annotated[
        int,
        typer.Option(
            min=0,
            help="Keep the latest N of the records out of training, in --holdout-out: the same "
            "world's future, for `traffic` to replay",
        ),
    ] = 0,
    holdout_out: Annotated[Path, typer.Option(help="File of the held-out records")] = Path(
        "data/live/records.parquet"
    ),
    config: ConfigOption = None,
) -> None:
    """Write the domain pack's realistic synthetic records (offline, deterministic for a seed)."""
    from ..data import synthetic
    from ..domain import pack_of

    cfg = load(config)
    target = cfg.path(out or cfg.data.source.path)
    if out is None and cfg.data.source.kind == "file":
        # The contract names the user's own data: generating would overwrite it.
        if not target.is_file():
            raise fail(f"data.source.kind is file and {target} does not exist (`data ingest`)")
        console.print(f"data.source.kind is file: {target} is the data, nothing generated")
        return
    target = _parquet_target(target, out)
    rows = rows or pack_of(cfg).sample_rows
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
            f"held out the latest {held:,} records -> {cfg.path(holdout_out)} "
            f"({kept:,} left for training)",
            highlight=False,
        )
    percent = 100 * summary.positives / max(summary.rows, 1)
    rate = summary.rows / max(summary.seconds, 1e-9)
    console.print(
        f"[green]generated[/green] {summary.rows:,} records ({percent:.1f} % "
        f"{cfg.problem.positive_class}) in {summary.seconds:.1f} s ({rate:,.0f}/s) -> {target}",
        highlight=False,
    )


def _parquet_target(target: Path, out: Path | None) -> Path:
    """Where a command that writes Parquet may write: never over a file of another format
    (``data profile --write`` can point data.source.path at the team's own CSV)."""
    where = "--out" if out is not None else "data.source.path"
    if target.suffix.lower() not in (".parquet", ".pq"):
        raise fail(f"{where} {target}: this writes Parquet; give a .parquet path (--out)")
    if target.is_file():
        with target.open("rb") as head:
            if head.read(4) != b"PAR1":
                raise fail(f"{where} {target}: exists and is not Parquet; not overwritten (--out)")
    return target


@app.command("ingest")
def data_ingest(
    source: Annotated[
        Path, typer.Argument(help="CSV / Parquet / JSONL file, or a source the domain pack reads")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Parquet file [default: data.source.path]")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv|tsv|parquet|jsonl or a pack's [default: detect]"),
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="CSV of record id or file -> label")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes parsing a pack's raw sources")] = 1,
    config: ConfigOption = None,
) -> None:
    """Read a labelled table (or the pack's sources) into the contract's schema; quarantine
    what breaks."""
    from ..data import ingest

    cfg = load(config)
    target = _parquet_target(cfg.path(out or cfg.data.source.path), out)
    if source.exists() and target.exists() and source.resolve() == target.resolve():
        raise fail(f"{source} is data.source.path: ingesting it there would overwrite it (--out)")
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


@app.command("window")
def data_window(
    out: Annotated[
        Path | None, typer.Option(help="Parquet file [default: data.source.path]")
    ] = None,
    days: Annotated[
        float | None, typer.Option(min=0.001, help="Days back from now [training.window_days]")
    ] = None,
    url: LogUrl = None,
    config: ConfigOption = None,
) -> None:
    """Write the most recent labelled window of served traffic (raw records kept by the server
    with serving.log_records, labelled by feedback, else as served) as raw training data."""
    from ..data import window

    cfg = load(config)
    target = _parquet_target(cfg.path(out or cfg.data.source.path), out)
    try:
        summary = window.run(cfg, target, days=days, url=url)
    except window.WindowError as exc:
        raise fail(str(exc), code=1) from exc
    console.print(f"{summary.line()} -> {target}", highlight=False)


@app.command("prune-records")
def data_prune_records(
    days: Annotated[
        float | None,
        typer.Option(min=0.001, help="Keep this many days [serving.records_retention_days]"),
    ] = None,
    url: LogUrl = None,
    config: ConfigOption = None,
) -> None:
    """Delete the raw records the server kept (serving.log_records) older than the retention;
    predictions and feedback stay. Run it on a schedule where raw records are kept."""
    from datetime import UTC, datetime, timedelta

    from ..predlog.store import PredictionLog, log_url

    cfg = load(config)
    keep = cfg.serving.records_retention_days if days is None else days
    before = datetime.now(UTC) - timedelta(days=keep)
    with PredictionLog(log_url(cfg, url)) as log:
        deleted = log.prune_records(before)
    console.print(
        f"deleted {deleted:,} raw records answered before {before:%Y-%m-%d %H:%M} UTC "
        f"(kept {keep:g} days)",
        highlight=False,
    )


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


@app.command("profile")
def data_profile(
    file: Annotated[Path, typer.Argument(help="CSV / TSV / Parquet / JSONL file")],
    write: Annotated[
        bool, typer.Option("--write", help="Put the proposal into the contract")
    ] = False,
    rows: Annotated[int, typer.Option(min=1, help="Read at most this many rows")] = 100_000,
    config: ConfigOption = None,
) -> None:
    """Propose the contract's data.columns (dtype, role, nulls, ranges, label) from a file.

    --write replaces data.columns, the problem's classes and data.source in the contract,
    keeping the rest of the file as it is, and only if the result is a valid contract.
    """
    from ..data import contract_write, profile

    try:
        sample = profile.read_sample(file, rows=rows)
        proposal = profile.propose(sample.frame)
    except profile.ProfileError as exc:
        raise fail(str(exc)) from exc
    console.print(sample.describe(file), highlight=False, markup=False)
    console.print(_proposal_table(proposal))
    if proposal.positive_class is not None:
        console.print(
            f"positive class {proposal.positive_class!r} ({proposal.positive_rate:.1%} of the "
            f"rows), negative {proposal.negative_class!r}",
            highlight=False,
            markup=False,
        )
    console.print("data:\n  columns:\n" + contract_write.columns_yaml(proposal), markup=False)
    config_path = find_config(config)
    try:
        current = load_config(config_path)
    except ConfigError:
        current = None
    for note in proposal.notes + _contract_notes(current, proposal):
        console.print(f"note: {note}", highlight=False, markup=False)
    if not write:
        return
    root = current.root if current else config_path.resolve().parent.parent
    source = contract_write.source_for(proposal, file, root, sample.needs_ingest)
    try:
        contract_write.write(
            config_path,
            proposal,
            source,
            note=f"From `data profile {file.name}` ({proposal.rows:,} rows)",
        )
    except contract_write.WriteError as exc:
        raise fail(str(exc), code=1) from exc
    console.print(
        f"[green]wrote[/green] {config_path}: data.columns ({len(proposal.specs)}), classes, "
        f"data.source {source.source_kind} {source.source_path}",
        highlight=False,
    )
    if source.next_step:
        console.print(f"next: {source.next_step}", highlight=False, markup=False)


def _proposal_table(proposal):
    from rich.table import Table

    table = Table("column", "dtype", "role", "nulls", "checks", "why")
    for column in proposal.columns:
        spec = column.spec
        if spec is None:
            table.add_row(column.source, "", "(left out)", "", "", column.reason)
            continue
        nulls = f"mostly {spec['mostly']:g}" if spec.get("nullable") else "none"
        checks = []
        if spec.get("unique"):
            checks.append("unique")
        if "allowed" in spec:
            checks.append("allowed " + ", ".join(map(str, spec["allowed"])))
        if "min" in spec or "max" in spec:
            checks.append(f"{spec.get('min', '')}..{spec.get('max', '')}")
        if "max_ahead_days" in spec:
            checks.append(f"<= {spec['max_ahead_days']} days ahead")
        name = (
            column.source if column.source == spec["name"] else f"{column.source} -> {spec['name']}"
        )
        table.add_row(
            *(
                _plain(v)
                for v in (
                    name,
                    spec["dtype"],
                    spec["role"],
                    nulls,
                    "; ".join(checks),
                    column.reason,
                )
            )
        )
    return table


def _plain(value: str):
    from rich.text import Text

    return Text(value)  # values from the file are not rich markup


def _contract_notes(cfg, proposal) -> list[str]:
    """What the rest of the contract will refuse about this data (it is not rewritten)."""
    if cfg is None:
        return []
    notes = []
    bounds, rate = cfg.data.positive_rate, proposal.positive_rate
    if rate is not None and not bounds.min <= rate <= bounds.max:
        notes.append(
            f"{rate:.1%} positive is outside data.positive_rate ({bounds.min:g}..{bounds.max:g}): "
            "validation will refuse the data until that range is changed"
        )
    if proposal.rows < cfg.data.min_rows:
        notes.append(
            f"{proposal.rows:,} rows is below data.min_rows ({cfg.data.min_rows:,}): validation "
            "will refuse the data"
        )
    if "timestamp" not in {spec["role"] for spec in proposal.specs}:
        notes.append(
            "no time column: the split will be a seeded random one stratified by label, with no "
            "entity history; time leakage cannot be ruled out (add a time column if there is one)"
        )
    return notes
