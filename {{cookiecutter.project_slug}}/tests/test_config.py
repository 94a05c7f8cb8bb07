"""The contract loads into typed models, and every kind of bad file is refused by key."""

from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.config import ConfigError, load_config


def _write(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "configs" / "system.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def raw(project_root: Path) -> dict:
    return yaml.safe_load((project_root / "configs" / "system.yaml").read_text(encoding="utf-8"))


def test_contract_loads_with_typed_values(cfg):
    assert cfg.contract_version >= 1
    assert cfg.data.column("label").allowed == [
        cfg.problem.positive_class,
        cfg.problem.negative_class,
    ]
    assert cfg.data.column("timestamp").dtype == "datetime"
    assert abs(sum(cfg.training.split.model_dump().values()) - 1) < 1e-9


def test_relative_paths_resolve_against_the_project_root(cfg, project_root):
    assert cfg.root == project_root
    assert cfg.path("data/raw/x.parquet") == project_root / "data/raw/x.parquet"
    assert cfg.sqlite_url("sqlite:///mlflow.db") == f"sqlite:///{project_root / 'mlflow.db'}"
    assert cfg.sqlite_url("postgresql://db/mlflow") == "postgresql://db/mlflow"


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
        (lambda r: r["data"]["column_mapping"].update(text="no_such_column"), "no_such_column"),
        (lambda r: r["data"]["positive_rate"].update(min=0.9, max=0.1), "data.positive_rate"),
        (
            lambda r: r["problem"].update(negative_class=r["problem"]["positive_class"]),
            "must differ",
        ),
        (lambda r: r.pop("alerts"), "alerts: Field required"),
    ],
)
def test_bad_contract_names_the_key(tmp_path, raw, edit, expected):
    edit(raw)
    with pytest.raises(ConfigError) as excinfo:
        load_config(_write(tmp_path, raw))
    assert expected in str(excinfo.value)
