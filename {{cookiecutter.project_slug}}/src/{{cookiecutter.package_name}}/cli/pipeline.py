"""``pipeline``: run the Kubeflow pipeline locally, compile it, submit it, schedule it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import GATE_REJECTED, NO_CHAMPION, ConfigOption, console, errors, fail, load

app = typer.Typer(
    help="The training pipeline on Kubeflow Pipelines: run locally, compile, submit, schedule.",
    no_args_is_help=True,
)

Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="Pipeline parameter key=value, repeatable: data_source (generate or a path), rows, "
        "or data_uri (an object-store URI, imported as a Dataset), trials, timeout_s, mlflow_tracking_uri, promotion_margin, promote_to (champion or "
        "challenger), config_path",
    ),
]
Host = Annotated[str, typer.Option(help="Kubeflow Pipelines endpoint, e.g. http://localhost:8080")]
Experiment = Annotated[
    str | None, typer.Option(help="Kubeflow experiment [default: training.mlflow.experiment]")
]
Package = Annotated[
    Path | None,
    typer.Option(help="A compiled pipeline YAML to send [default: compile now]"),
]
Namespace = Annotated[
    str | None, typer.Option(help="Kubeflow profile namespace (multi-user installs)")
]
Image = Annotated[
    str | None, typer.Option(help="Step image [default: platform.image:<project version>]")
]
Token = Annotated[
    str | None,
    typer.Option(
        envvar="KF_PIPELINES_TOKEN",
        help="Bearer token for a multi-user install [default: the service-account token file "
        "at $KF_PIPELINES_SA_TOKEN_PATH, if set]",
        show_envvar=True,
    ),
]


def _arguments(params: list[str] | None, **shortcuts) -> dict:
    from ..pipeline.run import parse_params

    try:
        arguments = parse_params(params)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    arguments.update({k: v for k, v in shortcuts.items() if v is not None})
    return arguments


def _config_file(config: Path | None) -> Path:
    from ..config import find_config

    return find_config(config).resolve()


@app.command("run")
def run(
    local: Annotated[
        bool, typer.Option("--local", help="Run on this machine with kfp.local, a process per task")
    ] = False,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="Walk the same steps in this process over the project's folders, from the "
            "contract's data.source.path (what make train runs)",
        ),
    ] = False,
    start: Annotated[
        str | None, typer.Option("--from", help="--in-process: first step [default: validate-data]")
    ] = None,
    stop: Annotated[
        str | None, typer.Option("--to", help="--in-process: last step [default: all]")
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help=f"--in-process: exit {GATE_REJECTED} when the gate fails or the registry "
            "rejects the candidate (make train uses it)",
        ),
    ] = False,
    rows: Annotated[
        int | None, typer.Option(min=1, help="Generated records [default: the pack's sample_rows]")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(min=1, help="Optuna trials [default: training.optuna.trials]")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="'generate' or a file or folder to ingest (a pack's sources too)"),
    ] = None,
    params: Params = None,
    output: Annotated[
        Path | None, typer.Option(help="Pipeline root [default: artifacts/pipeline]")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Stream every task's log here")
    ] = False,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="--local: the batch-scoring pipeline instead, scoring the records at "
            "-p data_uri=URI with the champion",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Run the pipeline on this machine and print a table of its tasks."""
    from ..pipeline import run as runner
    from ..pipeline import summary

    if local == in_process:
        raise fail(
            "choose one: --local (kfp.local) or --in-process (this process, the project's "
            "folders); `pipeline submit --host URL` runs it on a cluster"
        )
    cfg = load(config)
    if batch and (in_process or rows is not None or trials is not None or source is not None):
        raise fail(
            "--batch scores the records at -p data_uri=URI with the champion under --local: "
            "--in-process, --rows, --trials and --source belong to the training pipeline"
        )
    if in_process:
        if rows is not None or source is not None or output is not None:
            raise fail(
                "--rows, --source and --output belong to --local: the in-process walk reads "
                "the contract's data.source.path and writes to the project's folders"
            )
        _walk(cfg, config, params, trials, start, stop, strict)
        return
    if start or stop or strict:
        raise fail("--from, --to and --strict go with --in-process")
    if batch:
        _run_batch(cfg, config, params, output, verbose)
        return
    arguments = _arguments(params, rows=rows, trials=trials, data_source=source)
    try:
        arguments = runner.check_arguments(arguments)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    errors.print("Running the pipeline locally (kfp.local, one process per task)...")
    result = runner.run_local(
        cfg,
        _config_file(config),
        arguments=arguments,
        pipeline_root=cfg.path(output) if output else None,
        verbose=verbose,
    )
    console.print(summary.task_table(result))
    for line in summary.where_outputs(result, cfg):
        console.print(line, highlight=False)
    if result.log_path:
        console.print(f"task logs: {result.log_path}", highlight=False)
    if not result.succeeded:
        task = result.failed_task or "a task"
        raise fail(f"the pipeline failed at {task}: {result.error}", code=1)
    record = result.record("evaluate-model") or {}
    if record.get("metrics", {}).get("gate") == "failed":
        console.print("[yellow]gate failed: the candidate was not promoted (see above)[/yellow]")


def _run_batch(cfg, config, params, output, verbose: bool) -> None:
    from ..pipeline import run as runner
    from ..pipeline import summary

    try:
        arguments = runner.batch_arguments(_arguments(params))
    except ValueError as exc:
        raise fail(str(exc)) from exc
    errors.print("Running the batch-scoring pipeline locally (kfp.local)...")
    result = runner.run_local(
        cfg,
        _config_file(config),
        arguments=arguments,
        pipeline_root=cfg.path(output) if output else None,
        verbose=verbose,
        batch=True,
    )
    console.print(summary.task_table(result, ("score-batch",)))
    if result.log_path:
        console.print(f"task logs: {result.log_path}", highlight=False)
    if not result.succeeded:
        raise fail(f"the pipeline failed at score-batch: {result.error}", code=1)
    record = result.record("score-batch") or {}
    predictions = record.get("outputs", {}).get("predictions")
    console.print(f"predictions: {predictions}", highlight=False)


def _walk(cfg, config, params, trials, start, stop, strict: bool) -> None:
    from ..pipeline import run as runner
    from ..pipeline import summary, walk

    arguments = _arguments(params, trials=trials)
    try:
        arguments = runner.check_arguments(arguments)
        if {"data_source", "rows", "data_uri"} & set(arguments):
            raise ValueError(
                "data_source, rows and data_uri choose get-data's records: with "
                "--in-process the records are the contract's data.source.path"
            )
        result = walk.walk(
            cfg,
            _config_file(config),
            start=start,
            stop=stop,
            arguments=arguments,
            announce=lambda line: console.print(line, style="bold", highlight=False, markup=False),
        )
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    console.print(summary.task_table(result, result.tasks))
    console.print(f"task journal: {result.journal_path}", highlight=False)
    if not result.succeeded:
        raise fail(f"the pipeline failed at {result.failed_task or 'a step'}: {result.error}", 1)
    for reason in result.rejections:
        if strict:
            raise fail(f"not promoted: {reason}", code=GATE_REJECTED)
        console.print(f"[yellow]not promoted: {reason}[/yellow]", highlight=False)
    if result.rejections and not _has_champion(cfg):
        raise fail(NO_CHAMPION, code=GATE_REJECTED)


def _has_champion(cfg) -> bool:
    from ..models import registry

    return registry.has_champion(cfg)


@app.command("compile")
def compile_(
    out: Annotated[
        Path | None, typer.Option(help="YAML file [default: deploy/kubeflow/pipeline.yaml]")
    ] = None,
    image: Image = None,
    imported: Annotated[
        bool,
        typer.Option(
            "--imported",
            help="The variant whose data is the object at the data_uri parameter (an importer) "
            "[default file: deploy/kubeflow/pipeline-imported.yaml]",
        ),
    ] = False,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="The batch-scoring pipeline (data_uri in, predictions out) "
            "[default file: deploy/kubeflow/pipeline-batch.yaml]",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Write the pipeline spec for Kubeflow Pipelines (generated, not committed)."""
    from ..pipeline import run as runner
    from ..pipeline.pipeline import default_image

    cfg = load(config)
    if batch and imported:
        raise fail("--batch and --imported are two pipelines: choose one")
    path = runner.compile_pipeline(
        cfg, cfg.path(out) if out else None, image=image, imported=imported, batch=batch
    )
    console.print(f"compiled {path} (image {image or default_image(cfg)})", highlight=False)


@app.command("submit")
def submit(
    host: Host,
    experiment: Experiment = None,
    params: Params = None,
    run_name: Annotated[str | None, typer.Option(help="[default: <pipeline>-<time>]")] = None,
    package: Package = None,
    namespace: Namespace = None,
    image: Image = None,
    token: Token = None,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch", help="The batch-scoring pipeline: -p data_uri=URI of the records to score"
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Start one run on a Kubeflow Pipelines endpoint (compiles the pipeline first)."""
    from ..pipeline import run as runner

    cfg = load(config)
    arguments = _arguments(params)
    try:
        result = runner.submit(
            cfg,
            host,
            arguments=arguments,
            experiment=experiment,
            run_name=run_name,
            namespace=namespace,
            package_path=package,
            image=image,
            token=token,
            batch=batch,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:  # connection refused, authentication, API errors: say which
        raise fail(f"could not submit to {host}: {exc}", code=1) from exc
    console.print(f"submitted run {getattr(result, 'run_id', result)} to {host}", highlight=False)


@app.command("schedule")
def schedule(
    host: Host,
    experiment: Experiment = None,
    params: Params = None,
    package: Package = None,
    namespace: Namespace = None,
    image: Image = None,
    token: Token = None,
    replace: Annotated[
        bool, typer.Option(help="Replace a recurring run of the same name instead of refusing")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create the recurring retraining run (training.schedule, six-field cron, UTC); refuses
    when it exists already unless --replace."""
    from ..pipeline import run as runner

    cfg = load(config)
    arguments = _arguments(params)
    try:
        result = runner.schedule(
            cfg,
            host,
            arguments=arguments,
            experiment=experiment,
            namespace=namespace,
            package_path=package,
            image=image,
            token=token,
            replace=replace,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:
        raise fail(f"could not schedule on {host}: {exc}", code=1) from exc
    recurring = getattr(result, "recurring_run_id", None) or result
    console.print(
        f"scheduled {cfg.training.schedule} retraining ({cfg.training.schedule_cron}): "
        f"recurring run {recurring}",
        highlight=False,
    )
