"""The contract loads into typed models, and every kind of bad file is refused by key."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from reference_contract import reference_config

from {{cookiecutter.package_name}}.config import ConfigError, load_config
from {{cookiecutter.package_name}}.stores import stores
from {{cookiecutter.package_name}}.timebounds import EARLIEST, LATEST


def _write(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "configs" / "system.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def raw(project_root: Path) -> dict:
    """The reference contract (reference_contract.py) as a file holds it: these tests break it
    by column name."""
    project = load_config(project_root / "configs" / "system.yaml")
    return reference_config(project).model_dump(mode="json", exclude={"root"})


def test_contract_loads_with_typed_values(cfg):
    assert cfg.contract_version >= 1
    assert cfg.data.column("label").allowed == [
        cfg.problem.positive_class,
        cfg.problem.negative_class,
    ]
    assert cfg.data.column("timestamp").dtype == "datetime"
    assert abs(sum(cfg.training.split.model_dump().values()) - 1) < 1e-9


def test_the_entity_key_is_optional(raw, tmp_path):
    """Records without an entity (no account or user behind them) are a valid contract."""
    for column in raw["data"]["columns"]:
        if column["role"] == "entity_key":
            column["role"] = "categorical"
    cfg = load_config(_write(tmp_path, raw))
    assert cfg.data.entity is None and cfg.data.columns_with("entity_key") == []
    # No history to keep, so a cluster run does not ask for an entity store.
    assert "ENTITY_STORE_URL" not in {store.key for store in stores(cfg)}


def test_the_timestamp_is_optional_for_records_without_an_entity_or_ages(raw, tmp_path):
    """Records without a time split at random; an entity's history or an age needs the time,
    so a contract keeping them without one is refused in one line naming them."""
    raw["data"]["columns"] = [c for c in raw["data"]["columns"] if c["role"] != "timestamp"]
    with pytest.raises(ConfigError, match="account, account_created_at need a column with role"):
        load_config(_write(tmp_path, raw))
    timed = ("entity_key", "datetime")
    raw["data"]["columns"] = [c for c in raw["data"]["columns"] if c["role"] not in timed]
    cfg = load_config(_write(tmp_path, raw))
    assert cfg.data.timestamp is None and cfg.data.entity is None


def test_relative_paths_resolve_against_the_project_root(cfg, project_root):
    assert cfg.root == project_root
    assert cfg.path("data/raw/x.parquet") == project_root / "data/raw/x.parquet"
    assert cfg.sqlite_url("sqlite:///mlflow.db") == f"sqlite:///{project_root / 'mlflow.db'}"
    # Other databases keep their place; plain postgresql:// names the installed driver.
    assert cfg.sqlite_url("postgresql://db/mlflow") == "postgresql+psycopg://db/mlflow"


def test_tracking_uri_environment_wins(cfg, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cfg.tracking_uri.startswith("sqlite:///")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert cfg.tracking_uri == "http://mlflow.internal:5000"


def test_schedule_is_a_six_field_cron(cfg):
    assert len(cfg.training.schedule_cron.split()) == 6


def test_config_from_environment_variable(tmp_path, raw, monkeypatch):
    raw["problem"]["business_goal"] = "from the environment"
    monkeypatch.setenv("SYSTEM_CONFIG", str(_write(tmp_path, raw)))
    assert load_config().problem.business_goal == "from the environment"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="contract not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_is_refused(tmp_path):
    path = tmp_path / "system.yaml"
    path.write_text("problem: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, ["a", "list"]))


def _col(raw: dict, name: str) -> dict:
    return next(c for c in raw["data"]["columns"] if c["name"] == name)


def _ts(raw: dict) -> dict:
    column = raw["data"]["columns"][1]
    assert column["role"] == "timestamp"
    return column


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda r: r["metrics"]["offline"].update(target_precision=1.5),
            "metrics.offline.target_precision",
        ),
        (
            lambda r: r["metrics"]["offline"].update(target_recall=0),
            "metrics.offline.target_recall",
        ),
        (lambda r: r["requirements"].update(peak_qps=-5), "requirements.peak_qps"),
        (
            lambda r: r["requirements"].update(serving_latency_p99_ms="fast"),
            "requirements.serving_latency_p99_ms",
        ),
        (lambda r: r["alerts"].update(false_positive_rate_max=2), "alerts.false_positive_rate_max"),
        (lambda r: r["training"].update(schedule="hourly"), "training.schedule"),
        (lambda r: r["serving"].update(routing="blue-green"), "serving.routing"),
        (lambda r: r["platform"].update(namespace="Bad_NS"), "platform.namespace"),
        (lambda r: r["training"]["split"].update(train=0.9), "training.split"),
        (lambda r: r["metrics"].update(offline_targets={}), "metrics.offline_targets"),
        (lambda r: r["data"]["columns"][0].update(dtype="uuid"), "data.columns.0.dtype"),
        (lambda r: r["data"]["columns"][0].update(colour="red"), "data.columns.0.colour"),
        (lambda r: r["data"]["columns"].append(dict(r["data"]["columns"][0])), "duplicate column"),
        (lambda r: r["data"]["columns"][1].update(role="numeric"), "role 'timestamp'"),
        (lambda r: _col(r, "subject").update(role="entity_key"), "at most one column"),
        (
            lambda r: _col(r, "account_created_at").update(role="timestamp"),
            "at most one column may have role 'timestamp'",
        ),
        (lambda r: r["data"]["column_mapping"].update(text="no_such_column"), "no_such_column"),
        (lambda r: r["data"]["positive_rate"].update(min=0.9, max=0.1), "data.positive_rate"),
        (lambda r: r["data"].update(domain="no_such_pack"), "data.domain: Value error, no pack"),
        (
            lambda r: r["problem"].update(negative_class=r["problem"]["positive_class"]),
            "must differ",
        ),
        (lambda r: r.pop("alerts"), "alerts: Field required"),
        (lambda r: r["data"].update(max_quarantine_share=1.5), "data.max_quarantine_share"),
        (lambda r: r["data"].pop("max_quarantine_share"), "data.max_quarantine_share"),
        (lambda r: r["data"].update(allow_partial=True), "allow_partial and max_quarantine_share"),
        # Bounds of a datetime column: dates, ordered, inside what the stages can hold.
        (lambda r: _ts(r).update(min="1995-13-45"), "data.columns.1.min: Value error, min '1995"),
        (lambda r: _ts(r).update(max="yesterday"), "max 'yesterday' is not a date"),
        (lambda r: _ts(r).update(min=1995), "min of a datetime column must be a date"),
        (lambda r: _ts(r).update(min="2001-01-01", max="2000-01-01"), "is after max"),
        (lambda r: _ts(r).update(min="1600-01-01"), "outside the time range"),
        (lambda r: _ts(r).update(max="2300-01-01"), "outside the time range"),
        (lambda r: _ts(r).update(min="2200-01-01"), "every record would be refused"),
        (lambda r: _ts(r).update(max_ahead_days=-1), "data.columns.1.max_ahead_days"),
        (lambda r: _col(r, "recipient_count").update(min="1995-01-01"), "must be a number"),
        (lambda r: _col(r, "recipient_count").update(max_ahead_days=1), "datetime columns only"),
        (lambda r: _col(r, "recipient_count").update(min=5, max=1), "greater than max"),
        (lambda r: _col(r, "subject").update(min=1), "applies to int, float and datetime"),
    ],
)
def test_bad_contract_names_the_key(tmp_path, raw, edit, expected):
    edit(raw)
    with pytest.raises(ConfigError) as excinfo:
        load_config(_write(tmp_path, raw))
    assert expected in str(excinfo.value)


def test_timestamp_bounds_are_dates_and_the_upper_one_follows_the_run(cfg):
    cfg = reference_config(cfg)
    column = cfg.data.column("timestamp")
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    low, high = column.time_bounds(now)
    assert low == datetime(1995, 1, 1, tzinfo=UTC)
    assert high == now + timedelta(days=column.max_ahead_days)
    # Whatever the contract says, a datetime never leaves what the stages can hold.
    created = next(c for c in cfg.data.columns if c.name == "account_created_at")
    assert created.model_copy(update={"min": None}).time_bounds(now)[0] == EARLIEST
    assert column.time_bounds(datetime(2262, 4, 10, tzinfo=UTC))[1] == LATEST


def test_bounds_read_as_yaml_dates_or_text_and_show_as_iso(tmp_path, raw):
    _ts(raw).update(min=date(1995, 1, 1), max="2100-01-01T00:00:00+02:00")
    column = load_config(_write(tmp_path, raw)).data.column("timestamp")
    assert column.min == datetime(1995, 1, 1, tzinfo=UTC)
    assert column.max == datetime(2099, 12, 31, 22, tzinfo=UTC)
    assert column.model_dump(mode="json")["min"] == "1995-01-01T00:00:00Z"


@pytest.mark.parametrize(("allow", "share"), [(True, 1.0), (False, 0.0)])
def test_older_allow_partial_still_reads(tmp_path, raw, allow, share):
    raw["data"].pop("max_quarantine_share")
    raw["data"]["allow_partial"] = allow
    assert load_config(_write(tmp_path, raw)).data.max_quarantine_share == share


def test_a_bound_whose_offset_leaves_the_calendar_is_a_config_error(tmp_path, raw):
    _ts(raw).update(min="0001-01-01T00:00:00+05:00")
    with pytest.raises(ConfigError, match="outside the dates a datetime holds"):
        load_config(_write(tmp_path, raw))


def test_config_check_names_a_bad_bound_in_one_line(tmp_path, raw):
    from typer.testing import CliRunner

    from {{cookiecutter.package_name}}.cli import app

    _ts(raw).update(min="1995-02-30")
    result = CliRunner().invoke(app, ["config", "check", "--config", str(_write(tmp_path, raw))])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if "data.columns" in line]
    assert lines == [
        "data.columns.1.min: Value error, min '1995-02-30' is not a date (expected ISO 8601, "
        "e.g. 1995-01-01) (column 'received_at')"
    ]
