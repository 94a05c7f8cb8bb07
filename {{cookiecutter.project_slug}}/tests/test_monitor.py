"""The monitor stage: reading a window of the log, judging it against a reference, the report,
retraining arguments, and the whole loop on a small trained project."""

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from contract_labels import NEG, POS

from {{cookiecutter.package_name}}.distributions import reference_distributions
from {{cookiecutter.package_name}}.monitoring import monitor, report
from {{cookiecutter.package_name}}.monitoring.retrain import retrain, retrain_arguments
from {{cookiecutter.package_name}}.monitoring.window import read_window
from {{cookiecutter.package_name}}.predlog.store import PredictionLog

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def row(i, label, *, score=None, minutes=1, features=None, role="champion", served=True, **extra):
    return {
        "request_id": f"r{i}",
        "message_id": f"<m{i}@x>",
        "entity": f"s{i % 50}@x.org",
        "created_at": NOW - timedelta(minutes=minutes),
        "received_at": None,
        "model_name": "m",
        "model_version": 1,
        "role": role,
        "served": served,
        "routing": "single",
        "score": (0.9 if label == POS else 0.1) if score is None else score,
        "label": label,
        "threshold": 0.5,
        "latency_ms": 4.0,
        "features": features,
        **extra,
    }


@pytest.fixture()
def log(tmp_path):
    with PredictionLog(f"sqlite:///{tmp_path}/log.db") as opened:
        yield opened


def feedback(request_id=None, message_id=None, label=NEG, at=None, key=None):
    return {
        "request_id": request_id,
        "message_id": message_id,
        "label": label,
        "source": "test",
        "reported_at": at,
        "ingested_at": NOW,
        "key": key or f"{request_id}-{message_id}-{label}-{at}",
    }


def test_read_window_filters_by_time_and_joins_the_latest_feedback(log):
    log.record(
        [
            row(1, POS, features={"x": 1.5, "cat.content_type": "text/html"}),
            row(2, NEG, features={"x": None, "text.body.top": [0, 3]}),
            row(3, POS, minutes=60 * 30),  # outside a 24 h window
            row(1, NEG, role="challenger", served=False, features={"x": 1.5}),
        ]
    )
    log.add_feedback(
        [
            feedback("r1", label=NEG, at=NOW - timedelta(minutes=5)),
            feedback("r1", label=POS, at=NOW - timedelta(minutes=1)),  # latest wins
            feedback(message_id="<m2@x>", label=POS),  # by message id
        ]
    )
    log.record_error(3, RuntimeError("boom"))
    # The error is stamped with the real clock, which may be minutes past the module's NOW
    # when other tests run first.
    until = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)
    window = read_window(log, NOW - timedelta(hours=24), until)
    p = window.predictions
    assert list(p["request_id"]) == ["r1", "r2", "r1"]
    assert list(p["feedback"]) == [POS, POS, POS]
    assert list(p["served"]) == [True, True, False]
    assert window.errors == 3 and window.feedback_rows == 3
    assert window.features.loc[0, "x"] == 1.5 and np.isnan(window.features.loc[1, "x"])
    assert list(window.features.loc[1, "text.body.top"]) == [0, 3]
    assert len(window.served) == 2
    # Without the stored features (what `compare` reads): the same predictions and labels.
    lean = read_window(log, NOW - timedelta(hours=24), until, with_features=False)
    pd.testing.assert_frame_equal(lean.predictions, p)
    assert lean.features.columns.empty and len(lean.features) == 3


def test_read_window_types_features_from_the_reference(log):
    reference = {
        "features": {"x": {}},
        "categories": {"content_type": {}},
        "text": {"body": {}},
    }
    log.record([row(i, NEG, features={"x": None, "other": 1.0}) for i in range(3)])
    window = read_window(log, NOW - timedelta(hours=1), NOW, reference=reference)
    # All-null in the log, still a float column; every signal the reference knows is a column.
    assert window.features["x"].dtype == float and window.features["x"].isna().all()
    assert list(window.features["other"]) == [1.0, 1.0, 1.0]
    assert {"cat.content_type", "text.body.unseen", "text.body.top"} <= set(window.features)


def test_feature_names_are_stored_once_per_set(log):
    first = {"x": 1.0, "y": None, "cat.content_type": "text/html"}
    log.record([row(1, NEG, features=first), row(2, NEG, features={"y": 2.0, "x": 3.0})])
    assert sorted(log.feature_names().values()) == [["x", "y"], ["y", "x"]]
    # rows() gives the logged dicts back, whatever the set.
    assert [r["features"] for r in log.rows()] == [first, {"y": 2.0, "x": 3.0}]
    window = read_window(log, NOW - timedelta(hours=1), NOW)
    assert list(window.features["x"]) == [1.0, 3.0]
    assert window.features["y"].isna().tolist() == [True, False]


def test_empty_window_reads_as_empty_frames(log):
    window = read_window(log, NOW - timedelta(hours=1), NOW)
    assert window.predictions.empty and window.errors == 0


def reference_for(rng, n=5000):
    frame = pd.DataFrame({"x": rng.normal(0, 1, n), "y": rng.exponential(1.0, n)})
    scores = rng.beta(0.5, 1.5, n)
    ref = reference_distributions(frame, scores, rng.random(n) < 0.3)
    ref["predicted_positive_rate"] = float(np.mean(scores >= 0.5))
    return ref


def fill(log, rng, n, *, shift=0.0, fp_every=None):
    rows = []
    for i in range(n):
        score = float(rng.beta(0.5, 1.5))
        label = POS if score >= 0.5 else NEG
        x, y = rng.normal(shift, 1), rng.exponential(1.0)
        rows.append(row(i, label, score=score, features={"x": x, "y": y}))
    log.record(rows)
    if fp_every:
        positives = [r for r in rows if r["label"] == POS]
        log.add_feedback([feedback(r["request_id"]) for r in positives[::fp_every]])
    return rows


def judge(cfg, log, reference):
    window = read_window(log, NOW - timedelta(hours=2), NOW, reference=reference)
    return monitor.evaluate_window(cfg, window, reference, 1, 0.99)


def statuses(summary):
    return {c["name"]: c["status"] for c in summary["checks"]}


def test_a_healthy_window_is_ok_and_a_shifted_one_alerts_naming_the_feature(cfg, tmp_path):
    rng = np.random.default_rng(0)
    reference = reference_for(rng)
    with PredictionLog(f"sqlite:///{tmp_path}/ok.db") as log:
        fill(log, rng, 3000)
        healthy = judge(cfg, log, reference)
    assert statuses(healthy)["data drift"] == "ok", healthy["checks"]
    assert healthy["status"] == "ok", [c for c in healthy["checks"] if c["status"] != "ok"]
    with PredictionLog(f"sqlite:///{tmp_path}/drift.db") as log:
        fill(log, rng, 3000, shift=1.0)
        drifted = judge(cfg, log, reference)
    assert drifted["status"] == "alert"
    assert drifted["drift"]["alerts"] == ["x"]
    check = next(c for c in drifted["checks"] if c["name"] == "data drift")
    assert check["status"] == "alert" and "x" in check["reason"]


def test_many_rescues_raise_the_false_positive_alert(cfg, tmp_path):
    rng = np.random.default_rng(1)
    reference = reference_for(rng)
    with PredictionLog(f"sqlite:///{tmp_path}/fp.db") as log:
        fill(log, rng, 3000, fp_every=10)  # a tenth of the flagged items rescued
        summary = judge(cfg, log, reference)
    checks = {c["name"]: c for c in summary["checks"]}
    fp = next(c for name, c in checks.items() if "false" in name)
    assert fp["status"] == "alert" and summary["status"] == "alert"


def test_no_prediction_in_the_window_alerts(cfg, log):
    reference = reference_for(np.random.default_rng(2))
    summary = judge(cfg, log, reference)
    assert statuses(summary)["predictions"] == "alert"


def test_report_files_are_written_and_json_is_strict(cfg, tmp_path):
    rng = np.random.default_rng(3)
    reference = reference_for(rng)
    with PredictionLog(f"sqlite:///{tmp_path}/r.db") as log:
        fill(log, rng, 1500, shift=0.8, fp_every=20)
        summary = judge(cfg, log, reference)
    paths = report.write_report(summary, tmp_path / "out")
    body = json.loads(paths["json"].read_text(), parse_constant=pytest.fail)
    assert body["status"] == summary["status"] == "alert"
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "Data drift per feature" not in page or "x" in page
    assert '<span class="alert">alert</span>' in page


def test_exit_codes_are_distinct_for_schedulers():
    codes = monitor.EXIT_CODES
    assert codes == {"ok": 0, "warn": 3, "alert": 4}
    assert not {1, 2} & set(codes.values())  # crashes and bad input keep their own


def test_window_bounds(cfg):
    until = datetime(2026, 1, 2, tzinfo=UTC)
    since, end = monitor.window_bounds(cfg, None, until)
    assert end - since == timedelta(hours=cfg.monitoring.window_hours)
    with pytest.raises(ValueError, match="empty"):
        monitor.window_bounds(cfg, until, until)


def test_retraining_caps_promotion_at_challenger():
    assert retrain_arguments("data/live/x.parquet", trials=2) == {
        "promote_to": "challenger",
        "data_source": "data/live/x.parquet",
        "trials": 2,
    }


class FakeClient:
    def __init__(self):
        self.calls = []

    def create_run_from_pipeline_package(self, package, **kwargs):
        self.calls.append((package, kwargs))
        return type("Run", (), {"run_id": "run-1"})()


def test_kubeflow_retraining_submits_the_pipeline_as_challenger(cfg, tmp_path):
    client = FakeClient()
    result = retrain(
        cfg,
        tmp_path / "system.yaml",
        data="s3://bucket/recent.parquet",
        target="kubeflow",
        client=client,
        reasons=["data drift: x"],
    )
    assert result.succeeded and result.outcome == "submitted" and "run-1" in result.detail
    ((_, kwargs),) = client.calls
    assert kwargs["arguments"]["promote_to"] == "challenger"
    # A pod reads the data through an importer of its object-store URI, not as a path.
    assert kwargs["arguments"]["data_uri"] == "s3://bucket/recent.parquet"
    assert "data_source" not in kwargs["arguments"]

    local = retrain(cfg, tmp_path / "system.yaml", data="data/live/x.parquet", target="kubeflow")
    assert not local.succeeded and "a Kubeflow pod cannot read" in local.summary()


@pytest.mark.slow
def test_shadow_traffic_then_monitor_and_compare_from_the_cli(tmp_path, project_root, monkeypatch):
    """A sample champion and challenger, shadow traffic through the engine, audited feedback:
    `monitor` writes its report and exits with a scheduler code, `compare` judges the pair."""
    from sample_project import sample_project
    from typer.testing import CliRunner

    from {{cookiecutter.package_name}}.cli import app
    from {{cookiecutter.package_name}}.data.synthetic import generate
    from {{cookiecutter.package_name}}.predlog.feedback import ingest_feedback
    from {{cookiecutter.package_name}}.serving.engine import Engine
    from {{cookiecutter.package_name}}.serving.replay import (
        FeedbackPlan,
        replay,
        simulated_feedback,
    )

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = sample_project(project_root / "configs" / "system.yaml", tmp_path, rows=600)
    cfg = project.cfg
    start = project.records[cfg.data.column("timestamp").name].max() + pd.Timedelta(minutes=1)
    items = generate(cfg, 400, 7, days=14, start=start.to_pydatetime())
    engine = Engine.from_config(cfg, {"SERVING_ROUTING": "shadow"})
    try:
        replayed = replay(cfg, items, engine=engine, progress=False)
        assert engine.wait_for_shadow()
    finally:
        engine.close()
    feedback = tmp_path / "feedback.csv"
    simulated_feedback(cfg, replayed, FeedbackPlan(audit_share=1.0)).to_csv(feedback, index=False)
    with PredictionLog(cfg.sqlite_url(cfg.serving.prediction_log_url)) as log:
        ingest_feedback(cfg, feedback, log, quarantine_dir=tmp_path / "q")
        roles = [r["role"] for r in log.rows()]
    assert roles.count("champion") == roles.count("challenger") == 400

    runner = CliRunner()
    config = ["--config", str(project.config_path)]
    result = runner.invoke(app, ["monitor", "--out", str(tmp_path / "reports"), *config])
    assert result.exit_code in (0, 3, 4), result.output
    summary = json.loads((tmp_path / "reports" / "monitor.json").read_text())
    assert summary["exit_code"] == result.exit_code
    assert summary["window"]["served"] == 400 and summary["window"]["feedback_labels"] == 400
    assert (tmp_path / "reports" / "monitor.html").is_file()

    result = runner.invoke(app, ["compare", "--out", str(tmp_path / "reports"), *config])
    assert result.exit_code == 0, result.output
    comparison = json.loads((tmp_path / "reports" / "compare.json").read_text())
    assert comparison["mode"] == "paired" and comparison["pairs"] == 400
    assert comparison["labelled"] == 400
    assert comparison["labelled"] >= cfg.monitoring.min_labels  # enough to decide
    assert comparison["verdict"] in ("better", "worse", "not_distinguishable")
    assert "champion" in result.output and "challenger" in result.output

    # A mistyped --log-url (or $PREDICTION_LOG_URL) is refused, not created empty and
    # reported on; so is another SQLite database.
    typo = tmp_path / "typo" / "predictions.db"
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("create table runs (id integer)").connection.close()
    for command in ("monitor", "compare"):
        result = runner.invoke(app, [command, "--log-url", f"sqlite:///{typo}", *config])
        assert result.exit_code == 2 and "no prediction log there" in result.output
        monkeypatch.setenv("PREDICTION_LOG_URL", f"sqlite:///{typo}")
        result = runner.invoke(app, [command, *config])
        assert result.exit_code == 2 and "PREDICTION_LOG_URL" in result.output
        monkeypatch.delenv("PREDICTION_LOG_URL")
        result = runner.invoke(app, [command, "--log-url", f"sqlite:///{other}", *config])
        assert result.exit_code == 2 and "without a predictions table" in result.output
    assert not typo.parent.exists()
    assert {r[0] for r in sqlite3.connect(other).execute("select name from sqlite_master")} == {
        "runs"
    }
