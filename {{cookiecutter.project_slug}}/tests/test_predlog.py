"""The prediction log, feedback ingestion and the online metrics computed from them."""

import json
import math
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import typer
from contract_labels import NEG, POS
from typer.testing import CliRunner

from {{cookiecutter.package_name}}.cli import serving as serving_cli
from {{cookiecutter.package_name}}.predlog.entries import entries
from {{cookiecutter.package_name}}.predlog.featurelog import LoggedFeatures
from {{cookiecutter.package_name}}.predlog.feedback import FeedbackFileError, ingest_feedback
from {{cookiecutter.package_name}}.predlog.store import OnlineCounts, PredictionLog
from {{cookiecutter.package_name}}.serving.engine import new_request_ids
from {{cookiecutter.package_name}}.serving.logrows import logged_values


def prediction(request_id, label, *, message_id=None, role="champion", served=True, hours=0):
    return {
        "request_id": request_id,
        "message_id": message_id,
        "entity": "a@b.org",
        "created_at": datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=hours),
        "received_at": None,
        "model_name": "m",
        "model_version": 1,
        "role": role,
        "served": served,
        "routing": "single",
        "score": 0.9 if label == POS else 0.1,
        "label": label,
        "threshold": 0.5,
        "latency_ms": 3.0,
        "features": {"recipient_count": 1.0, "entity_seconds_since_prev": None},
    }


@pytest.fixture()
def log(tmp_path):
    with PredictionLog(f"sqlite:///{tmp_path}/log.db") as opened:
        yield opened


def test_record_round_trip_and_durable_file(log, tmp_path):
    log.record([prediction("r1", POS), prediction("r1", NEG, role="challenger", served=False)])
    rows = log.rows("r1")
    assert [r["role"] for r in rows] == ["champion", "challenger"]
    assert rows[0]["features"] == {"recipient_count": 1.0, "entity_seconds_since_prev": None}
    # Another connection (another process, after a crash) sees the committed rows.
    with PredictionLog(f"sqlite:///{tmp_path}/log.db") as again:
        assert again.count() == 2 and again.request_ids() == {"r1"}


def test_logged_values_keep_their_float32_and_cells_store_as_sqlalchemy_would(log):
    # The server logs a float32 row (orjson writes each value's shortest float32 form) and
    # inserts through SQLite's driver: both must read back as SQLAlchemy's own insert would.
    values = np.array([0.1, 1 / 3, 1e-40, 3.4e38, np.nan, np.inf, -0.0], dtype=np.float32)
    names = tuple(f"f{i}" for i in range(len(values)))
    row = prediction("r1", POS, message_id="<m@x>")
    row["received_at"] = datetime(2026, 1, 2, 3, 4, 5)  # no microseconds: still one format
    row["features"] = LoggedFeatures(names, values, {"text.body.top": [3, 7]})
    # A raw record whose integer is past 64 bits (orjson refuses it) is kept exactly.
    big = {"request_id": "r1", "created_at": row["created_at"], "record": {"n": 2**70}}
    log.record([row], [big])
    (logged,) = log.rows("r1")
    got = [logged["features"][n] for n in names]
    kept = [v if math.isfinite(v) else None for v in values.tolist()]
    assert np.array_equal(np.array(got[:4], dtype=np.float32), values[:4])
    assert got[4:] == [None, None, -0.0] == kept[4:]
    assert logged["features"]["text.body.top"] == [3, 7]
    assert logged["received_at"] == row["received_at"]
    assert logged["created_at"] == row["created_at"]
    assert logged["served"] is True and logged["model_version"] == 1
    with log.engine.connect() as conn:
        stored = conn.execute(sa.select(log.records.c.record)).scalar_one()
        times = conn.exec_driver_sql("SELECT received_at FROM predictions").scalar_one()
    assert stored == {"n": 2**70}
    assert times == "2026-01-02 03:04:05.000000"  # SQLAlchemy's SQLite DateTime format


@pytest.mark.parametrize("extreme", [1e39, -1e300, 1e-50, 5e-324])
def test_a_value_float32_cannot_hold_is_logged_whole_not_as_null_or_zero(log, extreme):
    features = np.array([[0.1, 2.5], [extreme, np.nan]])
    values = logged_values(features, 2, 2)
    assert values.dtype == np.float64  # the whole call keeps float64
    assert logged_values(features[:1], 1, 2).dtype == np.float32  # the usual case
    rows = []
    for i in range(2):
        row = prediction(f"r{i}", POS)
        row["features"] = LoggedFeatures(("a", "b"), values[i], {})
        rows.append(row)
    log.record(rows)
    back = {r["request_id"]: r["features"] for r in log.rows()}
    assert back["r1"] == {"a": extreme, "b": None}
    assert back["r0"] == {"a": 0.1, "b": 2.5}


class _Model:
    def __init__(self, name, version, role, threshold):
        self.name, self.version, self.role, self.threshold = name, version, role, threshold


def _entries(request_ids, models, served=True):
    n = len(request_ids)
    values = np.array([[0.1, np.nan], [np.inf, 1e-40], [3.4e38, -0.0]] * n, dtype=np.float32)[:n]
    return entries(
        request_ids=request_ids,
        message_ids=[f"<m{i}@x>" if i % 2 else None for i in range(n)],
        entities=[("a@b.org", None, "c@d.org")[i % 3] for i in range(n)],
        created_at=datetime(2026, 1, 2, 3, 4, 5),  # no microseconds: still one format
        received_at=[datetime(2026, 1, 2, 3, 4, 5) if i % 2 else None for i in range(n)],
        models=models,
        served=served,
        routing="canary",
        scores=np.linspace(0.05, 0.95, n),
        labels=np.array([POS, NEG] * n, dtype=object)[:n],
        latency_ms=1.25,
        names=("a", "b"),
        values=values,
        signals=[{"cat.kind": None, "text.body.top": [i, 7]} for i in range(n)],
    )


def _stored(log) -> list[tuple]:
    with log.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM predictions ORDER BY id").fetchall()
        sets = conn.exec_driver_sql("SELECT id, names FROM feature_sets").fetchall()
    return [tuple(r) for r in rows] + [tuple(s) for s in sets]


@pytest.mark.parametrize("mixed", [False, True], ids=["one model", "a model per row"])
def test_entries_as_columns_are_stored_as_the_same_rows_as_dicts(tmp_path, mixed):
    champion = _Model("m", 3, "champion", 0.5)
    challenger = _Model("m", 4, "challenger", np.float64(0.25))
    ids = [f"r{i}" for i in range(5)]
    models = [champion, challenger, champion, champion, challenger] if mixed else champion
    batch = _entries(ids, models)
    assert isinstance(batch.columns["model_version"], list) == mixed
    with (
        PredictionLog(f"sqlite:///{tmp_path}/columns.db") as columns,
        PredictionLog(f"sqlite:///{tmp_path}/dicts.db") as dicts,
    ):
        assert columns.record(batch) == set() and dicts.record(batch.dicts()) == set()
        assert _stored(columns) == _stored(dicts)
        assert [r["model_version"] for r in columns.rows()] == (
            [3, 4, 3, 3, 4] if mixed else [3] * 5
        )
        features = columns.rows("r1")[0]["features"]
        assert np.float32(features.pop("b")) == np.float32(1e-40)
        assert features == {"a": None, "cat.kind": None, "text.body.top": [1, 7]}
        # Reused request ids as columns: left out, the others inserted, as with dicts.
        again = _entries(["r1", "r9", "r3"], [champion] * 3)
        left_out = {"r3"} if mixed else {"r1", "r3"}  # mixed: r1 was the challenger's
        assert columns.record(again) == left_out == dicts.record(again.dicts())
        assert _stored(columns) == _stored(dicts)
        # Shadow rows share the served rows' request ids: never left out.
        shadow = _entries(ids, challenger, served=False)
        assert columns.record(shadow) == set() == dicts.record(shadow.dicts())
        assert _stored(columns) == _stored(dicts)


@pytest.mark.parametrize("short", ["signals", "labels", "models"])
def test_entries_refuse_a_column_of_another_length_than_the_request_ids(short):
    champion = _Model("m", 3, "champion", 0.5)
    whole = _entries(["a", "b", "c"], [champion] * 3)
    arguments = {
        "request_ids": whole.column("request_id"),
        "message_ids": whole.column("message_id"),
        "entities": whole.column("entity"),
        "created_at": whole.columns["created_at"],
        "received_at": whole.column("received_at"),
        "models": [champion] * 3,
        "served": True,
        "routing": "single",
        "scores": whole.column("score"),
        "labels": whole.column("label"),
        "latency_ms": None,
        "names": whole.names,
        "values": whole.values,
        "signals": whole.signals,
    }
    arguments[short] = arguments[short][:1]
    with pytest.raises(ValueError, match=f"1 {short} for 3 request ids"):
        entries(**arguments)


def test_server_request_ids_are_uuid7_in_time_order():
    # One at a time, and a batch's drawn together from one read of the random pool.
    ids = [new_request_ids(1)[0] for _ in range(1000)] + new_request_ids(1000)
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert len({i[12:] for i in ids}) == len(ids)  # the random part differs within a batch
    stamps = [int(i[:12], 16) for i in ids]
    assert stamps == sorted(stamps)  # millisecond prefix: never goes back
    assert abs(stamps[-1] - datetime.now(UTC).timestamp() * 1000) < 60_000


def test_online_counts_follow_the_contract_definitions(log):
    log.record(
        [prediction(f"p{i}", POS, message_id=f"<p{i}@x>") for i in range(10)]
        + [prediction(f"n{i}", NEG) for i in range(90)]
        + [prediction("old", POS, hours=48)]
        + [prediction("shadow", POS, role="challenger", served=False)]
    )
    feedback = [
        # Two rescues of positive predictions: one by request id, one by message id.
        {"request_id": "p0", "message_id": None, "label": NEG},
        {"request_id": None, "message_id": "<p1@x>", "label": NEG},
        # A confirmed positive and a missed positive (reported by the user).
        {"request_id": "p2", "message_id": None, "label": POS},
        {"request_id": "n0", "message_id": None, "label": POS},
        # Feedback on a prediction outside the window changes nothing.
        {"request_id": "old", "message_id": None, "label": NEG},
    ]
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {**f, "source": None, "reported_at": None, "ingested_at": now, "key": str(i)}
        for i, f in enumerate(feedback)
    ]
    assert log.add_feedback(rows) == (5, 0)
    assert log.add_feedback(rows[:2]) == (0, 2)

    counts = log.online_counts(datetime.now(UTC) - timedelta(days=1), POS, NEG)
    assert counts == OnlineCounts(
        predicted_positive=10, predicted_negative=90, rescued=2, reported=1
    )
    assert counts.precision == pytest.approx(8 / 10)
    assert counts.false_positive_rate == pytest.approx(2 / (2 + 90 - 1))
    empty = OnlineCounts(0, 0, 0, 0)
    assert math.isnan(empty.precision) and math.isnan(empty.false_positive_rate)


def test_feedback_file_quarantines_bad_rows_and_is_idempotent(cfg, log, tmp_path):
    log.record([prediction("r1", POS, message_id="<m1@x>"), prediction("r2", NEG)])
    path = tmp_path / "reports.csv"
    pd.DataFrame(
        {
            "request_id": ["r1", "", "r2", "", "r9", "r2", "r1"],
            "message_id": ["", "<m1@x>", "", "", "", "", ""],
            "label": [NEG.upper(), NEG, "maybe", POS, POS, POS, POS],
            # A report from 2099 would stay the latest, outvoting every later correction.
            "reported_at": ["2026-03-01T10:00:00Z", "", "", "", "", "yesterday-ish", "2099-01-01"],
        }
    ).to_csv(path, index=False)
    quarantine = tmp_path / "quarantine"
    result = ingest_feedback(cfg, path, log, quarantine_dir=quarantine)
    assert (result.read, result.inserted, result.rejected) == (7, 3, 4)
    reasons = {"bad_label": 1, "no_id": 1, "bad_time": 1, "time_out_of_range": 1}
    assert result.reasons == reasons
    assert result.unmatched == 1  # r9 is not in the log
    rejected = pd.read_csv(result.quarantine_path)
    assert sorted(rejected["reason"]) == sorted(reasons)
    assert "rejected 4" in result.summary()

    again = ingest_feedback(cfg, path, log, quarantine_dir=quarantine)
    assert (again.inserted, again.duplicates) == (0, 3)


def test_feedback_keyed_by_the_contracts_own_column_names(cfg, log, tmp_path):
    """A file exported with the contract's id and label column names is read as message_id
    and label."""
    record_id, label = cfg.data.column("id").name, cfg.data.column("label").name
    log.record([prediction("r7", POS, message_id="rec-7")])
    path = tmp_path / "labels.csv"
    pd.DataFrame({record_id: ["rec-7", "rec-8"], label: [NEG, POS]}).to_csv(path, index=False)
    result = ingest_feedback(cfg, path, log, quarantine_dir=tmp_path / "quarantine")
    assert (result.inserted, result.rejected, result.unmatched) == (2, 0, 1)


def test_feedback_formats_and_unreadable_files(cfg, log, tmp_path):
    jsonl = tmp_path / "f.jsonl"
    lines = [
        json.dumps({"request_id": "r1", "label": POS, "source": "button"}),
        '{"request_id": "r2", "label": ',  # cut short: this line alone is refused
        "",
        "[1, 2]",
        json.dumps({"request_id": "r3", "label": NEG}),
    ]
    text = ("\n".join(lines) + "\n").encode() + b'{"request_id": "r\xe9", "label": "x"}\n'
    jsonl.write_bytes(text)
    result = ingest_feedback(cfg, jsonl, log, quarantine_dir=tmp_path)
    assert (result.read, result.inserted, result.rejected) == (5, 2, 3)
    assert result.reasons == {"unreadable_line": 3}
    rejected = pd.read_csv(result.quarantine_path)
    assert rejected["_unreadable"].tolist() == [
        "line 2: not a JSON object",
        "line 4: not a JSON object",
        "line 6: not UTF-8",
    ]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n[]\n", encoding="utf-8")
    with pytest.raises(FeedbackFileError, match="no line is a JSON object"):
        ingest_feedback(cfg, broken, log, quarantine_dir=tmp_path)
    with pytest.raises(FeedbackFileError, match="unknown feedback format"):
        ingest_feedback(cfg, tmp_path / "f.xlsx", log, quarantine_dir=tmp_path)
    no_label = tmp_path / "n.csv"
    no_label.write_text("request_id\nr1\n", encoding="utf-8")
    with pytest.raises(FeedbackFileError, match=r"no 'label'.* column \(columns: request_id\)"):
        ingest_feedback(cfg, no_label, log, quarantine_dir=tmp_path)


def test_feedback_command(cfg, project_root, tmp_path):
    app = typer.Typer()
    app.command()(serving_cli.feedback)
    app.command("serve")(serving_cli.serve)
    path = tmp_path / "f.csv"
    path.write_text(f"request_id,label\nr1,{POS}\nr2,unknown\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path}/cli.db"
    config = str(project_root / "configs" / "system.yaml")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "feedback",
            str(path),
            "--log-url",
            url,
            "--quarantine",
            str(tmp_path / "q"),
            "-c",
            config,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "inserted 1" in result.output and "rejected 1" in result.output
    missing = runner.invoke(
        app, ["feedback", str(tmp_path / "nope.csv"), "--log-url", url, "-c", config]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
