"""Batch scoring (`predict FILE --out FILE`): the contract's checks, the server's scores, the log.

One sample project (a small champion, a materialized entity store) and one file of later
records serve the module. Batch scoring must give each record the score the server gives it,
log what the server logs, quarantine bad rows with their reasons, refuse a file the contract
refuses as a whole, and be idempotent when a file is scored again.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sample_project import request_bodies, required_fields, sample_project
from typer.testing import CliRunner

from {{cookiecutter.package_name}}.cli import app
from {{cookiecutter.package_name}}.data.synthetic import generate
from {{cookiecutter.package_name}}.data.validate import validate_records
from {{cookiecutter.package_name}}.features import store as store_module
from {{cookiecutter.package_name}}.predlog.store import KEY_MAX_CHARS, PredictionLog
from {{cookiecutter.package_name}}.serving import batch
from {{cookiecutter.package_name}}.serving.engine import Engine
from {{cookiecutter.package_name}}.serving.loading import load_models
from {{cookiecutter.package_name}}.serving.logrows import LogRows, ModelStamp
from {{cookiecutter.package_name}}.serving.logwriter import (
    LogChunk,
    LogWriterError,
    ProcessLogWriter,
    usable_cores,
)
from {{cookiecutter.package_name}}.serving.routing import RoutingPlan
from {{cookiecutter.package_name}}.serving.schema import (
    FrameBuilder,
    fill_omitted,
    flag_targets,
    record_model,
)

ROWS = 160


@pytest.fixture(scope="module")
def sample(tmp_path_factory, project_root):
    root = tmp_path_factory.mktemp("batch")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        project = sample_project(
            project_root / "configs" / "system.yaml", root, rows=400, challenger=False
        )
        mp.setenv("MLFLOW_TRACKING_URI", project.cfg.tracking_uri)
        mp.setenv("SYSTEM_CONFIG", str(project.config_path))
        yield project


def _later(sample, rows: int) -> pd.DataFrame:
    """Records after the sample's (the entity store expects time order), in shuffled order."""
    cfg = sample.cfg
    start = None
    if cfg.data.timestamp:
        start = sample.records[cfg.data.timestamp].max() + pd.Timedelta(minutes=1)
    frame = generate(cfg, rows, 11, days=1, start=start)
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


@pytest.fixture(scope="module")
def later(sample) -> pd.DataFrame:
    return _later(sample, ROWS)


def _stores(sample, folder: Path) -> dict:
    """A fresh prediction log and a copy of the materialized entity store, as server env."""
    folder.mkdir(parents=True, exist_ok=True)
    store = sample.cfg.path(sample.cfg.serving.entity_store_url.removeprefix("sqlite:///"))
    shutil.copyfile(store, folder / "store.db")
    return {
        "PREDICTION_LOG_URL": f"sqlite:///{folder}/log.db",
        "ENTITY_STORE_URL": f"sqlite:///{folder}/store.db",
    }


def _sends(env: dict) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(env["ENTITY_STORE_URL"])
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("select count(*) from entity_sends")).scalar())
    finally:
        engine.dispose()


def test_predict_scores_and_logs_each_record_as_the_server_does(
    sample, later, tmp_path, monkeypatch
):
    cfg = sample.cfg
    label, id_column = cfg.data.column("label").name, cfg.data.column("id").name
    source = tmp_path / "records.parquet"
    later.drop(columns=[label]).to_parquet(source, index=False)  # records to score: no label
    env = _stores(sample, tmp_path / "batch")
    with monkeypatch.context() as patched:  # predict's chunks take the store's array path,
        patched.setattr(store_module, "_BLOCK_ROWS", 16)  # the server's request row by row
        result = batch.run(
            cfg, source, tmp_path / "out" / "predictions.csv", env=env, chunk_rows=64
        )
    assert (result.rows, result.scored, result.quarantined, result.from_log) == (ROWS, ROWS, 0, 0)
    assert result.model_version == sample.champion_version
    predictions = pd.read_csv(result.output, dtype={id_column: str})
    assert predictions["source_row"].tolist() == list(range(ROWS))  # the input's order
    assert predictions[id_column].tolist() == later[id_column].astype(str).tolist()
    assert set(predictions["prediction"]) <= {
        cfg.problem.positive_class,
        cfg.problem.negative_class,
    }
    assert result.report.is_file() and result.quarantine is None

    # The server, on its own copy of the store, scores the same records in one request.
    served_env = _stores(sample, tmp_path / "served")
    engine = Engine.from_config(cfg, served_env)
    try:
        records = [record_model(cfg).model_validate(b) for b in request_bodies(cfg, later)]
        answers = engine.classify(records)
    finally:
        engine.close()
    np.testing.assert_allclose(
        predictions["score"].to_numpy(), [a.score for a in answers], rtol=1e-6, atol=1e-9
    )
    assert predictions["prediction"].tolist() == [a.label for a in answers]

    # The log holds one served batch prediction per record, with the values the server logs.
    with PredictionLog(env["PREDICTION_LOG_URL"]) as log:
        logged = {r["message_id"]: r for r in log.rows()}
    with PredictionLog(served_env["PREDICTION_LOG_URL"]) as log:
        online = {r["message_id"]: r for r in log.rows()}
    assert len(logged) == ROWS
    assert {(r["routing"], r["served"], r["role"]) for r in logged.values()} == {
        ("batch", True, "champion")
    }
    request_of = dict(zip(predictions[id_column], predictions["request_id"], strict=True))
    for key, row in logged.items():
        assert row["request_id"] == request_of[key]
        if row["received_at"] is not None:  # ids follow time: its milliseconds come first
            ms = pd.Timestamp(row["received_at"]).value // 1_000_000
            assert row["request_id"][:12] == f"{ms & (2**48 - 1):012x}"
        assert row["features"] == online[key]["features"], key
        assert row["received_at"] == online[key]["received_at"]
    # Each record was recorded in the entity store once, as the server records it.
    assert _sends(env) == _sends(served_env)

    # Scored again: read back from the log, nothing logged or recorded twice.
    sends = _sends(env)
    again = batch.run(cfg, source, tmp_path / "again.parquet", env=env, chunk_rows=64)
    assert (again.scored, again.from_log) == (ROWS, ROWS)
    repeated = pd.read_parquet(again.output)
    np.testing.assert_array_equal(repeated["score"].to_numpy(), predictions["score"].to_numpy())
    with PredictionLog(env["PREDICTION_LOG_URL"]) as log:
        assert log.count() == ROWS
    assert _sends(env) == sends


def _needed(cfg, frame: pd.DataFrame) -> list[dict]:
    """Request bodies of ``frame`` with what a request must carry, its id and its time only."""
    needed = {*required_fields(cfg), cfg.data.column("id").name, cfg.data.timestamp}
    return [{k: v for k, v in b.items() if k in needed} for b in request_bodies(cfg, frame)]


def test_a_file_is_filled_in_as_the_server_fills_a_request(sample, later):
    """Cell by cell, what predict fills in for a file of request bodies is what the server fills
    in for those requests: defaults, the pack's completions and, with a flags column, the
    missing:<field> flags ingest writes (blank text flagged too)."""
    cfg = sample.cfg
    bodies = _needed(cfg, later)
    _, blank = flag_targets(cfg)
    if blank:
        bodies[0][blank[0]], bodies[1][blank[0]] = "", "  "
    frame, _ = fill_omitted(cfg, pd.DataFrame(bodies))
    builder, model, now = FrameBuilder(cfg), record_model(cfg), datetime.now(UTC)
    for i, body in enumerate(bodies):
        served = builder.values(model.model_validate(body), now)
        for name, value in served.items():
            got = frame.at[i, name] if name in frame else None
            if name != cfg.data.timestamp and not (pd.isna(got) and value is None):
                assert got == value, (i, name, got, value)
    if blank:
        flags = frame[flag_targets(cfg)[0]]
        assert all(f"missing:{blank[0]}" in flags[i].split(",") for i in (0, 1))


def test_a_file_of_what_a_request_needs_is_scored_as_those_requests(sample, later, tmp_path):
    """What a request may omit, a file may omit: predict fills it in as the server fills the
    request (defaults, the pack's completions), says which, and gives the server's scores."""
    cfg = sample.cfg
    label = cfg.data.column("label").name
    bodies = _needed(cfg, later)
    given_names = {*required_fields(cfg), cfg.data.column("id").name, cfg.data.timestamp}
    source = tmp_path / "requests.jsonl"
    source.write_text("".join(json.dumps(b) + "\n" for b in bodies), encoding="utf-8")
    env = _stores(sample, tmp_path / "b")
    result = batch.run(cfg, source, tmp_path / "p.parquet", env=env, log_writer="inline")
    assert (result.scored, result.quarantined) == (len(bodies), 0), result.notes
    omitted = [
        c.name
        for c in cfg.data.columns
        if not c.nullable and c.name not in given_names and c.name != label
    ]
    said = " ".join(result.notes)
    assert all(f"{name} ({len(bodies):,})" in said for name in omitted), said

    engine = Engine.from_config(cfg, _stores(sample, tmp_path / "served"))
    try:
        answers = engine.classify([record_model(cfg).model_validate(b) for b in bodies])
    finally:
        engine.close()
    scored = pd.read_parquet(result.output)
    np.testing.assert_allclose(
        scored["score"].to_numpy(), [a.score for a in answers], rtol=1e-6, atol=1e-9
    )


def test_values_no_request_could_hold_are_left_for_validation_to_name(sample, tmp_path):
    """Filling in what a file omits never trips on a value a request could not hold (a number
    as the entity key, a list as text): the run goes on, and such a record is judged by the
    contract like any other."""
    cfg = sample.cfg
    bodies = _needed(cfg, _later(sample, max(ROWS, int(2 / cfg.data.max_quarantine_share) + 1)))
    dtypes = {c.name: c.dtype for c in cfg.data.columns}
    texts = [n for n in required_fields(cfg) if dtypes[n] == "string" and n != cfg.data.entity]
    if cfg.data.entity:
        bodies[0][cfg.data.entity] = 12345
    if texts:
        bodies[1][texts[-1]] = ["not", "text"]
    source = tmp_path / "odd.jsonl"
    source.write_text("".join(json.dumps(b) + "\n" for b in bodies), encoding="utf-8")
    env = _stores(sample, tmp_path / "b")
    result = batch.run(cfg, source, tmp_path / "p.parquet", env=env, log_writer="inline")
    assert result.scored + result.quarantined == len(bodies)
    if texts:
        quarantine = pd.read_parquet(result.quarantine)
        reasons = dict(zip(quarantine["source_row"], quarantine["reason"], strict=True))
        assert f"type: {texts[-1]} (not text)" in reasons[1]


@given(
    ids=st.lists(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False)), max_size=20),
    ms=st.lists(st.one_of(st.none(), st.integers(-(2**43), 2**43)), min_size=20, max_size=20),
    zone=st.sampled_from([None, "UTC", "Asia/Kolkata"]),
    digests=st.lists(st.integers(0, 2**64 - 1), min_size=20, max_size=20),
)
def test_request_ids_of_a_column_are_each_records_request_id(ids, ms, zone, digests):
    """The chunk's ids, read as one array of times, are the ids a previous run logged (the
    name-based UUID of ``uuid.uuid5`` of the id and its values' digest, the record's time in
    milliseconds first); another digest, another id."""
    times = pd.Series(pd.to_datetime([m for m in ms[: len(ids)]], unit="ms"), dtype="M8[ns]")
    if zone:
        times = times.dt.tz_localize("UTC").dt.tz_convert(zone)
    digests = digests[: len(ids)]
    expected = [
        batch.request_id(i, t, d) for i, t, d in zip(ids, times.tolist(), digests, strict=True)
    ]
    assert batch.request_ids(ids, times, digests) == expected
    assert batch.request_ids(ids, times.astype(object), digests) == expected
    assert batch.request_ids(ids) == [uuid.uuid5(batch._NAMESPACE, str(i)).hex for i in ids]
    for i, key, m, d in zip(ids, expected, ms, digests, strict=False):
        name = uuid.uuid5(batch._NAMESPACE, f"{i}\x1f{d:016x}").hex
        assert key == (name if m is None else f"{m & (2**48 - 1):012x}{name[12:]}")
        other = batch.request_id(i, None, (d + 1) % 2**64)
        assert other[12:] != key[12:]


def _logged(env: dict) -> list[dict]:
    """The log's rows by request id, without what differs between runs (row id, time)."""
    with PredictionLog(env["PREDICTION_LOG_URL"]) as log:
        rows = sorted(log.rows(), key=lambda r: r["request_id"])
    return [{k: v for k, v in r.items() if k not in ("id", "created_at")} for r in rows]


def test_the_log_written_beside_the_scoring_is_the_log_written_in_turn(sample, later, tmp_path):
    """A second process logs each chunk while the next is scored: the same predictions, log
    rows and entity sends as logging in turn, and scoring the file again reads them back."""
    cfg = sample.cfg
    source = tmp_path / "records.parquet"
    later.drop(columns=[cfg.data.column("label").name]).to_parquet(source, index=False)
    runs = {}
    for writer in ("inline", "process"):
        env = _stores(sample, tmp_path / writer)
        result = batch.run(
            cfg, source, tmp_path / f"{writer}.parquet", env=env, chunk_rows=48, log_writer=writer
        )
        assert (result.log_writer, result.scored) == (writer, ROWS)
        predictions = pd.read_parquet(result.output).drop(columns="scored_at")
        runs[writer] = (predictions, _logged(env), _sends(env), env)
    pd.testing.assert_frame_equal(runs["process"][0], runs["inline"][0])
    assert len(runs["process"][1]) == ROWS and runs["process"][1] == runs["inline"][1]
    assert runs["process"][2] == runs["inline"][2]

    env = runs["process"][3]
    again = batch.run(cfg, source, tmp_path / "again.parquet", env=env, chunk_rows=48)
    assert (again.scored, again.from_log) == (ROWS, ROWS)
    assert _logged(env) == runs["process"][1]
    with pytest.raises(ValueError, match="log_writer: 'thread' is not one of"):
        batch.run(cfg, source, tmp_path / "x.parquet", env=env, log_writer="thread")


def test_auto_logs_in_a_writer_for_several_chunks_on_several_cores(sample, later, tmp_path):
    """``auto`` logs in a writer process when there is more than one chunk and more than one
    core, else in turn: the same log and the same entity sends either way."""
    cfg = sample.cfg
    source = tmp_path / "records.parquet"
    later.drop(columns=[cfg.data.column("label").name]).to_parquet(source, index=False)
    env = _stores(sample, tmp_path / "auto")
    result = batch.run(cfg, source, tmp_path / "auto.parquet", env=env, chunk_rows=48)
    assert result.log_writer == ("process" if usable_cores() > 1 else "inline")
    inline = _stores(sample, tmp_path / "inline")
    batch.run(cfg, source, tmp_path / "in.parquet", env=inline, chunk_rows=48, log_writer="inline")
    assert len(_logged(env)) == ROWS and _logged(env) == _logged(inline)
    assert _sends(env) == _sends(inline)

    one = _stores(sample, tmp_path / "one")
    whole = batch.run(cfg, source, tmp_path / "one.parquet", env=one, chunk_rows=ROWS)
    assert whole.log_writer == "inline" and _logged(one) == _logged(inline)


@given(rows=st.integers(0, 60_000), chunk_rows=st.integers(1, 20_000))
def test_chunks_cover_the_file_in_order_and_shrink_towards_its_end(rows, chunk_rows):
    bounds = batch.chunk_bounds(rows, chunk_rows)
    if not bounds:
        assert rows == 0
        return
    starts, stops = zip(*bounds, strict=True)
    assert starts == (0, *stops[:-1]) and stops[-1] == rows  # in order, the whole file
    sizes = [stop - start for start, stop in bounds]
    assert all(0 < size <= chunk_rows for size in sizes)
    assert sizes[1:] == sorted(sizes[1:], reverse=True)
    assert sizes[-1] <= max(1, chunk_rows // batch.TAIL_PIECE)
    assert len(bounds) <= -(-rows // chunk_rows) + 10  # the taper adds a few chunks
    plain = batch.chunk_bounds(rows, chunk_rows, taper=False)  # logged in turn
    assert [start for start, _ in plain] == list(range(0, rows, chunk_rows))
    assert [stop for _, stop in plain] == [*range(chunk_rows, rows, chunk_rows), rows]


def test_a_writer_never_started_is_stopped_at_once():
    writer = ProcessLogWriter()  # auto's, for a file of one chunk: it has opened nothing
    writer.close()
    assert writer._process.returncode == -signal.SIGKILL


def test_a_record_in_the_chunk_being_logged_is_not_scored_or_logged_twice(sample, later, tmp_path):
    """A request id handed to the writer but perhaps not committed yet is reused, as one in the
    log is (a contract whose ids need not be unique can repeat a record across chunks)."""
    cfg = sample.cfg
    env = _stores(sample, tmp_path / "stores")
    report = validate_records(cfg, later, docs=False, scoring=True)
    valid = report.valid.sort_values(cfg.data.timestamp) if cfg.data.timestamp else report.valid
    champion, _ = load_models(cfg, RoutingPlan("single"), env)
    url = env["PREDICTION_LOG_URL"]
    scorer = batch._Scorer(cfg, champion, env, url, writer=ProcessLogWriter())
    try:
        first = scorer.score(valid.iloc[:30])
        second = scorer.score(valid.iloc[20:50])  # 10 records of the first chunk again
    finally:
        scorer.close()
    assert scorer.from_log == 10
    repeated = first.iloc[20:30]
    pd.testing.assert_frame_equal(
        second.iloc[:10][["request_id", "score", "prediction"]],
        repeated[["request_id", "score", "prediction"]],
    )
    assert len(_logged(env)) == 50


def test_a_record_whose_values_changed_is_scored_again(sample, later, tmp_path):
    """Scoring a file again reads back the records it already scored; a record whose values
    changed under the same id and time is a new request, scored and logged, never answered
    with the prediction of its old values, and not another event of its entity."""
    cfg = sample.cfg
    label, id_column = cfg.data.column("label").name, cfg.data.column("id").name
    records = later.head(20).reset_index(drop=True)
    env = _stores(sample, tmp_path / "stores")
    first = tmp_path / "first.parquet"
    records.to_parquet(first, index=False)  # the label is there: it changes nothing
    before = batch.run(cfg, first, tmp_path / "before.parquet", env=env, log_writer="inline")
    assert (before.scored, before.from_log) == (20, 0)
    sends = _sends(env)

    changed = records.copy()
    changed[label] = changed[label].iloc[::-1].to_numpy()  # not a value a request id covers
    rows = [3, 11]
    texts = [c.name for c in cfg.data.columns_with("text") if c.name in changed]
    if texts:
        changed.loc[rows, texts[0]] = changed.loc[rows, texts[0]].fillna("") + " and more"
    else:  # the next float up: a change no check refuses
        amount = next(c.name for c in cfg.data.columns_with("numeric") if c.dtype == "float")
        changed.loc[rows, amount] = np.nextafter(changed.loc[rows, amount], np.inf)
    second = tmp_path / "second.parquet"
    changed.to_parquet(second, index=False)
    after = batch.run(cfg, second, tmp_path / "after.parquet", env=env, log_writer="inline")
    assert (after.scored, after.from_log) == (20, 18)
    assert _sends(env) == sends  # the same two events, not two more of their entities

    old = pd.read_parquet(before.output).set_index("source_row")
    new = pd.read_parquet(after.output).set_index("source_row")
    same = [r for r in range(20) if r not in rows]
    assert new.loc[same, "request_id"].tolist() == old.loc[same, "request_id"].tolist()
    assert not set(new.loc[rows, "request_id"]) & set(old["request_id"])
    with PredictionLog(env["PREDICTION_LOG_URL"]) as log:
        logged = log.rows()
    assert len(logged) == 22  # two more, under the changed records' own request ids
    assert sorted(r["message_id"] for r in logged).count(str(records.loc[3, id_column])) == 2


def test_monitored_values_are_the_models_inputs_by_name_then_raw_columns(cfg):
    reference = {"features": dict.fromkeys(["c", "raw", "a", "b", "absent"], {})}
    log_rows = LogRows(cfg, reference, batch.ROUTING)
    bundle = SimpleNamespace(metadata={"feature_names": ["a", "b", "unmonitored", "c"]})
    model = SimpleNamespace(name="model", version=1, bundle=bundle)
    rows = pd.DataFrame({"raw": [1.5, "text"], "a": [9.0, 9.0]})
    x = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.float32)
    nan = np.nan
    expected = [[4, 1.5, 1, 2, nan], [8, nan, 5, 6, nan]]
    np.testing.assert_array_equal(log_rows.features(model, rows, x), expected)
    # A model that takes the raw rows: every value is read from them.
    expected = [[nan, 1.5, 9, nan, nan], [nan, nan, 9, nan, nan]]
    np.testing.assert_array_equal(log_rows.features(model, rows, rows), expected)


def test_a_log_writer_that_fails_or_dies_stops_the_run_with_why(sample, tmp_path):
    cfg = sample.cfg
    log_rows = LogRows(cfg, {}, batch.ROUTING)
    stamp = ModelStamp("model", 1, "champion", 0.5)
    chunk = LogChunk([], [], [], pd.DataFrame(), np.empty((0, 0)), np.empty(0), np.empty(0), None)

    (tmp_path / "file").write_text("")
    writer = ProcessLogWriter()  # a log it cannot open: the reason comes back
    writer.start(log_rows, stamp, f"sqlite:///{tmp_path}/file/log.db")
    with pytest.raises(LogWriterError, match=r"the prediction log writer failed.*file"):
        writer.submit(chunk)
    writer.close()

    writer = ProcessLogWriter()  # killed (out of memory, say): the run stops, not hangs
    writer.start(log_rows, stamp, f"sqlite:///{tmp_path}/log.db")
    os.kill(writer._process.pid, signal.SIGKILL)
    writer._process.wait()
    with pytest.raises(LogWriterError, match=r"the prediction log writer failed \(exit code -9\)"):
        writer.submit(chunk)
        writer.close()
    writer.close()

    writer = ProcessLogWriter()  # killed between two chunks: the chunk handed to it after says so
    writer.start(log_rows, stamp, f"sqlite:///{tmp_path}/log-2.db")
    writer._wait()  # it answered the start
    os.kill(writer._process.pid, signal.SIGKILL)
    writer._process.wait()
    writer.submit(chunk)  # the hand-off thread writes to a socket nobody reads
    with pytest.raises(LogWriterError, match=r"the prediction log writer failed \(exit code -9\)"):
        writer.finish()
    writer.close()


def test_the_cli_says_when_the_log_writer_failed(sample, later, tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise LogWriterError("the prediction log writer failed (exit code -9): it stopped")

    monkeypatch.setattr(batch, "run", failing)
    source = tmp_path / "records.csv"
    later.to_csv(source, index=False)
    result = CliRunner().invoke(app, ["predict", str(source), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 1
    assert "exit code -9" in result.output and "again resumes" in result.output


def test_bad_rows_are_quarantined_with_reasons_and_the_rest_scored(sample, tmp_path):
    cfg = sample.cfg
    id_column = cfg.data.column("id").name
    dtypes = {c.name: c.dtype for c in cfg.data.columns}
    # What a request must carry (the rest is filled in as the server fills it).
    required = [name for name in required_fields(cfg) if dtypes[name] == "string"]
    # Enough rows that four bad ones stay within data.max_quarantine_share: the rest is scored.
    rows = max(ROWS, int(4 / cfg.data.max_quarantine_share) + 1)
    frame = _later(sample, rows).astype(object)
    frame.loc[3, id_column] = frame.loc[2, id_column]  # a duplicate id
    if cfg.data.timestamp:
        frame.loc[5, cfg.data.timestamp] = "not a time"
    bad = {3, 5} if cfg.data.timestamp else {3}
    if required:
        frame.loc[7, required[-1]] = None
        bad.add(7)
    source = tmp_path / "records.jsonl"
    frame.to_json(source, orient="records", lines=True, date_format="iso")
    lines = source.read_text(encoding="utf-8").split("\n")
    lines[9] = lines[9][: len(lines[9]) // 2]  # record 9 cut short: a line that does not parse
    source.write_text("\n".join(lines), encoding="utf-8")
    bad.add(9)
    env = _stores(sample, tmp_path / "stores")
    out = tmp_path / "new" / "scored.jsonl"  # a folder that does not exist yet
    result = batch.run(cfg, source, out, env=env)
    assert result.quarantined == len(bad) and result.scored == rows - len(bad)
    quarantine = pd.read_parquet(result.quarantine)
    assert set(quarantine["source_row"]) == bad
    reasons = dict(zip(quarantine["source_row"], quarantine["reason"], strict=True))
    assert reasons[3] == f"unique: {id_column}"
    assert reasons[9].startswith("parse (line 10: not JSON")
    if cfg.data.timestamp:
        assert reasons[5].startswith(f"type: {cfg.data.timestamp}")
    scored = pd.read_json(out, lines=True, dtype={id_column: str})
    assert not set(scored["source_row"]) & bad
    with PredictionLog(env["PREDICTION_LOG_URL"]) as log:
        assert log.count() == rows - len(bad)


def test_a_key_the_log_cannot_hold_is_quarantined_and_the_rest_scored(sample, tmp_path, postgres):
    """The log keeps the id and the entity key in columns of a set width, which PostgreSQL
    enforces: a key over it is quarantined naming the width (it would fail the whole run's
    insert), a key of exactly the width is scored and logged whole."""
    import sqlalchemy as sa

    cfg = sample.cfg
    logged = {"id": "message_id", "entity_key": "entity"}  # the log's column for each role
    keys = {c.name: c.role for c in cfg.data.columns if c.role in logged and c.dtype == "string"}
    if not keys:
        pytest.skip("the contract has no text key")
    rows = max(ROWS, int(len(keys) / cfg.data.max_quarantine_share) + 1)
    frame = _later(sample, rows).astype(object)
    over = {}
    for k, (name, role) in enumerate(keys.items()):
        width = KEY_MAX_CHARS[role]
        frame.loc[2 * k, name] = f"{2 * k}".rjust(width, "k")  # unique, exactly the width
        frame.loc[2 * k + 1, name] = f"{2 * k + 1}".rjust(width + 1, "k")
        over[2 * k + 1] = f"type: {name} ({width + 1:,} characters, over the {width:,} of a key)"
    source = tmp_path / "records.parquet"
    frame.to_parquet(source, index=False)
    env = {**_stores(sample, tmp_path / "stores"), "PREDICTION_LOG_URL": postgres.database("keys")}
    result = batch.run(cfg, source, tmp_path / "scored.parquet", env=env, log_writer="inline")
    assert (result.scored, result.quarantined) == (rows - len(over), len(over))
    quarantine = pd.read_parquet(result.quarantine)
    assert dict(zip(quarantine["source_row"], quarantine["reason"], strict=True)) == over
    with PredictionLog(env["PREDICTION_LOG_URL"]) as log:
        assert log.count() == rows - len(over)
        with log.engine.connect() as conn:
            for name, role in keys.items():
                longest = f"select max(length({logged[role]})) from predictions"
                assert conn.execute(sa.text(longest)).scalar() == KEY_MAX_CHARS[role], name


def test_records_valid_on_their_own_are_scored_whatever_the_file_holds(sample, later, tmp_path):
    """No statistic of the file refuses it: nullable columns empty in every record (training's
    ``mostly`` rule) or not in the file at all, a file of one record, a file of none. Each
    record is judged on its own, as the server judges a request."""
    cfg = sample.cfg
    nullable = [c.name for c in cfg.data.columns if c.nullable and c.role != "label"]
    sparse = later.astype(object)
    sparse[nullable] = None
    env = _stores(sample, tmp_path / "stores")
    files = {
        "sparse.csv": sparse,
        "narrow.jsonl": later.drop(columns=nullable),
        "one.csv": sparse.head(1),
        "none.csv": later.head(0),
        "none.jsonl": later.head(0),
        "no-byte.csv": later.head(0),
    }
    for name, frame in files.items():
        source = tmp_path / name
        if name.startswith("no-byte"):
            source.write_bytes(b"")
        elif name.endswith(".csv"):
            frame.to_csv(source, index=False)
        else:  # a file with no record has no line at all
            frame.to_json(source, orient="records", lines=True, date_format="iso")
        out = tmp_path / f"{name}.parquet"
        result = batch.run(cfg, source, out, env=env, log_writer="inline")
        assert (result.scored, result.quarantined) == (len(frame), 0), name
        assert len(pd.read_parquet(out)) == len(frame)
        if name == "narrow.jsonl" and nullable:
            assert f"missing in every record: {', '.join(nullable)}" in result.notes[0]
    none = CliRunner().invoke(app, ["predict", str(source), "--out", str(out)], env=env)
    assert none.exit_code == 0 and "scored 0 of 0 records" in none.output, none.output
    # A line that is not UTF-8 (an export from a Windows tool): read as cp1252, and said.
    texts = [
        c.name
        for c in cfg.data.columns
        if c.role == "text" or (c.dtype, c.role) == ("string", "categorical") and not c.allowed
    ]
    if texts:
        accented = "caf\u00e9 ol\u00e9"
        mixed = later.head(3).astype(object)
        mixed.loc[1, texts[0]] = accented
        text = mixed.to_csv(index=False).encode("utf-8")
        source = tmp_path / "mixed.csv"
        source.write_bytes(text.replace(accented.encode(), accented.encode("cp1252")))
        result = batch.run(cfg, source, tmp_path / "m.parquet", env=env, log_writer="inline")
        assert "not UTF-8, read as cp1252: 1 of the records (source rows 1)" in result.notes
        assert (result.scored, result.quarantined) == (3, 0)
        assert pd.read_parquet(result.output)["source_row"].tolist() == [0, 1, 2]


def test_a_file_the_contract_refuses_is_not_scored_and_the_cli_says_why(sample, later, tmp_path):
    cfg = sample.cfg
    label = cfg.data.column("label").name
    missing = next(c.name for c in cfg.data.columns if not c.nullable and c.name != label)
    source = tmp_path / "records.csv"
    later.drop(columns=[missing]).to_csv(source, index=False)
    out = tmp_path / "predictions.parquet"
    result = CliRunner().invoke(
        app, ["predict", str(source), "--out", str(out), "--log-url", f"sqlite:///{tmp_path}/l.db"]
    )
    assert result.exit_code == 1, result.output
    assert "nothing scored" in result.output and f"column_exists on {missing}" in result.output
    assert not out.exists()
    assert batch.side_paths(out)[1].is_file()  # the report says why
    with PredictionLog(f"sqlite:///{tmp_path}/l.db") as log:
        assert log.count() == 0
    # A header alone names the file's columns: one the records must have is missing all the same.
    header = tmp_path / "header.csv"
    later.drop(columns=[missing]).head(0).to_csv(header, index=False)
    alone = CliRunner().invoke(app, ["predict", str(header), "--out", str(out)])
    assert alone.exit_code == 1 and f"column_exists on {missing}" in alone.output, alone.output

    unknown = CliRunner().invoke(app, ["predict", str(source), "--out", str(tmp_path / "p.xlsx")])
    assert unknown.exit_code == 2 and "unknown format '.xlsx'" in unknown.output
    writer = CliRunner().invoke(
        app, ["predict", str(source), "--out", str(out), "--log-writer", "t"]
    )
    assert writer.exit_code == 2 and "--log-writer 't': expected one of auto" in writer.output

    # The input as one of the run's outputs (rescoring a quarantine into the run that wrote
    # it, say): refused before anything is replaced.
    for written in (source, *batch.side_paths(source.with_suffix(".parquet"))):
        before = later.head(3).to_csv(index=False)
        written.write_text(before)
        out = source if written == source else source.with_suffix(".parquet")
        same = CliRunner().invoke(app, ["predict", str(written), "--out", str(out)])
        assert same.exit_code == 2 and "is also this run's output" in same.output, same.output
        assert written.read_text() == before


def test_the_cli_scores_a_csv_and_prints_the_rate(sample, later, tmp_path, monkeypatch):
    source = tmp_path / "records.csv"
    later.to_csv(source, index=False)  # a labelled file is scored too: the label is ignored
    for key, value in _stores(sample, tmp_path / "stores").items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "predictions.parquet"
    chosen = ["--chunk-rows", "48", "--log-writer", "inline"]
    result = CliRunner().invoke(app, ["predict", str(source), "--out", str(out), *chosen])
    assert result.exit_code == 0, result.output
    assert f"scored {ROWS} of {ROWS} records" in result.output and "records/s" in result.output
    assert len(pd.read_parquet(out)) == ROWS
    report = json.loads(batch.side_paths(out)[1].read_text())
    assert report["batch"]["log_writer"] == "inline"  # not auto's process, on any machine


def test_scoring_leaves_what_exists_out_of_collections_and_thaws_it_after():
    """``heap.frozen`` around the scoring loop; a process's own freeze is left as it is."""
    script = """
import gc
from {{cookiecutter.package_name}}.serving.heap import frozen
assert gc.get_freeze_count() == 0
with frozen():
    assert gc.get_freeze_count() > 0
assert gc.get_freeze_count() == 0
gc.freeze()
count = gc.get_freeze_count()
with frozen():
    assert gc.get_freeze_count() == count
assert gc.get_freeze_count() == count
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
