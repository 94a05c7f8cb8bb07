"""The durable stores: every documented URL scheme opens against a real PostgreSQL server, and a
cluster run refuses stores that die with their pod, in its first task.

The server is private to the session (tests/postgres.py, the ``postgres`` fixture); the URLs
are plain ``postgresql://``, as a user writes them in the runtime Secret.
"""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from reference_contract import reference_config

from {{cookiecutter.package_name}} import stores
from {{cookiecutter.package_name}}.pipeline import steps
from {{cookiecutter.package_name}}.pipeline.pipeline import secret_name

STORE_ENVS = ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "ENTITY_STORE_URL", "PREDICTION_LOG_URL")


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*STORE_ENVS, stores.KFP_RUNTIME_ENV, stores.LOCAL_RUN_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def with_values(cfg, **dotted):
    """``cfg`` with contract values replaced (``training.optuna.storage=...``)."""
    data = cfg.model_dump()
    for key, value in dotted.items():
        *parents, last = key.split("__")
        node = data
        for part in parents:
            node = node[part]
        node[last] = value
    return type(cfg).model_validate(data)


def point_at(cfg, clean_env, where: str, url: str, *, env: str, contract: str):
    """``cfg`` whose store is ``url``: through the environment variable ``env`` or through the
    contract key ``contract`` (dotted with ``__``), as ``where`` says."""
    if where == "env":
        clean_env.setenv(env, url)
        return cfg
    return with_values(cfg, **{contract: url})


# ---------------------------------------------------------------------------------------------
# URLs

parts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)


@given(user=parts, password=parts, host=parts, port=st.integers(1, 65535), database=parts)
def test_postgresql_urls_select_psycopg3_and_keep_every_part(user, password, host, port, database):
    for scheme in ("postgresql", "postgres"):
        url = f"{scheme}://{user}:{password}@{host}:{port}/{database}"
        parsed = sa.engine.make_url(stores.sqlalchemy_url(url))
        assert parsed.drivername == "postgresql+psycopg"
        assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
            user,
            password,
            host,
            port,
            database,
        )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://u@h/db",
        "postgresql+psycopg://u@h/db",
        "sqlite:///x.db",
        "http://mlflow:5000",
        "mysql://u@h/db",
    ],
)
def test_other_urls_are_kept(url):
    assert stores.sqlalchemy_url(url) == url


def test_every_store_url_passes_through_the_normalisation(cfg, clean_env):
    pg = "postgresql://u:p@db:5432/x"
    contract = with_values(
        cfg,
        training__optuna__storage=pg,
        training__mlflow__tracking_uri=pg,
        serving__entity_store_url=pg,
        serving__prediction_log_url=pg,
    )
    from {{cookiecutter.package_name}}.models.study import resolve_storage
    from {{cookiecutter.package_name}}.predlog.store import log_url

    want = "postgresql+psycopg://u:p@db:5432/x"
    assert contract.tracking_uri == want
    assert resolve_storage(contract) == want
    assert stores.entity_store_url(contract) == want
    assert log_url(contract) == want
    for name in STORE_ENVS:
        clean_env.setenv(name, pg)
    assert cfg.tracking_uri == want
    assert resolve_storage(cfg) == want
    assert stores.entity_store_url(cfg) == want
    assert log_url(cfg) == want


# ---------------------------------------------------------------------------------------------
# The cluster check


def test_first_task_fails_on_a_cluster_when_stores_are_sqlite(
    cfg, project_root, clean_env, tmp_path
):
    clean_env.setenv(stores.KFP_RUNTIME_ENV, "true")
    clean_env.chdir(tmp_path)
    data = SimpleNamespace(path=str(tmp_path / "raw"), metadata={})
    config = str(project_root / "configs" / "system.yaml")
    with pytest.raises(stores.StoreError) as failed:
        steps.get_data(config, "generate", 50, data)
    message = str(failed.value)
    assert "\n" not in message and repr(secret_name(cfg)) in message
    for key in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "ENTITY_STORE_URL"):
        assert key in message
    assert not (tmp_path / "raw").exists()  # nothing was done before the check

    # Only what is still missing is named; a durable URL is accepted, an empty one is not.
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow.mlflow:5000")
    clean_env.setenv("OPTUNA_STORAGE", "postgresql://u@db/optuna")
    with pytest.raises(stores.StoreError) as failed:
        steps.get_data(config, "generate", 50, data)
    assert "ENTITY_STORE_URL" in str(failed.value)
    assert "MLFLOW_TRACKING_URI" not in str(failed.value)
    assert "OPTUNA_STORAGE" not in str(failed.value)

    # MLflow straight on its database would leave the model artifacts in the pod.
    clean_env.setenv("MLFLOW_TRACKING_URI", "postgresql://u@db/mlflow")
    with pytest.raises(stores.StoreError, match="MLFLOW_TRACKING_URI.*artifacts in the pod"):
        steps.get_data(config, "generate", 50, data)

    # The tracking URI may come from the pipeline parameter instead of the Secret.
    clean_env.delenv("MLFLOW_TRACKING_URI")
    clean_env.setenv("ENTITY_STORE_URL", "postgresql://u@db/accounts")
    steps.get_data(config, "generate", 50, data, "http://mlflow.mlflow:5000")
    assert data.metadata["rows"] == 50


def test_local_runs_keep_the_contract_sqlite_files(cfg, project_root, clean_env, tmp_path):
    # kfp.local sets _KFP_RUNTIME too; the project's local runner marks its tasks.
    clean_env.setenv(stores.KFP_RUNTIME_ENV, "true")
    clean_env.setenv(stores.LOCAL_RUN_ENV, "1")
    assert not stores.on_cluster()
    steps.load(str(project_root / "configs" / "system.yaml"), stores=True)
    clean_env.delenv(stores.KFP_RUNTIME_ENV)
    clean_env.delenv(stores.LOCAL_RUN_ENV)
    assert not stores.on_cluster()  # a plain process: the CLI, a notebook


# ---------------------------------------------------------------------------------------------
# Each documented URL against a real PostgreSQL


def test_without_server_binaries_the_postgres_tests_say_how_to_install_them(monkeypatch):
    import postgres as pg

    monkeypatch.delenv(pg.BIN_ENV, raising=False)
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(pg.shutil, "which", lambda name: None)
    with pytest.raises(pg.PostgresUnavailable, match="apt-get install -y postgresql"):
        pg.start_server()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["env", "contract"])
def test_mlflow_tracking_and_registry_on_postgresql(cfg, postgres, clean_env, tmp_path, where):
    import mlflow

    from {{cookiecutter.package_name}}.models import registry

    url = postgres.database(f"mlflow_{where}")
    clean_env.chdir(tmp_path)  # the default artifact root of a database URI: ./mlruns
    cfg = point_at(
        cfg,
        clean_env,
        where,
        url,
        env="MLFLOW_TRACKING_URI",
        contract="training__mlflow__tracking_uri",
    )
    assert cfg.tracking_uri.startswith("postgresql+psycopg://")
    client = registry.connect(cfg)
    experiment = registry.ensure_experiment(cfg, client)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_metric("test_pr_auc", 0.9)
    name = cfg.training.mlflow.registered_model
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)

    found = registry.get_version(cfg, "champion")
    assert int(found.version) == int(version.version)
    assert mlflow.get_run(run.info.run_id).data.metrics["test_pr_auc"] == 0.9
    engine = sa.create_engine(stores.sqlalchemy_url(url))
    with engine.connect() as conn:  # really in PostgreSQL, not a local file
        assert conn.execute(sa.text("select count(*) from registered_models")).scalar() == 1
    engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["env", "contract"])
def test_optuna_study_resumes_from_postgresql(cfg, postgres, clean_env, where):
    from {{cookiecutter.package_name}}.models.study import open_study, resolve_storage

    url = postgres.database(f"optuna_{where}")
    cfg = point_at(
        cfg, clean_env, where, url, env="OPTUNA_STORAGE", contract="training__optuna__storage"
    )
    storage = resolve_storage(cfg)
    assert storage.startswith("postgresql+psycopg://")
    study, previous = open_study(storage, "s", "fp", seed=0)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    # Another worker, or the retried pod: the same study, with its trials.
    again, previous = open_study(storage, "s", "fp", seed=0)
    assert previous == 3 and len(again.trials) == 3


@pytest.mark.slow
@pytest.mark.parametrize("where", ["env", "contract"])
def test_entity_store_on_postgresql(cfg, postgres, clean_env, where):
    from {{cookiecutter.package_name}}.features.store import EntityStore

    url = postgres.database(f"accounts_{where}")
    cfg = reference_config(cfg)  # the history below is written by hand in its schema
    cfg = point_at(
        cfg, clean_env, where, url, env="ENTITY_STORE_URL", contract="serving__entity_store_url"
    )
    t0 = pd.Timestamp("2025-03-03 12:00", tz="UTC")
    history = pd.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(6)],
            "account": ["a@x.example"] * 6,
            "received_at": [t0 + pd.Timedelta(minutes=10 * i) for i in range(6)],
            "account_created_at": t0 - pd.Timedelta(days=30),
            "label": [cfg.problem.positive_class, cfg.problem.negative_class] * 3,
        }
    )
    store = EntityStore.from_config(cfg, stores.entity_store_url(cfg))
    assert store.url.startswith("postgresql+psycopg://")
    assert store.materialize(cfg, history, as_of=t0 + pd.Timedelta(hours=2)) == 1
    store.close()
    # Serving, in another process: the same database.
    served = EntityStore(stores.entity_store_url(cfg), cache_ttl_s=0)
    request = history.iloc[[0]].assign(received_at=t0 + pd.Timedelta(hours=3))
    row = served.lookup(cfg, request).iloc[0]
    # Three days on, every send is out of the windows: the database counts them (a reload).
    later = served.lookup(cfg, request.assign(received_at=t0 + pd.Timedelta(days=3))).iloc[0]
    served.close()
    assert row["entity_past_count"] == 6 and row["entity_past_labeled"] == 6
    assert later["entity_past_count"] == 7 and later["entity_count_24h"] == 0
    since_prev = pd.Timedelta(days=3) - pd.Timedelta(hours=3)
    assert later["entity_seconds_since_prev"] == since_prev.total_seconds()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["env", "contract"])
def test_prediction_log_on_postgresql(cfg, postgres, clean_env, where):
    from datetime import UTC, datetime, timedelta

    from {{cookiecutter.package_name}}.predlog.entries import entries
    from {{cookiecutter.package_name}}.predlog.store import PredictionLog, log_url
    from {{cookiecutter.package_name}}.serving.logrows import ModelStamp

    url = postgres.database(f"predlog_{where}")
    cfg = point_at(
        cfg, clean_env, where, url, env="PREDICTION_LOG_URL", contract="serving__prediction_log_url"
    )
    positive, negative = cfg.problem.positive_class, cfg.problem.negative_class
    now = datetime.now(UTC).replace(tzinfo=None)

    def prediction(request_id, label, *, served=True, role="champion"):
        return {
            "request_id": request_id,
            "message_id": f"<{request_id}@x>",
            "entity": "a@b.org",
            "created_at": now,
            "received_at": None,
            "model_name": "m",
            "model_version": 1,
            "role": role,
            "served": served,
            "routing": "shadow",
            "score": 0.9 if label == positive else 0.1,
            "label": label,
            "threshold": 0.5,
            "latency_ms": 3.0,
            "features": {"recipient_count": 1.0, "entity_seconds_since_prev": None},
        }

    with PredictionLog(log_url(cfg)) as log:
        assert log.url.startswith("postgresql+psycopg://")
        rows = [prediction(f"r{i}", positive if i < 4 else negative) for i in range(10)]
        rows.append(prediction("r0", negative, served=False, role="challenger"))
        assert log.record(rows) == set()
        assert log.record([prediction("r1", positive)]) == {"r1"}  # a reused request id
        # The server's columns (PostgreSQL takes them as rows): one new, one reused.
        columns = entries(
            request_ids=["c1", "r2"],
            message_ids=["<c1@x>", "<r2@x>"],
            entities=["a@b.org", None],
            created_at=now,
            received_at=[now, None],
            models=ModelStamp("m", 1, "champion", 0.5),
            served=True,
            routing="single",
            scores=np.array([0.9, 0.1]),
            labels=np.array([positive, negative], dtype=object),
            latency_ms=None,
            names=("recipient_count",),
            values=np.array([[2.0], [3.0]], dtype=np.float32),
            signals=[{"cat.kind": "x"}, {"cat.kind": None}],
        )
        assert log.record(columns) == {"r2"}
        feedback = [
            {
                "request_id": "r0",
                "message_id": None,
                "label": negative,
                "source": "user",
                "reported_at": now,
                "ingested_at": now,
                "key": "k0",
            }
        ]
        assert log.add_feedback(feedback) == (1, 0)
        assert log.add_feedback(feedback) == (0, 1)
    with PredictionLog(log_url(cfg)) as again:  # another process
        assert again.count() == 12
        assert again.rows("r0")[0]["features"]["recipient_count"] == 1.0
        assert again.rows("c1")[0]["features"] == {"recipient_count": 2.0, "cat.kind": "x"}
        counts = again.online_counts(now - timedelta(hours=1), positive, negative)
        assert (counts.predicted_positive, counts.predicted_negative, counts.rescued) == (5, 6, 1)
