"""Run the pipeline on this machine, compile it, submit it to Kubeflow Pipelines, schedule it.

Local runs use ``kfp.local`` with the subprocess runner in the current environment
(``use_venv=False``: a venv per task would pip-install kfp, which needs the network). Each task
runs in its own Python process, exactly the function body a cluster pod would run.
``submit`` and ``schedule`` need a Kubeflow Pipelines endpoint; the client is injectable.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..config import SystemConfig
from ..stores import LOCAL_RUN_ENV
from . import steps
from .pipeline import (
    DATA_URI,
    batch_pipeline_name,
    build_batch_pipeline,
    build_pipeline,
    default_arguments,
    pipeline_name,
)
from .steps import WINDOW_SOURCE

LOCAL_ROOT = Path("artifacts/pipeline")
DEFAULT_PACKAGE = Path("deploy/kubeflow/pipeline.yaml")
PARAMETER_TYPES: dict[str, type] = {
    "config_path": str,
    "data_source": str,
    "rows": int,
    "trials": int,
    "timeout_s": int,
    "mlflow_tracking_uri": str,
    "promotion_margin": float,
    "promote_to": str,
    # The imported-data variant's source: an object-store URI (s3://, minio://, gs://).
    DATA_URI: str,
}
BATCH_PARAMETERS = ("config_path", DATA_URI, "mlflow_tracking_uri")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp's lines worth showing while a run goes on; everything goes to the log file.
_PROGRESS = re.compile(r"Executing task|finished with status|Inner task failed")


# ---------------------------------------------------------------------------------------------
# Parameters


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["rows=5000", "trials=3"]`` -> ``{"rows": 5000, "trials": 3}``, typed per parameter."""
    arguments: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"{pair!r}: expected key=value")
        arguments[key] = value.strip()
    return check_arguments(arguments)


def check_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments converted to their parameter types; an unknown name is an error."""
    unknown = sorted(set(arguments) - set(PARAMETER_TYPES))
    if unknown:
        raise ValueError(
            f"unknown pipeline parameter(s): {', '.join(unknown)}; "
            f"known: {', '.join(PARAMETER_TYPES)}"
        )
    typed = {}
    for key, value in arguments.items():
        kind = PARAMETER_TYPES[key]
        try:
            typed[key] = kind(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key}={value!r}: expected {kind.__name__}") from exc
    for key in ("rows", "trials", "timeout_s"):
        if key in typed and typed[key] < 1:
            raise ValueError(f"{key} must be at least 1, got {typed[key]}")
    if typed.get("promote_to", "champion") not in ("champion", "challenger"):
        raise ValueError(f"promote_to must be champion or challenger, got {typed['promote_to']!r}")
    if DATA_URI in typed:
        clash = sorted({"data_source", "rows"} & set(typed))
        if clash:
            raise ValueError(f"{DATA_URI} replaces {' and '.join(clash)}: give one or the other")
        if not typed[DATA_URI].strip():
            raise ValueError(f"{DATA_URI} is empty: give the data's object-store URI")
    return typed


def batch_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """The batch-scoring pipeline's arguments: a ``data_uri`` and nothing that trains."""
    arguments = check_arguments(arguments)
    if not arguments.get(DATA_URI):
        raise ValueError(f"the batch-scoring pipeline needs {DATA_URI}=<URI of the records>")
    extra = sorted(set(arguments) - set(BATCH_PARAMETERS))
    if extra:
        raise ValueError(
            f"the batch-scoring pipeline takes {', '.join(BATCH_PARAMETERS)}; not {', '.join(extra)}"
        )
    return arguments


def imported(arguments: dict[str, Any] | None) -> bool:
    """Do the arguments select the imported-data variant (a ``data_uri``)?"""
    return bool((arguments or {}).get(DATA_URI))


# ---------------------------------------------------------------------------------------------
# Local run


@dataclass
class LocalRun:
    """What a local run did: per-task journal records, where the outputs are, how long."""

    succeeded: bool
    seconds: float
    records: list[dict]
    journal_path: Path
    pipeline_root: Path
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log_path: Path | None = None

    def record(self, task: str) -> dict | None:
        """The journal record of ``task``, or None when it did not run."""
        found = [r for r in self.records if r["task"] == task]
        return found[-1] if found else None

    def ran(self, task: str) -> bool:
        """Did ``task`` run to success?"""
        record = self.record(task)
        return record is not None and record.get("status") == "succeeded"

    @property
    def failed_task(self) -> str | None:
        failed = [r["task"] for r in self.records if r.get("status") == "failed"]
        return failed[0] if failed else None

    @property
    def run_dir(self) -> Path | None:
        """This run's folder under the pipeline root (kfp names it after pipeline and time)."""
        for record in self.records:
            for value in record.get("outputs", {}).values():
                try:
                    relative = Path(value).resolve().relative_to(self.pipeline_root)
                except ValueError:
                    continue
                return self.pipeline_root / relative.parts[0]
        return None

    def output(self, task: str, name: str) -> Path | None:
        record = self.record(task)
        value = (record or {}).get("outputs", {}).get(name)
        return Path(value) if value else None


class _Progress(io.TextIOBase):
    """Everything to the log file; kfp's task start / finish lines also to ``echo``."""

    def __init__(self, log: TextIO, echo: TextIO | None):
        self.log, self.echo, self.pending = log, echo, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if self.echo is not None and _PROGRESS.search(line):
                self.echo.write(line.strip() + "\n")
                self.echo.flush()
        return len(text)

    def flush(self) -> None:
        self.log.flush()


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_local(
    cfg: SystemConfig,
    config_path: str | Path,
    *,
    arguments: dict[str, Any] | None = None,
    pipeline_root: str | Path | None = None,
    verbose: bool = False,
    echo: TextIO | None = sys.stderr,
    batch: bool = False,
) -> LocalRun:
    """Run the whole pipeline here with ``kfp.local``; never raises for a failed task.

    ``config_path`` is the contract the tasks load (they run in other processes);
    ``arguments`` override the defaults of :func:`default_arguments`; outputs go under
    ``pipeline_root`` (default ``artifacts/pipeline``). The tasks' logs go to a file beside
    the journal, with a line per task start and finish on ``echo`` (None: silent), or all of
    them to stdout when ``verbose``. ``batch``: the batch-scoring pipeline (``arguments``
    then give its ``data_uri``).
    """
    from kfp import local

    root = Path(pipeline_root or cfg.path(LOCAL_ROOT)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    journal = root / f"journal-{stamp}.jsonl"
    log_path = None if verbose else root / f"run-{stamp}.log"
    if batch:
        arguments = batch_arguments(dict(arguments or {}))
        values = {"config_path": "", "mlflow_tracking_uri": "", **arguments}
        pipeline = build_batch_pipeline(cfg)
    else:
        arguments = check_arguments(dict(arguments or {}))
        variant = imported(arguments)
        values = {**default_arguments(cfg, imported=variant), **arguments}
        pipeline = build_pipeline(cfg, imported=variant)
    values["config_path"] = str(Path(config_path).resolve())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    start = time.perf_counter()
    error = None
    with contextlib.ExitStack() as stack:
        # The tasks are new processes: they must import this very package and find the journal.
        src = str(Path(__file__).resolve().parents[2])
        stack.enter_context(
            _environment(
                {
                    steps.JOURNAL_ENV: str(journal),
                    # kfp.local sets _KFP_RUNTIME as a cluster does: the contract's SQLite
                    # files are fine here, where every task shares this machine.
                    LOCAL_RUN_ENV: "1",
                    "PYTHONPATH": os.pathsep.join(
                        p for p in (src, os.environ.get("PYTHONPATH")) if p
                    ),
                }
            )
        )
        if log_path is not None:
            log = stack.enter_context(log_path.open("w", encoding="utf-8"))
            stack.enter_context(contextlib.redirect_stdout(_Progress(log, echo)))
        # Image, resources and retries are for the cluster; the local runner warns it ignores them.
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
        try:
            pipeline(**values)
        except RuntimeError as exc:
            error = _ANSI.sub("", str(exc))
    return LocalRun(
        succeeded=error is None,
        seconds=time.perf_counter() - start,
        records=steps.read_journal(journal),
        journal_path=journal,
        pipeline_root=root,
        arguments=values,
        error=error,
        log_path=log_path,
    )


# ---------------------------------------------------------------------------------------------
# Compile, submit, schedule


def compile_pipeline(
    cfg: SystemConfig,
    package_path: str | Path | None = None,
    *,
    image: str | None = None,
    imported: bool = False,
    batch: bool = False,
) -> Path:
    """Write the pipeline spec (YAML) for Kubeflow; default ``deploy/kubeflow/pipeline.yaml``
    (``pipeline-imported.yaml`` for the variant reading ``data_uri``, ``pipeline-batch.yaml``
    for the batch-scoring pipeline)."""
    from kfp import compiler

    default = DEFAULT_PACKAGE
    if imported or batch:
        default = DEFAULT_PACKAGE.with_name(
            "pipeline-batch.yaml" if batch else "pipeline-imported.yaml"
        )
    path = Path(package_path) if package_path else cfg.path(default)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = (
        build_batch_pipeline(cfg, image=image)
        if batch
        else build_pipeline(cfg, image=image, imported=imported)
    )
    compiler.Compiler().compile(pipeline, str(path))
    return path


def _package(
    cfg: SystemConfig,
    package_path: str | Path | None,
    image: str | None,
    variant: bool = False,
    batch: bool = False,
) -> Path:
    if package_path is None:
        return compile_pipeline(cfg, image=image, imported=variant and not batch, batch=batch)
    path = Path(package_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no compiled pipeline (run `pipeline compile` first)")
    return path


# A service-account token file projected into a pod (multi-user Kubeflow), as kfp.Client reads
# it itself only when it finds no host; the kubelet refreshes the file, so it is read per call.
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"


def client_options(token: str | None = None) -> dict[str, Any]:
    """kfp.Client's authentication for a multi-user install: a bearer ``token``, else the
    service-account token file named by ``$KF_PIPELINES_SA_TOKEN_PATH``, else none."""
    if token:
        return {"existing_token": token}
    path = os.environ.get(TOKEN_PATH_ENV)
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{TOKEN_PATH_ENV}={path}: no token file there")
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        return {"credentials": ServiceAccountTokenVolumeCredentials(path)}
    return {}


def _client(host: str | None, client: Any, token: str | None = None):
    if client is not None:
        return client
    import kfp

    return kfp.Client(host=host, **client_options(token))


def submit(
    cfg: SystemConfig,
    host: str | None,
    *,
    arguments: dict[str, Any] | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    package_path: str | Path | None = None,
    image: str | None = None,
    client: Any = None,
    token: str | None = None,
    batch: bool = False,
):
    """Compile (unless ``package_path`` is given) and start one run on Kubeflow Pipelines;
    a ``data_uri`` argument selects the imported-data variant; ``batch``: the batch-scoring
    pipeline (its ``data_uri`` the records to score)."""
    if batch:
        arguments = batch_arguments(dict(arguments or {}))
        variant, name = True, batch_pipeline_name(cfg)
    else:
        arguments = check_arguments(dict(arguments or {}))
        variant = imported(arguments)
        name = pipeline_name(cfg, imported=variant)
    package = _package(cfg, package_path, image, variant, batch)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return _client(host, client, token).create_run_from_pipeline_package(
        str(package),
        arguments=arguments,
        run_name=run_name or f"{name}-{stamp}",
        experiment_name=experiment or cfg.training.mlflow.experiment,
        namespace=namespace,
    )


def schedule(
    cfg: SystemConfig,
    host: str | None,
    *,
    arguments: dict[str, Any] | None = None,
    experiment: str | None = None,
    namespace: str | None = None,
    package_path: str | Path | None = None,
    image: str | None = None,
    client: Any = None,
    token: str | None = None,
    replace: bool = False,
):
    """Create the recurring run for ``training.schedule`` (six-field cron, seconds first).

    Scheduled models enter as ``challenger`` (``promote_to``, unless the arguments say
    otherwise): shadow and canary traffic, then ``compare``, decide the promotion. With
    ``serving.log_records`` on, a scheduled run trains on the last ``training.window_days`` of
    served traffic (``data_source=window``) unless the arguments name the data.
    Idempotent: a recurring run of the same name in the experiment makes this refuse
    (``ScheduleExists``), or with ``replace`` it is deleted once the new one exists (Kubeflow
    cannot update a recurring run in place; creating first never leaves no schedule).
    """
    cron = cfg.training.schedule_cron
    if len(cron.split()) != 6:
        raise ValueError(f"{cron!r}: Kubeflow recurring runs need six cron fields")
    defaults: dict[str, Any] = {"promote_to": "challenger"}
    if cfg.serving.log_records and not {"data_source", DATA_URI} & set(arguments or {}):
        # The server keeps what it answered: train on the most recent labelled window of it.
        defaults["data_source"] = WINDOW_SOURCE
    params = check_arguments({**defaults, **(arguments or {})})
    variant = imported(params)
    package = _package(cfg, package_path, image, variant)
    client = _client(host, client, token)
    experiment = experiment or cfg.training.mlflow.experiment
    found = client.create_experiment(name=experiment, namespace=namespace)
    job_name = f"{pipeline_name(cfg, imported=variant)}-{cfg.training.schedule}"
    existing = recurring_runs_named(client, found.experiment_id, job_name)
    if existing and not replace:
        ids = ", ".join(r.recurring_run_id for r in existing)
        raise ScheduleExists(
            f"recurring run {job_name!r} already exists in experiment {experiment!r} ({ids}): "
            "pass --replace to replace it"
        )
    created = client.create_recurring_run(
        experiment_id=found.experiment_id,
        job_name=job_name,
        description=f"{cfg.training.schedule} retraining ({cron}, UTC) from configs/system.yaml",
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=params,
        pipeline_package_path=str(package),
        enabled=True,
    )
    for old in existing:
        client.delete_recurring_run(old.recurring_run_id)
    return created


class ScheduleExists(ValueError):
    """The recurring run is already there: scheduling twice would run the pipeline twice."""


def recurring_runs_named(client: Any, experiment_id: str, name: str) -> list[Any]:
    """The experiment's recurring runs called ``name`` (every page; the name is compared here
    too, as a backend may ignore the filter)."""
    import json

    query = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )
    found, token = [], ""
    while True:
        page = client.list_recurring_runs(
            page_token=token, page_size=100, experiment_id=experiment_id, filter=query
        )
        found += [r for r in page.recurring_runs or [] if r.display_name == name]
        token = page.next_page_token or ""
        if not token:
            return found
