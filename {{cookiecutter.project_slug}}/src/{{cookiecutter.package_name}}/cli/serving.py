"""``serve`` (the BentoML server) and ``feedback`` (user labels into the prediction log)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import ConfigOption, LogUrl, console, fail, load

PACKAGE = __name__.split(".", 1)[0]
SERVICE = f"{PACKAGE}.serving.service:Classifier"
QUARANTINE_DIR = Path("data/quarantine/feedback")


def _check_model(cfg) -> None:
    """Exit 2 with the way out when the model to serve is not in the registry."""
    from ..models import registry
    from ..serving.loading import MODEL_ALIAS_ENV, MODEL_VERSION_ENV

    ref = os.environ.get(MODEL_VERSION_ENV) or os.environ.get(MODEL_ALIAS_ENV) or "champion"
    try:
        registry.get_version(cfg, ref)
    except registry.RegistryError as exc:
        raise fail(
            f"cannot serve: {exc}\nA model gets the 'champion' alias from `make train` (or "
            "`promote`); see README, Serving."
        ) from exc


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 3000,
    routing: Annotated[
        str | None,
        typer.Option(help="single | shadow | canary [default: serving.routing]"),
    ] = None,
    canary_percent: Annotated[
        float | None,
        typer.Option(min=0, max=100, help="[default: serving.canary_percent]"),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes")] = 1,
    check: Annotated[
        bool, typer.Option(help="Check the registry has the model before starting")
    ] = True,
    config: ConfigOption = None,
) -> None:
    """Serve the champion over HTTP with BentoML (replaces this process with `bentoml serve`)."""
    from ..config import find_config
    from ..serving import WORKERS_ENV
    from ..serving.routing import CANARY_ENV, MODES, ROUTING_ENV

    cfg = load(config)
    env = dict(os.environ)
    env["SYSTEM_CONFIG"] = str(find_config(config).resolve())
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    if routing is not None:
        if routing not in MODES:
            raise fail(f"--routing {routing!r}: expected one of {', '.join(MODES)}")
        env[ROUTING_ENV] = routing
    if canary_percent is not None:
        env[CANARY_ENV] = str(canary_percent)
    env[WORKERS_ENV] = str(workers)
    if check:
        _check_model(cfg)
    args = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]
    console.print(f"serving {SERVICE} on http://{host}:{port}", highlight=False)
    sys.stdout.flush()
    # exec: the server becomes this process, so a container's stop signal reaches it directly.
    os.execve(sys.executable, args, env)


def feedback(
    file: Annotated[Path, typer.Argument(help="CSV, JSONL, JSON or Parquet of user labels")],
    quarantine: Annotated[
        Path, typer.Option(help="Folder for rejected rows (with a reason column)")
    ] = QUARANTINE_DIR,
    log_url: LogUrl = None,
    config: ConfigOption = None,
) -> None:
    """Ingest user labels (reports, rescues) keyed by request id or record id."""
    from ..predlog.feedback import FeedbackFileError, ingest_feedback
    from ..predlog.store import PredictionLog
    from ..predlog.store import log_url as resolve_url

    cfg = load(config)
    log = PredictionLog(resolve_url(cfg, log_url))
    try:
        result = ingest_feedback(cfg, file, log, quarantine_dir=cfg.path(quarantine))
    except FeedbackFileError as exc:
        raise fail(str(exc)) from exc
    finally:
        log.close()
    console.print(result.summary(), highlight=False)


def traffic(
    records: Annotated[
        Path | None,
        typer.Option(help="Labelled records to replay [default: data/live/records.parquet]"),
    ] = None,
    generate: Annotated[
        int | None, typer.Option(min=1, help="Generate this many records instead (see --drift)")
    ] = None,
    drift: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Drift of generated records")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of generated records and of the users")] = 1,
    url: Annotated[
        str | None,
        typer.Option(help="Send to a running server (http://127.0.0.1:3000) [default: in-process]"),
    ] = None,
    routing: Annotated[
        str | None, typer.Option(help="In-process routing: single | shadow | canary")
    ] = None,
    rescue_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of flagged negatives rescued")
    ] = 0.5,
    report_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of missed positives reported")
    ] = 0.3,
    audit_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of requests an auditor labels")
    ] = 0.05,
    feedback_out: Annotated[Path, typer.Option(help="Feedback file written and ingested")] = Path(
        "data/live/feedback.csv"
    ),
    config: ConfigOption = None,
) -> None:
    """Replay labelled records through the model (in-process or over HTTP) and ingest the feedback
    simulated users give: the traffic `monitor` and `compare` read."""
    import pandas as pd

    from ..serving import traffic as stage
    from ..serving.replay import FeedbackPlan
    from ..serving.routing import MODES

    cfg = load(config)
    if url is None and routing is not None and routing not in MODES:
        raise fail(f"--routing {routing!r}: expected one of {', '.join(MODES)}")
    if generate:
        from ..data import synthetic

        frame = synthetic.generate(
            cfg,
            generate,
            seed,
            days=max(1, generate // 20_000),
            start=stage.start_after(cfg),
            drift=drift,
        )
    else:
        path = cfg.path(records or stage.LIVE_RECORDS)
        if not path.is_file():
            raise fail(
                f"{path}: no such file. Hold out records at generation (`data generate "
                "--holdout N`), pass --records FILE, or --generate N"
            )
        frame = pd.read_parquet(path)
    if url is None:
        _check_model(cfg)
    plan = FeedbackPlan(rescue_rate, report_rate, audit_share, seed)
    result = stage.run(cfg, frame, plan=plan, feedback_out=feedback_out, url=url, routing=routing)
    console.print(result.summary(), highlight=False)


def predict(
    file: Annotated[Path, typer.Argument(help="Records to score: Parquet, CSV or JSON lines")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Predictions file (.parquet, .csv or .jsonl); the quarantine "
            "and report go beside it",
        ),
    ],
    chunk_rows: Annotated[int, typer.Option(min=1, help="Records scored at once")] = 10_000,
    log_writer: Annotated[
        str,
        typer.Option(
            help="Who commits the prediction log: process (a second process, while the next "
            "chunk is scored), inline (in turn with the scoring), or auto (process for a file "
            "of more than one chunk on more than one core)"
        ),
    ] = "auto",
    log_url: LogUrl = None,
    config: ConfigOption = None,
) -> None:
    """Score a file of records with the champion (batch serving): the contract's checks and
    quarantine, the entity history, every prediction in the prediction log."""
    from ..serving import batch
    from ..serving.logwriter import LogWriterError

    if log_writer not in batch.LOG_WRITERS:
        raise fail(f"--log-writer {log_writer!r}: expected one of {', '.join(batch.LOG_WRITERS)}")
    cfg = load(config)
    if not file.is_file():
        raise fail(f"{file}: no such file")
    suffixes = (".parquet", ".pq", ".csv", ".jsonl", ".ndjson")
    if out.suffix.lower() not in suffixes:
        raise fail(
            f"--out {out}: unknown format '{out.suffix}' (expected .parquet, .csv or .jsonl)"
        )
    _check_model(cfg)
    env = dict(os.environ)
    if log_url:
        env["PREDICTION_LOG_URL"] = log_url
    try:
        result = batch.run(
            cfg, file, out, env=env, chunk_rows=chunk_rows, progress=True, log_writer=log_writer
        )
    except batch.BatchRefused as exc:
        for failure in exc.report.failures:
            console.print(f"  {failure.line()}", highlight=False)
        raise fail(f"nothing scored: {exc}", code=1) from exc
    except ValueError as exc:  # an unreadable file
        raise fail(str(exc)) from exc
    except LogWriterError as exc:
        raise fail(f"{exc}; scoring the file again resumes after what is logged", code=1) from exc
    for note in result.notes:
        console.print(note, highlight=False)
    console.print(
        f"scored {result.scored:,} of {result.rows:,} records with {result.model_name} "
        f"v{result.model_version} ({result.positives:,} {cfg.problem.positive_class}); "
        f"{result.from_log:,} already in the log, {result.quarantined:,} quarantined; "
        f"{result.records_per_s:,.0f} records/s scoring, {result.overall_per_s:,.0f} records/s "
        f"overall ({result.seconds:.1f} s) -> {result.output}",
        highlight=False,
    )
