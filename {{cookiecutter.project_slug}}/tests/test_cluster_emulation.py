"""The compiled pipeline run as a Kubeflow cluster runs it (tests/kfp_cluster.py): every task
from deploy/kubeflow/pipeline.yaml in its own empty pod folder, in the image the Dockerfile
builds (the project installed from its wheel, the image's environment and user: UID 10001 when
the test runs as root), artifacts only, the contract read-only where the image has it, and the
stores a real MLflow tracking server on PostgreSQL plus PostgreSQL databases for Optuna and the
entity store, named by the runtime Secret.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kfp_cluster import ClusterEmulator, TaskFailed, install_project, read_dockerfile
from sample_project import scaled_rows

from {{cookiecutter.package_name}}.config import CONFIG_ENV_VAR, load_config
from {{cookiecutter.package_name}}.pipeline import run as runner
from {{cookiecutter.package_name}}.pipeline.dag import TASKS
from {{cookiecutter.package_name}}.pipeline.pipeline import secret_name

pytestmark = pytest.mark.slow
ROWS, TRIALS = scaled_rows(2000), 2
PACKAGE = load_config.__module__.split(".")[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """``mlflow server`` on PostgreSQL, serving its artifacts: the tracking URI of the Secret."""
    database = postgres.database("mlflow_server")
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    port = _free_port()
    log = (artifacts.parent / "mlflow-server.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            database.replace("postgresql://", "postgresql+psycopg://"),
            "--serve-artifacts",
            "--artifacts-destination",
            str(artifacts),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"mlflow server did not start: {log.name}")
        time.sleep(0.5)
    yield url
    os.killpg(process.pid, 15)
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def contract(project_root, tmp_path_factory):
    """A lenient contract (any model with some skill passes the gate: these tests are about the
    cluster, and a rare positive class leaves a small test split few positives to judge on);
    the pods get a read-only copy where the image has its own."""
    data = yaml.safe_load((project_root / "configs" / "system.yaml").read_text(encoding="utf-8"))
    data["metrics"]["offline"]["target_precision"] = 0.05
    data["metrics"]["offline"]["target_recall"] = 0.3
    path = tmp_path_factory.mktemp("contract") / "configs" / "system.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def package(contract, tmp_path_factory):
    return runner.compile_pipeline(
        load_config(contract), tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    )


@pytest.fixture(scope="session")
def image(project_root):
    return read_dockerfile(project_root / "deploy" / "docker" / "Dockerfile")


@pytest.fixture(scope="session")
def site(project_root, image, tmp_path_factory):
    """The project's wheel, built once from what the Dockerfile copies, installed alone."""
    try:
        _, folder = install_project(project_root, image, tmp_path_factory.mktemp("wheel"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    return folder


def emulator(package, contract, work, secret, image, site):
    """The image's files with the lenient contract where $SYSTEM_CONFIG finds it."""
    project = Path(__file__).resolve().parents[1]
    assert image.env[CONFIG_ENV_VAR] in image.files  # the image ships its default contract
    files = {
        target: contract if target == image.env[CONFIG_ENV_VAR] else project / source
        for target, source in image.files.items()
    }
    cluster = ClusterEmulator(
        package,
        work,
        image=image,
        site=site,
        files=files,
        secret=secret,
        env={"LANG": "C.UTF-8"},  # the base image's
        trace=PACKAGE,
    )
    if cluster.note:
        warnings.warn(cluster.note, stacklevel=2)
    return cluster


def arguments():
    # No config_path: the tasks read the contract at $SYSTEM_CONFIG, as the image sets it.
    return {"rows": ROWS, "trials": TRIALS}


def assert_the_image_ran(cluster, image, site):
    """Every task imported the project from the installed wheel, as the image's user (when the
    test runs as root), and whatever it wrote in its pod belongs to that user."""
    if os.geteuid() == 0 and not cluster.note:  # a note says why the switch was impossible
        assert cluster.user == image.user
    for run in cluster.runs:
        if not run.in_pod:
            continue
        assert f"{PACKAGE}.pipeline.steps" in run.modules, (run.name, sorted(run.modules))
        elsewhere = {m: f for m, f in run.modules.items() if f and not Path(f).is_relative_to(site)}
        assert not elsewhere, (run.name, elsewhere)
        assert run.owners == {cluster.user}, (run.name, run.owners)


def test_the_compiled_pipeline_runs_task_by_task_on_durable_stores(
    package, contract, postgres, mlflow_server, image, site, tmp_path
):
    import sqlalchemy as sa
    from mlflow import MlflowClient

    from {{cookiecutter.package_name}} import stores

    secret = {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "OPTUNA_STORAGE": postgres.database("optuna_cluster"),
        "ENTITY_STORE_URL": postgres.database("accounts_cluster"),
    }
    cluster = emulator(package, contract, tmp_path, secret, image, site)
    try:
        cluster.run(arguments())
    except TaskFailed as failed:
        pytest.fail(str(failed))
    ran = [r.name for r in cluster.runs]
    assert ran == [t for t in TASKS if t != "report-gate-failure"]
    assert not any(cluster.pods.iterdir())  # nothing survives a pod
    assert_the_image_ran(cluster, image, site)
    # Every task that reads the contract found it read-only where the image has it, and wrote
    # under its own directory.
    published = cluster.rootfs / image.env[CONFIG_ENV_VAR].lstrip("/")
    read_only = f"{published.parent.parent} is read-only"
    rerooted = [r.name for r in cluster.runs if read_only in r.output]
    assert rerooted == [name for name in ran if name != "check-data"]
    # The image's files stayed as they were: the tasks wrote their files in their pods.
    written = {p for p in cluster.rootfs.rglob("*") if not p.is_dir()}
    assert written == {cluster.rootfs / t.lstrip("/") for t in image.files}

    cfg = load_config(contract)
    name = cfg.training.mlflow.registered_model
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    champion = client.get_model_version_by_alias(name, "champion")
    promotion = cluster.runs[ran.index("promote-model")]
    assert int(champion.version) == promotion.parameters["version"] == 1

    # The test metrics evaluate-model logged reached the tuning run on the server.
    run = client.get_run(champion.run_id)
    assert any(key.startswith("test_") for key in run.data.metrics), run.data.metrics

    # The bundle was exported from the shared registry, and says which version it is.
    serving = Path(cluster.runs[ran.index("export-serving-bundle")].artifacts["serving"]["uri"])
    served = yaml.safe_load((serving / "serving.json").read_text(encoding="utf-8"))
    assert served["version"] == 1 and "champion" in served["aliases"]

    # The entity store the server reads is filled, in PostgreSQL.
    engine = sa.create_engine(stores.sqlalchemy_url(secret["ENTITY_STORE_URL"]))
    with engine.connect() as conn:
        accounts = conn.execute(sa.text("select count(*) from entity_stats")).scalar()
    engine.dispose()
    assert accounts > 0
    # And the Optuna study, there too: a retried tune-model resumes it.
    engine = sa.create_engine(stores.sqlalchemy_url(secret["OPTUNA_STORAGE"]))
    with engine.connect() as conn:
        trials = conn.execute(sa.text("select count(*) from trials")).scalar()
    engine.dispose()
    assert trials == TRIALS


def test_without_the_secret_the_first_task_fails_naming_the_keys(
    package, contract, image, site, tmp_path
):
    cluster = emulator(package, contract, tmp_path, {}, image, site)
    with pytest.raises(TaskFailed) as failed:
        cluster.run(arguments())
    assert failed.value.run.name == "get-data" and [r.name for r in cluster.runs] == ["get-data"]
    assert_the_image_ran(cluster, image, site)
    output = failed.value.run.output
    assert "StoreError: on a cluster every store must outlive its pod" in output
    for key in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "ENTITY_STORE_URL"):
        assert key in output
    assert secret_name(load_config(contract)) in output


@pytest.fixture(scope="module")
def imported_package(contract, tmp_path_factory):
    return runner.compile_pipeline(
        load_config(contract),
        tmp_path_factory.mktemp("kfp-imported") / "pipeline.yaml",
        imported=True,
    )


def test_real_data_from_an_importer_uri_trains_end_to_end(
    imported_package, contract, postgres, mlflow_server, image, site, tmp_path
):
    """The data_uri variant: the object store's file, not generated data, is what trains."""
    from mlflow import MlflowClient

    from {{cookiecutter.package_name}}.data import synthetic

    cfg = load_config(contract)
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    source = bucket / "records-2026-12.parquet"
    # Twice the usual sample: this run's threshold comes from one trial on a small validation
    # split, and the test split must hold enough positives to judge it.
    rows = 2 * ROWS
    synthetic.run(cfg, source, rows=rows, seed=7, progress=False)
    secret = {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "OPTUNA_STORAGE": postgres.database("optuna_imported"),
        "ENTITY_STORE_URL": postgres.database("accounts_imported"),
    }
    cluster = emulator(imported_package, contract, tmp_path / "cluster", secret, image, site)
    try:
        cluster.run({"data_uri": f"file://{source}", "trials": 1})
    except TaskFailed as failed:
        pytest.fail(str(failed))
    ran = [r.name for r in cluster.runs]
    assert_the_image_ran(cluster, image, site)
    assert ran[:3] == ["importer", "ingest-data", "validate-data"] and "get-data" not in ran
    ingested = cluster.runs[1].artifacts["data"]["metadata"]
    labels = pd.read_parquet(source)[cfg.data.column("label").name]
    rate = (labels == cfg.problem.positive_class).mean()
    assert ingested["rows"] == rows and ingested["positive_rate"] == round(rate, 4)
    assert "export-serving-bundle" in ran
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    version = cluster.runs[ran.index("promote-model")].parameters["version"]
    assert client.get_model_version(cfg.training.mlflow.registered_model, str(version))


def test_a_window_run_trains_on_the_requests_the_server_kept(
    package, contract, postgres, mlflow_server, image, site, tmp_path
):
    """data_source=window on a cluster: get-data reads the answered requests and their raw
    records from the PostgreSQL prediction log the Secret names (labelled by feedback, else as
    served), and the run trains and promotes on them."""
    from datetime import UTC, datetime, timedelta

    from {{cookiecutter.package_name}} import stores
    from {{cookiecutter.package_name}}.data import synthetic
    from {{cookiecutter.package_name}}.predlog import records
    from {{cookiecutter.package_name}}.predlog.store import PredictionLog

    cfg = load_config(contract)
    label = cfg.data.column("label").name
    source = tmp_path / "served.parquet"
    synthetic.run(cfg, source, rows=ROWS, seed=11, progress=False)
    served = pd.read_parquet(source)
    names = [c.name for c in cfg.data.columns if c.name != label]
    answered = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    ids = [f"req-{i}" for i in range(len(served))]
    # Served as the truth, except the first 50 answers, which feedback then corrects.
    truth = served[label].tolist()
    wrong = {cfg.problem.positive_class: cfg.problem.negative_class}
    wrong[cfg.problem.negative_class] = cfg.problem.positive_class
    answers = [
        {
            "request_id": request_id,
            "message_id": None,
            "entity": None,
            "created_at": answered,
            "received_at": answered,
            "model_name": cfg.training.mlflow.registered_model,
            "model_version": 1,
            "role": "champion",
            "served": True,
            "routing": "single",
            "score": 0.5,
            "label": wrong[truth[i]] if i < 50 else truth[i],
            "threshold": 0.5,
            "latency_ms": 1.0,
            "features": None,
        }
        for i, request_id in enumerate(ids)
    ]
    log_url = postgres.database("log_window")
    with PredictionLog(stores.sqlalchemy_url(log_url)) as log:
        log.record(answers, records.rows(served, names, ids, answered))
        log.add_feedback(
            [
                {
                    "key": f"fb-{i}",
                    "label": truth[i],
                    "request_id": ids[i],
                    "message_id": None,
                    "source": "test",
                    "reported_at": answered,
                    "ingested_at": answered,
                }
                for i in range(50)
            ]
        )
    secret = {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "OPTUNA_STORAGE": postgres.database("optuna_window"),
        "ENTITY_STORE_URL": postgres.database("entities_window"),
        "PREDICTION_LOG_URL": log_url,
    }
    cluster = emulator(package, contract, tmp_path / "cluster", secret, image, site)
    try:
        cluster.run({"data_source": "window", "trials": 1})
    except TaskFailed as failed:
        pytest.fail(str(failed))
    ran = [r.name for r in cluster.runs]
    assert_the_image_ran(cluster, image, site)
    got = cluster.runs[0]
    assert got.name == "get-data" and f"labels from feedback 50 ({50 / ROWS:.1%})" in got.output, (
        got.output
    )
    metadata = got.artifacts["data"]["metadata"]
    rate = (served[label] == cfg.problem.positive_class).mean()
    assert metadata["source"] == "labelled window" and metadata["rows"] == ROWS
    assert metadata["positive_rate"] == round(rate, 4)  # the feedback's labels, not the served
    assert "promote-model" in ran and "export-serving-bundle" in ran
