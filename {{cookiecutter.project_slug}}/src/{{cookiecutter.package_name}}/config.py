"""Load and validate the system contract, ``configs/system.yaml``.

Every stage receives a :class:`SystemConfig`; no stage reads the YAML itself. A bad file fails
at load with one line per problem naming the key path, e.g.
``metrics.offline.target_precision: Input should be less than or equal to 1``.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .timebounds import EARLIEST, LATEST, as_utc

CONFIG_ENV_VAR = "SYSTEM_CONFIG"
DEFAULT_CONFIG = Path("configs/system.yaml")

Rate = Field(gt=0, le=1)


class ConfigError(ValueError):
    """The contract is missing, unreadable or violates a rule; the message names the key."""


class _Strict(BaseModel):
    # A misspelled key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Problem(_Strict):
    name: str = Field(min_length=1)
    type: Literal["binary_classification"]
    positive_class: str = Field(min_length=1)
    negative_class: str = Field(min_length=1)
    business_goal: str
    costly_error: Literal["false_positive", "false_negative"] = "false_positive"

    @model_validator(mode="after")
    def _classes_differ(self) -> Problem:
        if self.positive_class == self.negative_class:
            raise ValueError("positive_class and negative_class must differ")
        return self


class Requirements(_Strict):
    peak_qps: int = Field(gt=0)
    daily_volume: int = Field(gt=0)
    serving_latency_p99_ms: int = Field(gt=0)
    end_to_end_latency_ms: int = Field(gt=0)
    mode: Literal["online", "batch"] = "online"


class OfflineMetrics(_Strict):
    target_precision: float = Rate
    target_recall: float = Rate
    selection_metric: Literal["pr_auc", "roc_auc", "f1", "recall_at_target_precision"] = "pr_auc"
    promotion_margin: float = Field(ge=0, lt=1)
    # Validation precision is an estimate: aim this much above the target when choosing the
    # threshold, falling back to the target itself when no threshold reaches it.
    threshold_precision_margin: float = Field(default=0.005, ge=0, lt=1)


class OnlineMetric(_Strict):
    name: str
    source: Literal["feedback", "prediction_log"]
    description: str = ""


class Metrics(_Strict):
    offline: OfflineMetrics
    online: list[OnlineMetric] = []


class Alerts(_Strict):
    false_positive_rate_max: float = Rate
    precision_drop_max: float = Rate
    drift_psi_max: float = Field(gt=0)
    latency_p99_ms: int = Field(gt=0)
    error_rate_max: float = Rate
    no_predictions_minutes: int = Field(gt=0)
    # A feature's missing share may rise this much (absolute) over its reference.
    missing_rate_increase_max: float = Field(default=0.1, gt=0, le=1)
    # A check warns once its value reaches this share of its alert threshold.
    warn_fraction: float = Field(default=0.5, gt=0, le=1)


DType = Literal["string", "int", "float", "bool", "datetime"]
Role = Literal[
    "id", "timestamp", "label", "entity_key", "text", "categorical", "numeric", "datetime", "flags"
]


def _time(value: Any, key: str) -> datetime:
    """A datetime column's bound: an ISO 8601 date or time (UTC unless it says otherwise)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{key} {value!r} is not a date (expected ISO 8601, e.g. 1995-01-01)"
            ) from None
    elif not isinstance(value, datetime):
        raise ValueError(
            f"{key} of a datetime column must be a date such as 1995-01-01, got {value!r}"
        )
    try:
        value = as_utc(value)
    except ValueError as exc:
        raise ValueError(f"{key} {exc}") from None
    if not EARLIEST <= value <= LATEST:
        raise ValueError(
            f"{key} {value.isoformat()} is outside the time range the stages can hold "
            f"({EARLIEST.date()} .. {LATEST.date()})"
        )
    return value


class Column(_Strict):
    """One field of a raw record: what it holds and the checks validation applies to it."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    dtype: DType
    role: Role
    nullable: bool = False
    # Share of rows that must be non-null when the column is nullable.
    mostly: float = Field(default=1.0, ge=0, le=1)
    unique: bool = False
    allowed: list[str] | None = None
    # Bounds, inclusive: numbers on int / float columns, dates on datetime columns. A datetime
    # column is always kept inside the span the stages can hold (``timebounds``).
    min: float | datetime | None = None
    max: float | datetime | None = None
    # Datetime columns: the latest time allowed is the run's time plus this many days (none
    # given: nothing after the run).
    max_ahead_days: float | None = Field(default=None, ge=0, le=36500)

    @field_validator("min", "max", mode="before")
    @classmethod
    def _bound_type(cls, value: Any, info: ValidationInfo) -> Any:
        dtype, key = info.data.get("dtype"), info.field_name
        if value is None or dtype is None:
            return value
        if dtype == "datetime":
            return _time(value, key)
        if dtype in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} of a {dtype} column must be a number, got {value!r}")
            return float(value)
        raise ValueError(f"{key} applies to int, float and datetime columns, not {dtype}")

    @model_validator(mode="after")
    def _range_ordered(self) -> Column:
        if self.max_ahead_days is not None and self.dtype != "datetime":
            raise ValueError("max_ahead_days applies to datetime columns only")
        if self.min is not None and self.max is not None and self.min > self.max:
            later = "after" if self.dtype == "datetime" else "greater than"
            raise ValueError(f"min ({_shown(self.min)}) is {later} max ({_shown(self.max)})")
        if self.dtype == "datetime" and self.min is not None:
            _, high = self.time_bounds(datetime.now(UTC))
            if self.min > high:
                raise ValueError(
                    f"min ({_shown(self.min)}) is after the latest time allowed today "
                    f"({_shown(high)}): every record would be refused"
                )
        return self

    def time_bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """A datetime column's allowed span, inclusive, for a run at ``now`` (UTC)."""
        high = now + timedelta(days=self.max_ahead_days or 0)
        if isinstance(self.max, datetime):
            high = min(high, self.max)
        low = self.min if isinstance(self.min, datetime) else EARLIEST
        return max(low, EARLIEST), min(high, LATEST)


def _shown(value: float | datetime) -> str:
    return value.isoformat() if isinstance(value, datetime) else f"{value:g}"


class DataSource(_Strict):
    kind: Literal["synthetic", "file"]
    path: Path


class RateBounds(_Strict):
    min: float = Field(ge=0, le=1)
    max: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> RateBounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Data(_Strict):
    # The domain pack (src/<package>/domain/<name>) or none: the core alone.
    domain: str = Field(min_length=1)
    source: DataSource
    column_mapping: dict[str, str] = {}
    label_folders: dict[str, list[str]] = {}
    min_rows: int = Field(gt=0)
    positive_rate: RateBounds
    # The largest share of rows that may fail row checks (quarantined) while the run goes on
    # with the valid rest; beyond it, or when a data-set check fails, the data is refused.
    max_quarantine_share: float = Field(ge=0, le=1)
    columns: list[Column] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _older_allow_partial(cls, raw: Any) -> Any:
        # Contracts before max_quarantine_share said ``allow_partial``: true (any share of bad
        # rows may go to quarantine) or false (none may).
        if not isinstance(raw, dict) or "allow_partial" not in raw:
            return raw
        raw = dict(raw)
        allow = raw.pop("allow_partial")
        if "max_quarantine_share" in raw:
            raise ValueError(
                "allow_partial and max_quarantine_share both given: keep max_quarantine_share "
                "(allow_partial is its older form)"
            )
        if not isinstance(allow, bool):
            raise ValueError(f"allow_partial must be true or false, got {allow!r}")
        raw["max_quarantine_share"] = 1.0 if allow else 0.0
        return raw

    @field_validator("domain")
    @classmethod
    def _pack_present(cls, name: str) -> str:
        from .domain import require

        return require(name)

    @model_validator(mode="after")
    def _roles(self) -> Data:
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate column names: {', '.join(duplicates)}")
        for role in ("id", "label"):
            count = sum(c.role == role for c in self.columns)
            if count != 1:
                raise ValueError(f"exactly one column must have role '{role}', found {count}")
        # Records without an entity (no account, card or user behind them) have no history;
        # records without a time are split at random (stratified), not by time.
        for role in ("timestamp", "entity_key"):
            count = sum(c.role == role for c in self.columns)
            if count > 1:
                raise ValueError(f"at most one column may have role '{role}', found {count}")
        if self.timestamp is None:
            timed = [c.name for c in self.columns if c.role in ("entity_key", "datetime")]
            if timed:
                raise ValueError(
                    f"{', '.join(timed)} need a column with role 'timestamp': entity history "
                    "and ages are measured at the record's time"
                )
        unknown_targets = sorted(set(self.column_mapping.values()) - set(names))
        if unknown_targets:
            raise ValueError(
                f"column_mapping targets unknown columns: {', '.join(unknown_targets)}"
            )
        return self

    def column(self, role: Role) -> Column:
        """The single column with this role (id, label; timestamp or entity_key when present)."""
        return next(c for c in self.columns if c.role == role)

    @property
    def timestamp(self) -> str | None:
        """The record's time column, or None: the records are then split at random."""
        return next((c.name for c in self.columns if c.role == "timestamp"), None)

    @property
    def entity(self) -> str | None:
        """The entity key column's name, or None when the records have no entity."""
        return next((c.name for c in self.columns if c.role == "entity_key"), None)

    def columns_with(self, role: Role) -> list[Column]:
        """All columns with this role, in contract order."""
        return [c for c in self.columns if c.role == role]


class Split(_Strict):
    train: float = Field(gt=0, lt=1)
    validation: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1, got {total:g}")
        return self


class Optuna(_Strict):
    trials: int = Field(gt=0)
    timeout_s: int = Field(gt=0)
    storage: str
    study_name: str


class Mlflow(_Strict):
    tracking_uri: str
    experiment: str
    registered_model: str


class Training(_Strict):
    split: Split
    seed: int
    # The tuned estimator (models/estimators.py); absent in contracts older than the choice.
    model: Literal["xgboost", "lightgbm"] = "xgboost"
    new_entity_days: int = Field(gt=0)
    optuna: Optuna
    mlflow: Mlflow
    schedule: Literal["daily", "weekly"]
    # Days of served traffic a window run trains on (``data window``, data_source=window).
    window_days: float = Field(default=7, gt=0)

    @property
    def schedule_cron(self) -> str:
        """Six-field cron (seconds first, as Kubeflow recurring runs expect), 03:00 UTC."""
        return "0 0 3 * * *" if self.schedule == "daily" else "0 0 3 * * 1"


class Serving(_Strict):
    routing: Literal["single", "shadow", "canary"]
    canary_percent: float = Field(ge=0, le=100)
    max_body_bytes: int = Field(gt=0)
    max_batch_size: int = Field(gt=0)
    batch_max_latency_ms: int = Field(gt=0)
    prediction_log_url: str
    entity_store_url: str
    entity_cache_ttl_s: int = Field(ge=0)
    # Keep each answered request's raw record in the prediction log (``records`` table).
    log_records: bool = False
    # Days a raw record is kept (``data prune-records`` deletes older ones).
    records_retention_days: float = Field(default=30, gt=0)


class Monitoring(_Strict):
    window_hours: float = Field(default=24, gt=0)
    # Below this many predictions in a window, drift is not judged.
    min_rows: int = Field(default=200, ge=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    # `compare` decides only with at least this many labelled shadow pairs.
    min_labels: int = Field(default=200, ge=1)
    retrain: Literal["local", "kubeflow"] = "local"


class Platform(_Strict):
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    image: str
    deploy_strategy: Literal["argo-rollouts", "istio"]


class SystemConfig(_Strict):
    """The whole contract. ``root`` is the project folder that relative paths resolve against."""

    contract_version: int = Field(ge=1)
    problem: Problem
    requirements: Requirements
    metrics: Metrics
    alerts: Alerts
    data: Data
    training: Training
    serving: Serving
    monitoring: Monitoring = Monitoring()
    platform: Platform
    root: Path = Path(".")

    @model_validator(mode="after")
    def _records_outlive_the_window(self) -> SystemConfig:
        kept, window = self.serving.records_retention_days, self.training.window_days
        if kept < window:
            raise ValueError(
                f"serving.records_retention_days ({kept:g}) is shorter than "
                f"training.window_days ({window:g}): a window run would miss deleted records"
            )
        return self

    def path(self, relative: str | Path) -> Path:
        """Resolve a path from the contract against the project root."""
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    def sqlite_url(self, url: str) -> str:
        """Make a relative ``sqlite:///file.db`` URL absolute under the project root; a
        ``postgresql://`` URL names psycopg 3 (:func:`.stores.sqlalchemy_url`)."""
        from .stores import sqlalchemy_url

        url = sqlalchemy_url(url)
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(self.path(url[len(prefix) :]).resolve())
        return url

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` if set, else the contract's."""
        from .stores import sqlalchemy_url

        env = os.environ.get("MLFLOW_TRACKING_URI")
        return sqlalchemy_url(env) if env else self.sqlite_url(self.training.mlflow.tracking_uri)


def _column_name(raw: dict, loc: tuple) -> str | None:
    """The name of the column an error at ``data.columns.<i>...`` is about, if it has one."""
    if len(loc) < 3 or loc[:2] != ("data", "columns") or not isinstance(loc[2], int):
        return None
    data = raw.get("data")
    columns = data.get("columns") if isinstance(data, dict) else None
    if not isinstance(columns, list) or loc[2] >= len(columns):
        return None
    column = columns[loc[2]]
    return column.get("name") if isinstance(column, dict) else None


def _format_errors(error: ValidationError, raw: dict) -> str:
    lines = []
    for e in error.errors():
        key = ".".join(str(part) for part in e["loc"]) or "<root>"
        name = _column_name(raw, e["loc"])
        lines.append(f"{key}: {e['msg']}" + (f" (column {name!r})" if name else ""))
    return "\n".join(lines)


def find_config(path: str | Path | None = None) -> Path:
    """The contract to use: the argument, ``$SYSTEM_CONFIG``, or ``configs/system.yaml`` here."""
    return Path(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG)


def load_config(path: str | Path | None = None) -> SystemConfig:
    """Read and validate the contract; raise :class:`ConfigError` naming each bad key."""
    config_path = find_config(path)
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: contract not found (run from the project folder)")
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path}: expected a mapping at the top level")
    raw.setdefault("root", str(config_path.resolve().parent.parent))
    try:
        return SystemConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{config_path}: invalid contract\n{_format_errors(exc, raw)}") from exc
