"""The labelled window: answered requests kept by the server, labelled by feedback, as training data.

The log's ``records`` table (``serving.log_records``) is written in the prediction's own
transaction; ``predlog/labels.py`` labels each answered request by its latest feedback, else as
served; ``data window`` (and get-data with ``data_source=window``) writes the rows in the
contract's schema, which the real validation and split then take as any raw data.
"""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pandas as pd
import pytest
from contract_labels import NEG, POS
from sample_project import request_bodies, sample_project, scaled_rows
from typer.testing import CliRunner

from {{cookiecutter.package_name}} import stores
from {{cookiecutter.package_name}}.data import window
from {{cookiecutter.package_name}}.predlog.labels import FEEDBACK, PREDICTION, labelled_window
from {{cookiecutter.package_name}}.predlog.store import PredictionLog

NOW = datetime.now(UTC).replace(tzinfo=None)


def _answer(request_id, label, *, message_id=None, created=NOW, version=1):
    return {
        "request_id": request_id,
        "message_id": message_id,
        "entity": "someone",
        "created_at": created,
        "received_at": created,
        "model_name": "m",
        "model_version": version,
        "role": "champion",
        "served": True,
        "routing": "single",
        "score": 0.9 if label == POS else 0.1,
        "label": label,
        "threshold": 0.5,
        "latency_ms": 1.0,
        "features": None,
    }


def _record(request_id, created=NOW, **values):
    return {
        "request_id": request_id,
        "created_at": created,
        "record": {"body": request_id, **values},
    }


def _feedback(key, label, *, request_id=None, message_id=None, at=NOW):
    return {
        "key": key,
        "label": label,
        "request_id": request_id,
        "message_id": message_id,
        "source": "test",
        "reported_at": at,
        "ingested_at": at,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path):
    """An empty log on SQLite, and on the private PostgreSQL server (production's scheme)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/log.db"
    postgres = request.getfixturevalue("postgres")
    return stores.sqlalchemy_url(postgres.database(f"w_{request.node.originalname[:40]}"))


def test_a_record_is_kept_exactly_when_its_answer_is(log_url):
    log = PredictionLog(log_url)
    assert log.record([_answer("a", POS)], [_record("a")]) == set()
    # "a" again is refused by the unique index: neither its answer nor its record goes in, the
    # new request "b" goes in with its record.
    left_out = log.record([_answer("a", NEG), _answer("b", NEG)], [_record("a"), _record("b")])
    assert left_out == {"a"}
    with log.engine.connect() as conn:
        kept = [r.request_id for r in conn.execute(log.records.select().order_by(log.records.c.id))]
    assert kept == ["a", "b"]
    log.close()


def test_labels_come_from_the_latest_feedback_else_as_served(log_url):
    log = PredictionLog(log_url)
    old = NOW - timedelta(days=30)
    answers = [
        _answer("rescued", POS),
        _answer("reported", NEG, message_id="<m1>"),
        _answer("changed", POS),
        _answer("silent", POS),
        _answer("no-record", NEG),
        _answer("too-old", POS, created=old),
    ]
    records = [_record(a["request_id"]) for a in answers if a["request_id"] != "no-record"]
    log.record(answers, records)
    # A mesh mirror answered "silent" again from another model version: counted once.
    log.record([_answer("silent", NEG, version=2)], [_record("silent")])
    log.add_feedback(
        [
            _feedback("k1", NEG, request_id="rescued"),
            _feedback("k2", POS, message_id="<m1>"),
            _feedback("k3", NEG, request_id="changed", at=NOW - timedelta(minutes=2)),
            _feedback("k4", POS, request_id="changed", at=NOW - timedelta(minutes=1)),
        ]
    )
    got = labelled_window(log, NOW - timedelta(days=7), NOW + timedelta(seconds=1), "label")
    labels = {r["body"]: (r["label"], s) for r, s in zip(got.records, got.sources, strict=True)}
    assert labels == {
        "rescued": (NEG, FEEDBACK),
        "reported": (POS, FEEDBACK),
        "changed": (POS, FEEDBACK),
        "silent": (POS, PREDICTION),
    }
    assert got.answered == 5 and got.without_record == 1 and got.from_feedback == 3
    log.close()


def test_pruning_deletes_old_raw_records_only(project_root, tmp_path):
    """`data prune-records` deletes raw records past the retention; every prediction stays."""
    from {{cookiecutter.package_name}}.cli.data import app

    url = f"sqlite:///{tmp_path}/log.db"
    ages = {"fresh": 1, "edge": 29, "stale": 31, "ancient": 400}
    with PredictionLog(url) as log:
        answers = [_answer(k, POS, created=NOW - timedelta(days=d)) for k, d in ages.items()]
        log.record(answers, [_record(a["request_id"], a["created_at"]) for a in answers])
    config = str(project_root / "configs" / "system.yaml")
    result = CliRunner().invoke(app, ["prune-records", "--url", url, "--config", config])
    assert result.exit_code == 0, result.output
    assert "deleted 2 raw records" in result.output and "kept 30 days" in result.output
    with PredictionLog(url) as log:
        with log.engine.connect() as conn:
            kept = {r.request_id for r in conn.execute(log.records.select())}
        assert kept == {"fresh", "edge"} and log.count() == 4
        assert log.prune_records(NOW.replace(tzinfo=UTC)) == 2  # the rest, on request


def test_records_must_outlive_the_training_window(project_root, tmp_path):
    import yaml

    from {{cookiecutter.package_name}}.config import SystemConfig

    raw = yaml.safe_load((project_root / "configs" / "system.yaml").read_text(encoding="utf-8"))
    raw["serving"]["records_retention_days"] = raw["training"]["window_days"] / 2
    with pytest.raises(ValueError, match="records_retention_days .* shorter than"):
        SystemConfig.model_validate(raw)


def test_a_window_without_records_names_the_setting(cfg, tmp_path):
    url = f"sqlite:///{tmp_path}/log.db"
    with PredictionLog(url) as log:
        log.record([_answer("a", POS)])
    with pytest.raises(window.WindowError, match="serving.log_records: true"):
        window.run(cfg, tmp_path / "w.parquet", url=url)
    with pytest.raises(window.WindowError, match="no answered request"):
        window.run(cfg, tmp_path / "w.parquet", url=f"sqlite:///{tmp_path}/empty.db")
    assert not (tmp_path / "w.parquet").exists()


def test_cli_window_fails_in_one_line_on_an_empty_log(project_root, tmp_path):
    from {{cookiecutter.package_name}}.cli.data import app

    config = str(project_root / "configs" / "system.yaml")
    args = ["window", "--url", f"sqlite:///{tmp_path}/empty.db", "--out", str(tmp_path / "w.pq")]
    result = CliRunner().invoke(app, [*args, "--config", config])
    assert result.exit_code == 1
    assert "no answered request with a kept record" in result.output


def test_a_cluster_window_run_needs_the_prediction_log_key(cfg, monkeypatch):
    for key in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "ENTITY_STORE_URL"):
        monkeypatch.setenv(
            key, "postgresql://u@db/x" if key != "MLFLOW_TRACKING_URI" else "http://m"
        )
    monkeypatch.delenv("PREDICTION_LOG_URL", raising=False)
    stores.require_durable(cfg, "app-runtime")  # a run on generated or imported data
    with pytest.raises(stores.StoreError, match="PREDICTION_LOG_URL \\(prediction log"):
        stores.require_durable(cfg, "app-runtime", window=True)
    monkeypatch.setenv("PREDICTION_LOG_URL", "postgresql://u@db/predictions")
    stores.require_durable(cfg, "app-runtime", window=True)


def test_schedule_trains_on_the_window_when_the_server_keeps_records(cfg, tmp_path):
    from test_pipeline import FakeClient

    from {{cookiecutter.package_name}}.pipeline import run as runner

    package = tmp_path / "pipeline.yaml"
    runner.compile_pipeline(cfg, package)
    keeping = cfg.model_copy(
        update={"serving": cfg.serving.model_copy(update={"log_records": True})}
    )
    for contract, arguments, expected in (
        (keeping, None, {"promote_to": "challenger", "data_source": "window"}),
        (
            keeping,
            {"data_source": "generate"},
            {"promote_to": "challenger", "data_source": "generate"},
        ),
        (cfg, None, {"promote_to": "challenger"}),
    ):
        client = FakeClient()
        runner.schedule(contract, None, arguments=arguments, package_path=package, client=client)
        assert client.calls[-1][2]["params"] == expected


@pytest.fixture(scope="module")
def keeping(tmp_path_factory, project_root):
    """A sample project whose server keeps raw records, and an engine on it."""
    root = tmp_path_factory.mktemp("window")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        project = sample_project(
            project_root / "configs" / "system.yaml",
            root,
            rows=scaled_rows(400),
            challenger=False,
            # A test-sized window: the contract's row floor would refuse it (rightly).
            overrides={"serving": {"log_records": True}, "data": {"min_rows": 100}},
        )
        mp.setenv("MLFLOW_TRACKING_URI", project.cfg.tracking_uri)
        yield project


def _cells(values: pd.Series) -> list:
    """Values with every kind of missing (None, NaN, NA) as None: NaN never equals itself."""
    return [None if pd.isna(v) else v for v in values.tolist()]


@pytest.mark.slow
def test_served_traffic_and_feedback_become_valid_training_data(keeping, tmp_path):
    """Requests answered by the real engine, some corrected by feedback, come back through
    ``get-data`` with data_source=window as rows the real validation and split accept."""
    from {{cookiecutter.package_name}}.data import split, validate
    from {{cookiecutter.package_name}}.pipeline import steps
    from {{cookiecutter.package_name}}.serving.engine import Engine
    from {{cookiecutter.package_name}}.serving.schema import record_model

    cfg = keeping.cfg
    url = f"sqlite:///{tmp_path}/predictions.db"
    engine = Engine.from_config(cfg, {"PREDICTION_LOG_URL": url})
    model = record_model(cfg)
    count = scaled_rows(120)  # enough positives for the contract's positive-rate check
    sent = keeping.records.tail(count).reset_index(drop=True)
    answers = engine.classify([model.model_validate(b) for b in request_bodies(cfg, sent)])
    engine.close()
    flipped = {p.request_id: (NEG if p.label == POS else POS) for p in answers[:10]}
    with PredictionLog(url) as log:
        log.add_feedback(
            [
                _feedback(f"k{i}", label, request_id=request_id)
                for i, (request_id, label) in enumerate(flipped.items())
            ]
        )

    artifact = SimpleNamespace(path=str(tmp_path / "raw"), metadata={})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREDICTION_LOG_URL", url)
        steps.get_data(str(keeping.config_path), steps.WINDOW_SOURCE, 0, artifact)
    assert artifact.metadata["rows"] == count and artifact.metadata["source"] == "labelled window"
    raw = tmp_path / "raw" / steps.RAW_FILE
    frame = pd.read_parquet(raw)
    id_column = cfg.data.column("id").name
    label = cfg.data.column("label").name
    assert frame[id_column].tolist() == sent[id_column].tolist()  # every answer, in order
    served = {p.message_id: (p.request_id, p.label) for p in answers}
    for message_id, got in zip(frame[id_column], frame[label], strict=True):
        request_id, as_served = served[message_id]
        assert got == flipped.get(request_id, as_served)
    # The raw record the model scored is what comes back (what retraining learns from).
    for column in [c.name for c in cfg.data.columns if c.dtype in ("string", "int", "float")]:
        if column != label:
            assert _cells(frame[column]) == _cells(sent[column]), column

    report = validate.run(cfg, raw, tmp_path / "validated", docs=False)
    assert validate.decide(report).proceed, report.summary()
    result = split.run(cfg, report.validated_path, tmp_path / "split")
    assert sum(part["rows"] for part in result.parts.values()) == count
