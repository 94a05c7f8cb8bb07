"""The compiled pipeline run as a Kubeflow cluster runs it (tests/kfp_cluster.py): every task
from deploy/kubeflow/pipeline.yaml in its own empty directory, artifacts only, the contract
read-only, and the stores a real MLflow tracking server on PostgreSQL plus PostgreSQL databases
for Optuna and the sender store, named by the runtime Secret.
"""

import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kfp_cluster import ClusterEmulator, TaskFailed

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.pipeline import run as runner
from {{ cookiecutter.package_name }}.pipeline.pipeline import TASKS, secret_name

pytestmark = pytest.mark.slow
ROWS, TRIALS = 2000, 2


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
    """A lenient contract (any sensible model passes the gate), read-only as in the image."""
    data = yaml.safe_load((project_root / "configs" / "system.yaml").read_text(encoding="utf-8"))
    data["metrics"]["offline"]["target_precision"] = 0.2
    data["metrics"]["offline"]["target_recall"] = 0.5
    folder = tmp_path_factory.mktemp("etc") / "configs"
    folder.mkdir()
    path = folder / "system.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    for p in (path, folder):
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return path


@pytest.fixture(scope="module")
def package(contract, tmp_path_factory):
    return runner.compile_pipeline(
        load_config(contract), tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    )


def emulator(package, contract, work, secret):
    src = Path(__file__).resolve().parents[1] / "src"
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(src),  # the image installs the wheel; here the same package
        "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "BENTOML_DO_NOT_TRACK": "True",
        "LANG": "C.UTF-8",
    }
    # The contract's project folder (configs/..) is read-only, as /etc is in the image.
    return ClusterEmulator(
        package, work, secret=secret, base_env=env, read_only=(contract.parent.parent,)
    )


def arguments(contract):
    return {"config_path": str(contract), "rows": ROWS, "trials": TRIALS}


def test_the_compiled_pipeline_runs_task_by_task_on_durable_stores(
    package, contract, postgres, mlflow_server, tmp_path
):
    import sqlalchemy as sa
    from mlflow import MlflowClient

    from {{ cookiecutter.package_name }} import stores

    secret = {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "OPTUNA_STORAGE": postgres.database("optuna_cluster"),
        "SENDER_STORE_URL": postgres.database("senders_cluster"),
    }
    cluster = emulator(package, contract, tmp_path, secret)
    try:
        cluster.run(arguments(contract))
    except TaskFailed as failed:
        pytest.fail(str(failed))
    ran = [r.name for r in cluster.runs]
    assert ran == [t for t in TASKS if t != "report-gate-failure"]
    assert not any((tmp_path / "pods").iterdir())  # nothing survives a pod
    # Every task that reads the contract found it read-only and wrote under its own directory.
    rerooted = [r.name for r in cluster.runs if "is read-only" in r.output]
    assert rerooted == [name for name in ran if name != "check-data"]
    # The contract's folder stayed as it was: the tasks wrote their files in their pods.
    assert sorted(p.name for p in contract.parent.parent.rglob("*")) == ["configs", "system.yaml"]

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

    # The sender store the server reads is filled, in PostgreSQL.
    engine = sa.create_engine(stores.sqlalchemy_url(secret["SENDER_STORE_URL"]))
    with engine.connect() as conn:
        senders = conn.execute(sa.text("select count(*) from sender_stats")).scalar()
    engine.dispose()
    assert senders > 0
    # And the Optuna study, there too: a retried tune-model resumes it.
    engine = sa.create_engine(stores.sqlalchemy_url(secret["OPTUNA_STORAGE"]))
    with engine.connect() as conn:
        trials = conn.execute(sa.text("select count(*) from trials")).scalar()
    engine.dispose()
    assert trials == TRIALS


def test_without_the_secret_the_first_task_fails_naming_the_keys(package, contract, tmp_path):
    cluster = emulator(package, contract, tmp_path, secret={})
    with pytest.raises(TaskFailed) as failed:
        cluster.run(arguments(contract))
    assert failed.value.run.name == "get-data" and [r.name for r in cluster.runs] == ["get-data"]
    output = failed.value.run.output
    assert "StoreError: on a cluster every store must outlive its pod" in output
    for key in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "SENDER_STORE_URL"):
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
    imported_package, contract, postgres, mlflow_server, tmp_path
):
    """The data_uri variant: the object store's file, not generated data, is what trains."""
    from mlflow import MlflowClient

    from {{ cookiecutter.package_name }}.data import synthetic

    cfg = load_config(contract)
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    source = bucket / "emails-2026-12.parquet"
    synthetic.run(cfg, source, rows=ROWS, seed=7, progress=False)
    secret = {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "OPTUNA_STORAGE": postgres.database("optuna_imported"),
        "SENDER_STORE_URL": postgres.database("senders_imported"),
    }
    cluster = emulator(imported_package, contract, tmp_path / "cluster", secret)
    try:
        cluster.run({"config_path": str(contract), "data_uri": f"file://{source}", "trials": 1})
    except TaskFailed as failed:
        pytest.fail(str(failed))
    ran = [r.name for r in cluster.runs]
    assert ran[:3] == ["importer", "ingest-data", "validate-data"] and "get-data" not in ran
    ingested = cluster.runs[1].artifacts["data"]["metadata"]
    labels = pd.read_parquet(source)[cfg.data.column("label").name]
    rate = (labels == cfg.problem.positive_class).mean()
    assert ingested["rows"] == ROWS and ingested["positive_rate"] == round(rate, 4)
    assert "export-serving-bundle" in ran
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    version = cluster.runs[ran.index("promote-model")].parameters["version"]
    assert client.get_model_version(cfg.training.mlflow.registered_model, str(version))
