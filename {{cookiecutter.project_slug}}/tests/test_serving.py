"""Serving: routing, the engine in each mode, and real `bentoml serve` processes over HTTP.

One sample project (two small XGBoost bundles on generated records, registered as champion and
challenger in a tmp MLflow store, a materialized entity store) serves the whole module. Three
real servers start together (single, shadow, canary); the kill test runs last and kills the
single-mode server with SIGKILL under load.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
from contract_labels import NEG, POS
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_contract import reference_config
from sample_project import minimal_body, request_bodies, required_fields, sample_project

from {{cookiecutter.package_name}}.deploy.server import missing_metrics
from {{cookiecutter.package_name}}.domain import pack_of
from {{cookiecutter.package_name}}.predlog.store import KEY_MAX_CHARS, PredictionLog, utc_naive
from {{cookiecutter.package_name}}.serving import routing
from {{cookiecutter.package_name}}.serving.logrows import _naive_times
from {{cookiecutter.package_name}}.serving.schema import MAX_BATCH_ITEMS, FrameBuilder, record_model
from {{cookiecutter.package_name}}.tables import cells

PACKAGE = "{{cookiecutter.package_name}}"
SERVICE = f"{PACKAGE}.serving.service:Classifier"
JSON = {"content-type": "application/json"}
# Generated requests per route and generation mode (valid, invalid) in the fuzz test.
FUZZ_CASES = 260


# ---------------------------------------------------------------------------------------------
# Fixtures: one sample project, three real servers


@pytest.fixture(scope="module")
def sample(tmp_path_factory, project_root):
    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        project = sample_project(project_root / "configs" / "system.yaml", root, rows=400)
        # In-process code (engine, service module) reads the same store and contract.
        mp.setenv("MLFLOW_TRACKING_URI", project.cfg.tracking_uri)
        mp.setenv("SYSTEM_CONFIG", str(project.config_path))
        yield project


@pytest.fixture(scope="module")
def bodies(sample):
    return request_bodies(sample.cfg, sample.records.tail(60))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `bentoml serve` process group on 127.0.0.1 with its own prediction log."""

    def __init__(self, sample, name: str, *, port: int | None = None, cli: bool = False, **env):
        self.root = sample.config_path.parent.parent
        self.log_path = self.root / f"{name}-predictions.db"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = self.root / f"{name}-server.log"
        environment = {
            **os.environ,
            "SYSTEM_CONFIG": str(sample.config_path),
            "MLFLOW_TRACKING_URI": sample.cfg.tracking_uri,
            "PREDICTION_LOG_URL": f"sqlite:///{self.log_path}",
            "BENTOML_HOME": str(self.root / f"bentoml-{name}"),
            "BENTOML_DO_NOT_TRACK": "True",
            "MONITOR_REFRESH_S": "1",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            **env,
        }
        if cli:  # as `make serve` starts it: the CLI checks the model, then execs BentoML
            command = [sys.executable, "-m", PACKAGE, "serve", "-c", str(sample.config_path)]
        else:
            command = [sys.executable, "-m", "bentoml", "serve", SERVICE]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=self.root,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the kill test kills it whole
            )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        tail = self.output.read_text(errors="replace")[-3000:]
        pytest.fail(f"server did not become ready:\n{tail}")

    def _family(self) -> list[psutil.Process]:
        """The server's processes: BentoML starts each worker in a session of its own, so a
        signal to the server's process group does not reach the process that answers."""
        try:
            parent = psutil.Process(self.process.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL every process of the server at once, workers included."""
        for process in self._family():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        family = self._family()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(15)
        for process in family:  # whatever did not stop in time
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait(10)

    def log(self) -> PredictionLog:
        return PredictionLog(f"sqlite:///{self.log_path}")


@pytest.fixture(scope="module")
def launched(sample):
    """Single, shadow and canary servers, launched together (the in-process tests run while
    they start; ``servers`` waits until they are ready)."""
    started = {
        "single": Server(sample, "single", SERVING_ROUTING="single"),
        "shadow": Server(sample, "shadow", SERVING_ROUTING="shadow"),
        "canary": Server(sample, "canary", SERVING_ROUTING="canary", CANARY_PERCENT="50"),
    }
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def servers(launched):
    for server in launched.values():
        server.wait_ready()
    return launched


# ---------------------------------------------------------------------------------------------
# Routing: pure functions


def test_canary_share_and_stickiness_over_10k_accounts():
    accounts = [f"user{i}@domain{i % 97}.example" for i in range(10_000)]
    for percent in (5, 25, 50):
        chosen = [routing.in_canary(s, percent, "7") for s in accounts]
        assert abs(np.mean(chosen) * 100 - percent) < 1.5, percent
        # Sticky: the same account, however it is written, always gets the same answer.
        again = [routing.in_canary(f"  {s.upper()} ", percent, "7") for s in accounts]
        assert again == chosen
    # Raising the percentage only moves accounts to the challenger.
    five = {s for s in accounts if routing.in_canary(s, 5, "7")}
    fifty = {s for s in accounts if routing.in_canary(s, 50, "7")}
    assert five < fifty
    # A new challenger (salt) draws a new cohort of about the same size.
    other = {s for s in accounts if routing.in_canary(s, 5, "8")}
    assert abs(len(other) - len(five)) < 150 and len(other & five) < len(five) / 2
    assert not routing.in_canary("a@b.c", 0) and routing.in_canary("a@b.c", 100)


def test_routing_plan_reads_contract_then_environment(cfg):
    assert routing.plan_from(cfg, {}).mode == cfg.serving.routing
    plan = routing.plan_from(cfg, {"SERVING_ROUTING": "Canary", "CANARY_PERCENT": "12.5"})
    assert (plan.mode, plan.canary_percent) == ("canary", 12.5)
    with pytest.raises(routing.RoutingError, match="SERVING_ROUTING"):
        routing.plan_from(cfg, {"SERVING_ROUTING": "blue-green"})
    with pytest.raises(routing.RoutingError, match="CANARY_PERCENT"):
        routing.plan_from(cfg, {"CANARY_PERCENT": "150"})


# ---------------------------------------------------------------------------------------------
# The request model


def test_records_stamped_with_the_calls_time_hold_the_same_cells_as_a_frame(cfg):
    cfg = reference_config(cfg)
    record_cls = record_model(cfg)
    now = datetime(2025, 3, 3, 12, 0, 0, 123456, tzinfo=UTC)
    bodies = [
        {"account": "a", "body": "x"},
        {"account": "b", "body": "y", "received_at": "2025-03-03T11:00:00+02:00"},
        {"account": "c", "body": "z"},
    ]
    items = [record_cls.model_validate(body) for body in bodies]
    builder = FrameBuilder(cfg)
    expected = [pd.Timestamp(now), pd.Timestamp("2025-03-03T09:00:00Z"), pd.Timestamp(now)]
    assert cells(builder.table(items, now), "received_at") == expected
    assert builder.frame(items, now)["received_at"].tolist() == expected


_STAMPS = [
    None,
    pd.NaT,
    pd.Timestamp("2025-03-03 12:00:00.5", tz="UTC"),
    pd.Timestamp("2025-03-03 14:00", tz=timezone(timedelta(hours=2))),
    pd.Timestamp("2025-03-03 12:00"),
]


@given(st.lists(st.sampled_from(_STAMPS), max_size=12))
def test_log_times_convert_runs_of_one_stamp_as_each_stamp(stamps):
    one_by_one = [
        None if t is None or t is pd.NaT else utc_naive(t.to_pydatetime()) for t in stamps
    ]
    assert _naive_times(stamps) == one_by_one


def test_record_model_follows_the_contract(cfg):
    cfg = reference_config(cfg)  # bodies written by hand in its schema
    record_cls = record_model(cfg)
    item = record_cls.model_validate({"account": "Bob@Example.org", "body": "hi"})
    row = FrameBuilder(cfg).frame([item]).iloc[0]
    assert row["recipient_count"] == 1 and row["attachment_count"] == 0
    assert row["content_type"] == "text/plain"
    assert str(row["received_at"].tz) == "UTC"
    for bad, field in (
        ({"body": "x"}, "account"),
        ({"account": "a", "body": "x", "label": POS}, "label"),
        ({"account": "a", "body": "x", "content_type": "image/png"}, "content_type"),
        ({"account": "a", "body": "x", "recipient_count": 0}, "recipient_count"),
        ({"account": "a", "body": "x", "received_at": "3000-01-01T00:00:00Z"}, "received_at"),
    ):
        with pytest.raises(ValueError, match=field):
            record_cls.model_validate(bad)


STRICT_CASES = (
    # (field, value): loose values pydantic would coerce; each must be refused, naming the field
    ("received_at", "1"),
    ("received_at", 0.0),
    ("received_at", 1700000000),
    ("received_at", True),
    ("account", " "),
    ("account", "\t\n"),
    ("account", 42),
    ("attachment_count", False),
    ("attachment_count", "1"),
    ("attachment_count", 1.0),
    ("recipient_count", True),
    ("message_id", " "),
    ("subject", 5),
)


def test_request_model_is_strict(cfg):
    cfg = reference_config(cfg)  # bodies written by hand in its schema
    record_cls = record_model(cfg)
    base = {"account": "a@b.org", "body": "hi"}
    for field, value in STRICT_CASES:
        with pytest.raises(ValueError, match=field):
            record_cls.model_validate_json(json.dumps({**base, field: value}))
    good = {**base, "received_at": "2024-05-01T12:00:00+02:00", "attachment_count": 2}
    item = record_cls.model_validate_json(json.dumps(good))
    assert item.received_at.isoformat() == "2024-05-01T10:00:00+00:00"
    assert item.attachment_count == 2
    # The OpenAPI schema says what is refused: a non-blank pattern, integer and date-time types.
    props = record_cls.model_json_schema()["properties"]
    assert props["account"]["pattern"] == "\\S" and "pattern" not in props["body"]
    assert {"format": "date-time", "type": "string"} in props["received_at"]["anyOf"]


def test_a_request_must_carry_each_value_a_default_would_pass_for(cfg):
    """With a flags column the server fills an omitted count or category with its default, as
    ingest does (and flags it there); without one a default would pass for the record's own
    value, so every non-nullable field but the id and the time is required, as ingest
    quarantines such a record."""
    from pydantic import ValidationError

    flagged = reference_config(cfg)
    columns = [c for c in flagged.data.columns if c.role != "flags"]
    unflagged = flagged.model_copy(
        update={"data": flagged.data.model_copy(update={"columns": columns})}
    )
    for contract in (flagged, unflagged, cfg):
        model = record_model(contract)
        body = minimal_body(contract)
        model.model_validate(body)
        for name in body:
            with pytest.raises(ValidationError, match=f"{name}\n  Field required"):
                model.model_validate({k: v for k, v in body.items() if k != name})
    assert "attachment_count" not in minimal_body(flagged)
    assert record_model(flagged).model_validate(minimal_body(flagged)).attachment_count is None
    assert {"attachment_count", "content_type"} <= set(minimal_body(unflagged))
    assert "received_at" not in minimal_body(unflagged)


def test_request_times_are_held_to_the_contract_bounds(cfg):
    """The API refuses what validation would quarantine: one set of bounds, the contract's."""
    cfg = reference_config(cfg)  # bodies written by hand in its schema
    column = cfg.data.column("timestamp")
    low, high = column.time_bounds(datetime.now(UTC))
    record_cls = record_model(cfg)
    base = {"account": "a@b.org", "body": "hi"}

    def body(when: datetime) -> str:
        return json.dumps({**base, column.name: when.isoformat()})

    assert record_cls.model_validate_json(body(low))
    assert record_cls.model_validate_json(body(high - timedelta(minutes=1)))
    with pytest.raises(ValueError, match=re.escape(f"must not be before {low.isoformat()}")):
        record_cls.model_validate_json(body(low - timedelta(seconds=1)))
    with pytest.raises(ValueError, match="must not be after"):
        record_cls.model_validate_json(body(high + timedelta(minutes=1)))
    earlier = cfg.model_copy(deep=True)
    earlier.data.column("timestamp").__dict__["min"] = low - timedelta(days=3650)
    assert record_model(earlier).model_validate_json(body(low - timedelta(days=1)))


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T03:00:00+03:01"]
)
def test_a_time_whose_offset_leaves_the_calendar_is_refused_naming_its_field(cfg, when):
    """Moved to UTC, these are before year 1 or after 9999: ``astimezone`` overflows, and an
    OverflowError in a validator would be a 500. They are refused like any bad field."""
    from pydantic import ValidationError

    cfg = reference_config(cfg)
    name = cfg.data.column("timestamp").name
    with pytest.raises(ValidationError) as info:
        record_model(cfg).model_validate_json(
            json.dumps({"account": "a@b.org", "body": "hi", name: when})
        )
    (error,) = info.value.errors()
    assert error["loc"] == (name,) and "outside the dates a datetime holds" in error["msg"]


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    minutes=st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
)
def test_any_iso_time_validates_or_is_a_validation_error(cfg, moment, minutes):
    """Every date-time string the schema's pattern admits ends as a value or a 4xx-bound
    ValidationError, whatever its year and offset: never another exception."""
    from pydantic import ValidationError

    cfg = reference_config(cfg)
    name = cfg.data.column("timestamp").name
    sign, offset = ("+" if minutes >= 0 else "-"), abs(minutes)
    text = f"{moment.isoformat(timespec='seconds')}{sign}{offset // 60:02d}:{offset % 60:02d}"
    body = json.dumps({"account": "a@b.org", "body": "hi", name: text})
    with contextlib.suppress(ValidationError):
        record_model(cfg).model_validate_json(body)


def test_text_may_be_blank_where_a_flags_column_records_its_absence(cfg):
    """Ingest gives a record without text the empty string, flagged, so the model knows such
    records: with a flags column the server scores one (an attachment-only message) rather than
    refuse it, though the field must still be sent; without one, blank text is missing."""
    from pydantic import ValidationError

    cfg = reference_config(cfg)
    assert cfg.data.columns_with("flags")
    model = record_model(cfg)
    builder = FrameBuilder(cfg)
    for blank in ("", "   "):
        item = model.model_validate_json(json.dumps({"account": "a", "body": blank}))
        assert item.body == blank
        # Flagged as ingest flags it, with the defaults the server filled in.
        flags = builder.values(item, datetime.now()).get("quality_flags").split(",")
        assert "missing:body" in flags and "missing:recipient_count" in flags
    sent = {"account": "a", "body": "hi", "recipient_count": 2, "quality_flags": "seen:twice"}
    values = builder.values(model.model_validate_json(json.dumps(sent)), datetime.now())
    assert values["quality_flags"].split(",")[0] == "seen:twice"
    assert "missing:body" not in values["quality_flags"]
    assert "missing:recipient_count" not in values["quality_flags"]
    with pytest.raises(ValidationError, match="body"):
        model.model_validate_json(json.dumps({"account": "a"}))
    columns = [c for c in cfg.data.columns if c.role != "flags"]
    unflagged = cfg.model_copy(update={"data": cfg.data.model_copy(update={"columns": columns})})
    blank_body = json.dumps({**minimal_body(unflagged), "body": " "})
    with pytest.raises(ValidationError, match="body"):
        record_model(unflagged).model_validate_json(blank_body)


def test_blank_field_error_reads_plainly(cfg):
    cfg = reference_config(cfg)  # bodies written by hand in its schema
    from pydantic import ValidationError

    from {{cookiecutter.package_name}}.serving.guard import summarize_errors

    with pytest.raises(ValidationError) as info:
        record_model(cfg).model_validate_json('{"account": " ", "body": "x"}')
    detail = info.value.errors(include_context=False, include_input=False)
    assert summarize_errors(detail) == "account: must not be blank"


def test_a_key_the_log_cannot_hold_is_refused_naming_its_field(cfg):
    """The id and the entity key are stored as text in columns of a set width: a NUL
    (PostgreSQL refuses it) or a key longer than its column is a 400 naming the field, a key of
    exactly the width is taken, and a text field may carry a NUL."""
    cfg = reference_config(cfg)
    from pydantic import ValidationError

    from {{cookiecutter.package_name}}.serving.guard import summarize_errors

    model = record_model(cfg)
    widths = {"message_id": KEY_MAX_CHARS["id"], "account": KEY_MAX_CHARS["entity_key"]}
    for field, width in widths.items():
        refused = {
            "a\u0000b": f"{field}: Value error, must not contain a NUL",
            "k" * (width + 1): f"{field}: String should have at most {width} characters",
        }
        for value, said in refused.items():
            body = {"account": "a", "message_id": "m", "body": "x", field: value}
            with pytest.raises(ValidationError) as info:
                model.model_validate_json(json.dumps(body))
            detail = info.value.errors(include_context=False, include_input=False)
            assert summarize_errors(detail).startswith(said)
        taken = model.model_validate_json(
            json.dumps({"account": "a", "body": "x", field: "k" * width})
        )
        assert len(getattr(taken, field)) == width
    assert model.model_validate_json(json.dumps({"account": "a", "body": "x\u0000y"}))


def _served(request_id: str, served: bool = True, version: int = 1) -> dict:
    return {
        "request_id": request_id,
        "created_at": datetime(2024, 1, 1),
        "model_name": "m",
        "model_version": version,
        "role": "champion" if served else "challenger",
        "served": served,
        "routing": "shadow",
        "score": 0.5,
        "label": NEG,
        "threshold": 0.5,
    }


def test_log_refuses_a_second_served_row_per_request_id_also_in_an_older_log(tmp_path, caplog):
    url = f"sqlite:///{tmp_path}/log.db"
    with PredictionLog(url) as log:
        assert log.record([_served("a"), _served("a", served=False), _served("b")]) == set()
        assert log.record([_served("a"), _served("c"), _served("c", served=False)]) == {"a"}
        assert sorted(r["request_id"] for r in log.rows() if r["served"]) == ["a", "b", "c"]
        with log.engine.begin() as conn:  # a log made before the index existed
            conn.exec_driver_sql("drop index uq_predictions_served_request_id_model")
    with PredictionLog(url) as log:  # reopening adds the index
        assert log.record([_served("b")]) == {"b"}
        with log.engine.begin() as conn:
            conn.exec_driver_sql("drop index uq_predictions_served_request_id_model")
        log.record([_served("x")])
        with log.engine.begin() as conn:
            conn.exec_driver_sql(
                "insert into predictions (request_id, created_at, model_name, model_version, "
                "role, served, routing, score, label, threshold) "
                f"values ('x', '2024-01-01', 'm', 1, 'champion', 1, 'single', 0.5, '{NEG}', 0.5)"
            )
    with PredictionLog(url) as log:  # a log that already holds a reused id still opens
        assert "served twice" in caplog.text
        assert log.record([_served("y")]) == set()


def test_a_mesh_mirror_serves_the_same_request_id_with_another_model(tmp_path):
    """Istio mirrors a request, id included, to the challenger's pods, which serve it with their
    own model into the same log: both answers are kept, a reuse of either is refused."""
    with PredictionLog(f"sqlite:///{tmp_path}/log.db") as log:
        assert log.record([_served("a", version=1)]) == set()
        assert log.record([_served("a", version=2)]) == set()
        assert log.record([_served("a", version=2), _served("b", version=2)]) == {"a"}
        served = sorted((r["request_id"], r["model_version"]) for r in log.rows() if r["served"])
        assert served == [("a", 1), ("a", 2), ("b", 2)]


# ---------------------------------------------------------------------------------------------
# The micro-batcher, with a stand-in for the engine


def _run_batcher(jobs, classify_each, *, max_batch=8, hold=None):
    """Submit ``jobs`` (lists of items, with optional deadline) at once; their outcomes."""
    import asyncio

    from {{cookiecutter.package_name}}.serving.batcher import MicroBatcher

    batcher = MicroBatcher(classify_each, max_batch=max_batch)

    async def main():
        if hold is not None:  # keep the scoring thread busy so the jobs queue up together
            first = asyncio.ensure_future(batcher.submit_many(["hold"]))
            await asyncio.sleep(0.05)
        calls = [batcher.submit_many(items, deadline=deadline) for items, deadline in jobs]
        out = await asyncio.gather(*calls, return_exceptions=True)
        if hold is not None:
            await first
        return out

    try:
        return asyncio.run(main())
    finally:
        batcher.close()


def _recording_scorer():
    """A stand-in for ``classify_each`` that keeps the items it scored; the item "hold" keeps
    the scoring thread busy for 0.3 s, so the requests sent meanwhile queue behind it."""
    scored = []

    def classify_each(items, ids, *, record_errors=True):
        if items == ["hold"]:
            time.sleep(0.3)
        scored.extend(items)
        return list(items)

    return classify_each, scored


def test_batcher_isolates_a_failing_request_and_never_splits_one():
    groups = []

    def classify_each(items, ids, *, record_errors=True):
        groups.append(list(items))
        if items == ["hold"]:
            time.sleep(0.2)
        if "bad" in items:
            raise RuntimeError("bad item")
        return [f"p:{e}" for e in items]

    jobs = [(["a1", "a2"], None), (["bad"], None), (["c1", "c2", "c3", "c4", "c5"], None)]
    out = _run_batcher(jobs, classify_each, max_batch=8, hold=True)
    assert out[0] == ["p:a1", "p:a2"]
    assert isinstance(out[1], RuntimeError)
    assert out[2] == ["p:c1", "p:c2", "p:c3", "p:c4", "p:c5"]
    # Every group holds whole requests: a request's items are scored (and logged) together.
    for items in groups:
        for job, _ in jobs:
            assert set(job) <= set(items) or not set(job) & set(items), groups


def test_batcher_refuses_a_request_past_its_deadline_without_scoring_it():
    from {{cookiecutter.package_name}}.serving.batcher import Overloaded

    classify_each, scored = _recording_scorer()
    out = _run_batcher([(["late"], 0.1), (["patient"], None)], classify_each, hold=True)
    assert isinstance(out[0], Overloaded) and out[1] == ["patient"]
    assert "late" not in scored


def test_batcher_refuses_a_single_record_past_its_deadline_and_drops_an_abandoned_one():
    """/classify's one record has the deadline too, and a request whose handler was cancelled
    (the request timeout answered it) is not scored for no one."""
    import asyncio

    from {{cookiecutter.package_name}}.serving.batcher import MicroBatcher, Overloaded

    classify_each, scored = _recording_scorer()
    batcher = MicroBatcher(classify_each, max_batch=1)

    async def main():
        held = asyncio.ensure_future(batcher.submit("hold"))
        await asyncio.sleep(0.05)  # the thread scores "hold"; the rest queue behind it
        late = asyncio.ensure_future(batcher.submit("late", deadline=0.1))
        gone = asyncio.ensure_future(batcher.submit("gone"))
        kept = asyncio.ensure_future(batcher.submit("kept", deadline=10))
        await asyncio.sleep(0.05)
        gone.cancel()
        results = await asyncio.gather(held, late, gone, kept, return_exceptions=True)
        await asyncio.sleep(0.1)  # time to score anything still queued
        return results

    try:
        held, late, gone, kept = asyncio.run(main())
    finally:
        batcher.close()
    assert (held, kept) == ("hold", "kept")
    assert isinstance(late, Overloaded) and isinstance(gone, asyncio.CancelledError)
    assert scored == ["hold", "kept"]


def test_a_full_shadow_queue_is_logged_once_a_minute_not_once_a_request(caplog, monkeypatch):
    import logging
    import queue

    from {{cookiecutter.package_name}}.serving import engine as engine_module

    clock = [100.0]
    monkeypatch.setattr(engine_module.time, "monotonic", lambda: clock[0])
    engine = object.__new__(engine_module.Engine)  # only the shadow queue's hand-over is used
    engine.metrics, engine._shadow = None, queue.Queue(maxsize=1)
    engine._shadow.put("the job the challenger is busy with")
    engine._shadow_skipped, engine._shadow_warned_at = 0, float("-inf")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    with caplog.at_level(logging.WARNING, logger=engine_module.__name__):
        for _ in range(50):
            engine._enqueue_shadow(["r1", "r2"], None, ["label", "label"])
        assert warnings() == [
            "shadow queue full: the challenger skipped 2 record(s) since the last warning"
        ]
        clock[0] += engine_module.SHADOW_WARNING_INTERVAL_S
        engine._enqueue_shadow(["r1"], None, ["label"])
    assert warnings()[1:] == [
        "shadow queue full: the challenger skipped 99 record(s) since the last warning"
    ]


# ---------------------------------------------------------------------------------------------
# In process: the engine in each mode


@pytest.fixture(scope="module")
def models(sample):
    """Champion and challenger, downloaded from the registry once for the in-process tests."""
    from {{cookiecutter.package_name}}.serving.loading import load_models

    return load_models(sample.cfg, routing.RoutingPlan("shadow"), {})


@pytest.fixture()
def engine_for(sample, models, launched, tmp_path):
    """Engines in a given mode (``launched``: the real servers start meanwhile)."""
    from prometheus_client import CollectorRegistry

    from {{cookiecutter.package_name}}.features.store import EntityStore
    from {{cookiecutter.package_name}}.serving.engine import Engine
    from {{cookiecutter.package_name}}.serving.metrics import ServingMetrics

    champion, challenger = models
    made = []

    def make(mode: str, percent: float = 50):
        plan = routing.RoutingPlan(mode, percent, salt=str(challenger.version))
        engine = Engine(
            sample.cfg,
            champion,
            None if mode == "single" else challenger,
            plan=plan,
            store=EntityStore.from_config(sample.cfg),
            log=PredictionLog(f"sqlite:///{tmp_path}/{mode}.db"),
            metrics=ServingMetrics(CollectorRegistry()),
            refresh_s=3600,
        )
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def records_of(cfg, bodies):
    record_cls = record_model(cfg)
    return [record_cls.model_validate(b) for b in bodies]


@pytest.mark.slow
def test_single_mode_answers_with_the_champion_and_logs_first(sample, bodies, engine_for):
    engine = engine_for("single")
    items = records_of(sample.cfg, bodies[:5])
    out = engine.classify(items)
    assert [p.role for p in out] == ["champion"] * 5
    assert {p.model_version for p in out} == {sample.champion_version}
    for p in out:
        rows = engine.log.rows(p.request_id)
        assert len(rows) == 1 and rows[0]["served"] and rows[0]["score"] == pytest.approx(p.score)
        # What monitoring reads: every reference feature (the model's own input) and the
        # per-request input signals (categories, unseen-token shares, top tokens).
        logged = rows[0]["features"]
        reference = engine.champion.bundle.reference
        assert set(reference["features"]) <= set(logged)
        assert any(logged[name] is not None for name in reference["features"])
        signals = {f"cat.{c}" for c in reference["categories"]}
        signals |= {f"text.{c}.{kind}" for c in reference["text"] for kind in ("unseen", "top")}
        assert signals and signals <= set(logged)
    assert out[0].label in (sample.cfg.problem.positive_class, sample.cfg.problem.negative_class)


@pytest.mark.slow
def test_shadow_mode_logs_both_models_under_one_request_id(sample, bodies, engine_for):
    engine = engine_for("shadow")
    single = engine_for("single")
    items = records_of(sample.cfg, bodies[:8])
    out = engine.classify(items, [f"req-{i}" for i in range(8)])
    assert engine.wait_for_shadow(10)
    for i, p in enumerate(out):
        assert p.role == "champion" and p.request_id == f"req-{i}"
        rows = {r["role"]: r for r in engine.log.rows(p.request_id)}
        assert set(rows) == {"champion", "challenger"}
        assert rows["champion"]["served"] and not rows["challenger"]["served"]
        assert rows["champion"]["score"] == pytest.approx(p.score)
        assert rows["challenger"]["model_version"] == sample.challenger_version
    # The champion's answer does not depend on the mode.
    alone = single.classify(records_of(sample.cfg, bodies[:1]))[0]
    assert alone.model_version == out[0].model_version


@pytest.mark.slow
def test_canary_mode_routes_by_account(sample, bodies, engine_for):
    engine = engine_for("canary", 50)
    items = records_of(sample.cfg, bodies)
    out = engine.classify(items)
    salt = str(sample.challenger_version)
    for item, p in zip(items, out, strict=True):
        entity = getattr(item, sample.cfg.data.entity)
        expected = "challenger" if routing.in_canary(entity, 50, salt) else "champion"
        assert p.role == expected
        version = sample.challenger_version if expected == "challenger" else sample.champion_version
        assert p.model_version == version
    assert {p.role for p in out} == {"champion", "challenger"}
    # Sticky: the same accounts again get the same models.
    assert [p.role for p in engine.classify(items)] == [p.role for p in out]


@pytest.mark.slow
def test_reused_request_ids_are_refused_and_the_rest_answered(sample, bodies, engine_for, tmp_path):
    from {{cookiecutter.package_name}}.serving.schema import DuplicateRequestId

    engine = engine_for("shadow")
    items = records_of(sample.cfg, bodies[:4])

    def sends() -> int:  # the entity events the store holds, its buffer written out
        engine.store.flush()
        with engine.store._backend.engine.connect() as conn:
            return conn.exec_driver_sql("select count(*) from entity_sends").scalar()

    before = sends()
    out = engine.classify_each(items[:3], ["dup-1", "dup-1", "dup-2"])
    assert [type(p).__name__ for p in out] == ["Prediction", "DuplicateRequestId", "Prediction"]
    assert "dup-1" in str(out[1])
    assert sends() == before + 2
    # Against the log: a later request with a used id is refused, its neighbours answered; a
    # refused retry is no new event of its entity.
    again = engine.classify_each(items[1:4], ["dup-2", "dup-3", "dup-1"])
    assert isinstance(again[0], DuplicateRequestId) and isinstance(again[2], DuplicateRequestId)
    assert again[1].request_id == "dup-3"
    with pytest.raises(DuplicateRequestId, match="dup-3"):
        engine.classify(items[:1], ["dup-3"])
    assert sends() == before + 3
    mixed = engine.classify_each(items[:2], [None, "dup-2"])  # None: the engine makes one
    assert mixed[0].request_id and isinstance(mixed[1], DuplicateRequestId)
    assert sends() == before + 4
    assert engine.wait_for_shadow(10)
    for request_id in ("dup-1", "dup-2", "dup-3"):
        rows = engine.log.rows(request_id)
        # One answer per id, and its shadow row under the same id.
        assert sorted(r["served"] for r in rows) == [False, True], (request_id, rows)
    # Across a restart: the log is the source of truth.
    with PredictionLog(str(engine.log.url)) as log:
        assert log.record([{**engine.log.rows("dup-1")[0], "id": None}]) == {"dup-1"}


@pytest.mark.slow
def test_no_champion_fails_fast_with_the_way_out(sample):
    from {{cookiecutter.package_name}}.serving.loading import NoModelError, load_models

    plan = routing.RoutingPlan("single")
    with pytest.raises(NoModelError, match="Train and promote"):
        load_models(sample.cfg, plan, {"MODEL_ALIAS": "nobody"})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_in_process_http_endpoints(sample, bodies, tmp_path, monkeypatch):
    """The BentoML app in process (no /metrics there: it needs the server's worker setup)."""
    from starlette.testclient import TestClient

    monkeypatch.setenv("PREDICTION_LOG_URL", f"sqlite:///{tmp_path}/asgi.db")
    from {{cookiecutter.package_name}}.serving.service import Classifier

    with TestClient(Classifier.to_asgi()) as client:
        assert client.get("/readyz").status_code == 200
        r = client.post("/classify", json=bodies[0], headers={"X-Request-ID": "in-process-1"})
        assert r.status_code == 200, r.text
        assert r.json()["request_id"] == "in-process-1"
        r = client.post("/classify_batch", json=bodies[:3])
        assert r.status_code == 200 and len(r.json()) == 3
        *given, missing = required_fields(sample.cfg)
        r = client.post("/classify", json={k: minimal_body(sample.cfg)[k] for k in given})
        assert r.status_code == 400 and r.json()["error"] == f"{missing}: Field required"
        r = client.post("/classify", content=b"x" * 2_000_000, headers=JSON)
        assert r.status_code == 413
        r = client.post("/classify", json=bodies[1], headers={"X-Request-ID": "in-process-1"})
        assert r.status_code == 409 and "in-process-1" in r.json()["error"]
        r = client.post("/classify_batch", json=[bodies[0]] * (MAX_BATCH_ITEMS + 1))
        assert r.status_code == 413 and f"at most {MAX_BATCH_ITEMS} items" in r.json()["error"]
        docs = client.get("/docs.json").json()
    with PredictionLog(f"sqlite:///{tmp_path}/asgi.db") as log:
        assert log.count() == 4
    # The OpenAPI document says what the API does: required bodies, every status it answers.
    classify, batch = (docs["paths"][p]["post"] for p in ("/classify", "/classify_batch"))
    assert classify["requestBody"]["required"] and batch["requestBody"]["required"]
    record = classify["requestBody"]["content"]["application/json"]["schema"]
    assert record == {"$ref": f"#/components/schemas/{pack_of(sample.cfg).record}"}
    assert {"200", "400", "409", "413", "415", "503"} <= set(classify["responses"])
    assert {"200", "400", "413", "415", "503"} <= set(batch["responses"])
    assert batch["requestBody"]["content"]["application/json"]["schema"]["maxItems"] == (
        MAX_BATCH_ITEMS
    )


@pytest.mark.slow
def test_serve_command_refuses_to_start_without_the_model(sample, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from {{cookiecutter.package_name}}.cli import serving as serving_cli

    app = typer.Typer()
    app.command("serve")(serving_cli.serve)
    app.command("feedback")(serving_cli.feedback)
    monkeypatch.setenv("MODEL_ALIAS", "nobody")
    result = CliRunner().invoke(app, ["serve", "-c", str(sample.config_path)])
    assert result.exit_code == 2
    assert "cannot serve" in result.output and "'nobody'" in result.output


# ---------------------------------------------------------------------------------------------
# Real servers over HTTP


@pytest.mark.slow
def test_single_server_endpoints(servers, bodies, sample):
    server = servers["single"]
    assert httpx.get(server.url + "/livez").status_code == 200
    assert httpx.get(server.url + "/readyz").status_code == 200
    r = httpx.post(server.url + "/classify", json=bodies[0], headers={"X-Request-ID": "abc-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == "abc-1" and body["role"] == "champion"
    assert set(body) >= {"label", "score", "threshold", "model_version", "request_id"}
    assert body["model_version"] == sample.champion_version
    r = httpx.post(server.url + "/classify_batch", json=bodies[:10])
    assert r.status_code == 200, r.text
    batch = r.json()
    assert len(batch) == 10 and len({p["request_id"] for p in batch}) == 10
    ids = sample.cfg.data.column("id").name
    assert [p["message_id"] for p in batch] == [b[ids] for b in bodies[:10]]
    with server.log() as log:
        assert len(log.rows("abc-1")) == 1
        assert all(len(log.rows(p["request_id"])) == 1 for p in batch)


@pytest.mark.slow
def test_shadow_server_answers_with_champion_and_logs_both(servers, bodies, sample):
    server = servers["shadow"]
    ids = [f"shadow-{i}" for i in range(6)]
    answers = []
    for request_id, body in zip(ids, bodies, strict=False):
        r = httpx.post(server.url + "/classify", json=body, headers={"X-Request-ID": request_id})
        assert r.status_code == 200, r.text
        answers.append(r.json())
    batch = httpx.post(server.url + "/classify_batch", json=bodies[6:9]).json()
    expected = {a["request_id"]: a for a in [*answers, *batch]}
    deadline = time.monotonic() + 10
    with server.log() as log:
        while time.monotonic() < deadline:  # the challenger logs off the response path
            rows = [r for rid in expected for r in log.rows(rid)]
            if len(rows) == 2 * len(expected):
                break
            time.sleep(0.1)
    assert len(rows) == 2 * len(expected)
    for request_id, answer in expected.items():
        pair = {r["role"]: r for r in rows if r["request_id"] == request_id}
        assert answer["role"] == "champion" and answer["model_version"] == sample.champion_version
        assert pair["champion"]["served"] and pair["champion"]["score"] == pytest.approx(
            answer["score"]
        )
        assert not pair["challenger"]["served"]
        assert pair["challenger"]["model_version"] == sample.challenger_version
    text = httpx.get(server.url + "/metrics").text
    assert "model_predictions_total{label=" in text and 'role="challenger"' in text
    assert "model_shadow_comparisons_total" in text


@pytest.mark.slow
def test_canary_server_routes_accounts_stickily(servers, bodies, sample):
    server = servers["canary"]
    salt = str(sample.challenger_version)
    roles = {}
    for body in bodies[:30]:
        r = httpx.post(server.url + "/classify", json=body)
        assert r.status_code == 200, r.text
        role = r.json()["role"]
        entity = body[sample.cfg.data.entity]
        assert role == ("challenger" if routing.in_canary(entity, 50, salt) else "champion")
        assert roles.setdefault(entity, role) == role
    assert set(roles.values()) == {"champion", "challenger"}
    batch = httpx.post(server.url + "/classify_batch", json=bodies[:30]).json()
    entities = [b[sample.cfg.data.entity] for b in bodies[:30]]
    assert [roles[e] for e in entities] == [p["role"] for p in batch]


def response_counts(server) -> dict[tuple[str, str], float]:
    """BentoML's request counter (what the error-rate alert reads): (endpoint, code) -> count."""
    out = {}
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith("bentoml_service_request_total{"):
            labels = dict(
                part.split("=", 1)
                for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            key = (labels["endpoint"].strip('"'), labels["http_response_code"].strip('"'))
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


@pytest.mark.slow
def test_reused_request_id_is_a_409_even_within_one_group(servers, bodies):
    server = servers["single"]
    before = response_counts(server)
    statuses = [
        httpx.post(server.url + "/classify", json=body, headers={"X-Request-ID": "same-id"})
        for body in bodies[:3]
    ]
    assert [r.status_code for r in statuses] == [200, 409, 409], [r.text for r in statuses]
    assert "same-id" in statuses[1].json()["error"]
    # Concurrent requests with one id land in one micro-batch group: one answer, the others
    # refused, and requests with other ids in the group are answered.
    barrier = threading.Barrier(12)
    results = {}

    def send(i):
        request_id = "burst-id" if i % 2 else f"burst-{i}"
        with httpx.Client(base_url=server.url, timeout=10) as http:
            barrier.wait()
            results[i] = http.post(
                "/classify", json=bodies[i], headers={"X-Request-ID": request_id}
            )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    codes = {i: r.status_code for i, r in results.items()}
    assert all(codes[i] == 200 for i in range(0, 12, 2)), codes
    assert sorted(codes[i] for i in range(1, 12, 2)) == [200] + [409] * 5, codes
    with server.log() as log:
        assert [r["served"] for r in log.rows("same-id")] == [True]
        assert [r["served"] for r in log.rows("burst-id")] == [True]
    after = response_counts(server)
    assert after.get(("/classify", "409"), 0) - before.get(("/classify", "409"), 0) == 7


@pytest.mark.slow
def test_strict_types_over_http(servers):
    server = servers["single"]
    for field, value in STRICT_CASES:
        r = httpx.post(
            server.url + "/classify", json={"account": "a@b.org", "body": "x", field: value}
        )
        assert r.status_code == 400 and field in r.json()["error"], (field, value, r.text)
    # Each is one line of the server's log, with neither a traceback nor the request's values.
    logged = server.output.read_text(errors="replace")
    assert "Exception on /classify" not in logged and "input_value" not in logged
    assert "400 on /classify [POST]: ValidationError" in logged


@pytest.mark.slow
def test_largest_batch_is_answered_whole_and_logged_once(servers, sample, bodies):
    server = servers["single"]
    items = request_bodies(sample.cfg, sample.records)
    ids = sample.cfg.data.column("id").name
    batch = [{**items[i % len(items)], ids: f"big-{i}"} for i in range(MAX_BATCH_ITEMS)]
    before = response_counts(server)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        http.post("/classify_batch", json=bodies[:8])  # a warm connection
        took = []
        for _ in range(3):
            started = time.perf_counter()
            r = http.post("/classify_batch", json=batch)
            took.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text[:300]
            assert [p["message_id"] for p in r.json()] == [b[ids] for b in batch]
        over = http.post("/classify_batch", json=[*batch, batch[0]])
    # Whether this fits the end-to-end budget is the benchmark's question (a timed assertion
    # fails on a busy machine); here: the largest allowed batch is answered whole, never shed.
    print(f"{MAX_BATCH_ITEMS} items: {[round(t * 1000) for t in took]} ms")
    assert over.status_code == 413, over.text[:300]
    assert str(MAX_BATCH_ITEMS) in over.json()["error"]
    with server.log() as log:
        rows = [r for r in log.rows() if (r["message_id"] or "").startswith("big-")]
    assert len(rows) == 3 * MAX_BATCH_ITEMS  # three answers; the refused one left nothing
    after = response_counts(server)
    assert after[("/classify_batch", "413")] - before.get(("/classify_batch", "413"), 0) == 1


def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are (no client-side checks); return the status and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def bad_requests(cfg):
    """Raw HTTP requests, each wrong in one way, and a word its 4xx answer must say; the
    bodies are written from the contract (its required fields, a string and a bounded number)."""
    body = minimal_body(cfg)
    string = next(c.name for c in cfg.data.columns if c.dtype == "string" and c.role != "label")
    number = next(
        (c for c in cfg.data.columns if c.dtype in ("int", "float") and c.min is not None), None
    )
    good = json.dumps(body).encode()
    big = json.dumps({**body, string: "x" * 1_100_000}).encode()
    post = b"POST /classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"

    def with_length(body, extra=b"", ctype=b"application/json"):
        head = post + b"Content-Type: " + ctype + b"\r\n" + extra
        return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n", body

    cases = {
        "malformed json": (*with_length(good[:-3]), b"JSON"),
        "wrong type": (*with_length(json.dumps({**body, string: 42}).encode()), string.encode()),
        "unknown field": (*with_length(json.dumps({**body, "subjet": "x"}).encode()), b"subjet"),
        "not an object": (*with_length(b"[1, 2]"), b"object"),
        "empty body": (*with_length(b""), b"empty body"),
        "over size limit": (*with_length(big), b"over the limit"),
        "non-utf8": (
            *with_length(
                json.dumps({**body, string: "PLACE"}).encode().replace(b"PLACE", b"a\xff\xfe")
            ),
            b"UTF-8",
        ),
        "content-type": (*with_length(good, ctype=b"text/plain"), b"Content-Type"),
        "content-length text": (post + b"Content-Length: lots\r\n\r\n", good, b""),
        "content-length huge": (post + b"Content-Length: 99999999999\r\n\r\n", good, b""),
        "request id": (
            *with_length(good, b"X-Request-ID: " + b"x" * 500 + b"\r\n"),
            b"X-Request-ID",
        ),
        "binary header": (*with_length(good, b"X-Request-ID: \xe9\x00\r\n"), b""),
        "encoding": (*with_length(good, b"Content-Encoding: gzip\r\n"), b"Content-Encoding"),
    }
    if body:
        *given, missing = body
        short = json.dumps({k: body[k] for k in given}).encode()
        cases["missing field"] = (*with_length(short), f"{missing}: Field required".encode())
    if number is not None:
        low = json.dumps({**body, number.name: number.min - 1}).encode()
        cases["out of range"] = (*with_length(low), number.name.encode())
    return cases


@pytest.mark.slow
def test_overload_sheds_whole_requests_counted_and_unlogged(servers, sample):
    """Concurrent big batches: those that cannot start within the deadline get a 503 that
    /metrics and the log's errors table count, and leave no prediction in the log."""
    server = servers["single"]
    items = request_bodies(sample.cfg, sample.records)
    # Enough concurrent work to outlast the deadline (the contract's end-to-end budget) on a
    # fast model too: the later batches wait longer than it.
    clients = 32
    before = response_counts(server)
    barrier = threading.Barrier(clients)
    answers = {}

    ids = sample.cfg.data.column("id").name

    def send(k):
        batch = [
            {**items[(k * 7 + i) % len(items)], ids: f"shed-{k}-{i}"}
            for i in range(MAX_BATCH_ITEMS)
        ]
        with httpx.Client(base_url=server.url, timeout=60) as http:
            barrier.wait()
            answers[k] = http.post("/classify_batch", json=batch)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    codes = {k: r.status_code for k, r in answers.items()}
    assert set(codes.values()) == {200, 503}, codes
    with server.log() as log:
        logged = {}
        for row in log.rows():
            prefix = (row["message_id"] or "").rsplit("-", 1)[0]
            if prefix.startswith("shed-"):
                logged[prefix] = logged.get(prefix, 0) + 1
        with log.engine.connect() as conn:
            shed = conn.exec_driver_sql(
                "select sum(requests) from errors where kind = 'Overloaded'"
            ).scalar()
    # Whole requests only: an answered one is logged entirely, a refused one not at all.
    assert logged == {f"shed-{k}": MAX_BATCH_ITEMS for k, c in codes.items() if c == 200}
    refused = sum(c == 503 for c in codes.values())
    assert shed == refused * MAX_BATCH_ITEMS
    after = response_counts(server)
    counted = after.get(("/classify_batch", "503"), 0) - before.get(("/classify_batch", "503"), 0)
    assert counted == refused
    print(f"overload: {refused} of {clients} concurrent {MAX_BATCH_ITEMS}-item batches shed")


@pytest.mark.slow
def test_bad_input_matrix_is_4xx_and_server_keeps_serving(servers, bodies, sample):
    server = servers["single"]
    before = response_counts(server)
    failures = []
    unparsed = 0  # refused by the HTTP parser: never reach the app nor its metrics
    cases = bad_requests(sample.cfg)
    for name, (head, body, expected) in cases.items():
        status, text = raw_request(server.port, head, body)
        unparsed += text.startswith(b"Invalid HTTP request")
        if not 400 <= status < 500 or expected not in text:
            failures.append(f"{name}: {status} {text[:200]!r}")
    batch = b"POST /classify_batch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    batch += b"Content-Type: application/json\r\n"
    for body, expected in (
        (b"[", b"request body: Invalid JSON"),
        (b"[]", b"at least 1"),
        (b"{}", b"array"),
    ):
        status, text = raw_request(
            server.port, batch + b"Content-Length: %d\r\n\r\n" % len(body), body
        )
        if status != 400 or expected not in text:
            failures.append(f"batch {body!r}: {status} {text[:200]!r}")
    assert not failures, "\n".join(failures)
    # Still serving; every request above was counted, as a 4xx (none as a 5xx).
    assert httpx.post(server.url + "/classify", json=bodies[0]).status_code == 200
    after = response_counts(server)
    added = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert not {k: n for k, n in added.items() if k[1].startswith("5")}, added
    fours = sum(n for k, n in added.items() if k[1].startswith("4"))
    assert fours == len(cases) + 3 - unparsed, (added, unparsed)


@pytest.mark.slow
def test_metrics_has_every_name_the_manifests_query(servers, bodies):
    server = servers["single"]
    for body in bodies[:3]:
        assert httpx.post(server.url + "/classify", json=body).status_code == 200
    text = httpx.get(server.url + "/metrics").text
    assert missing_metrics(text) == []
    for name in (
        "model_entity_store_cache_hit_rate",
        "model_shadow_agreement_rate",
        "model_info{",
        'model_drift_score{feature="model_score"}',
    ):
        assert name in text, name


@pytest.mark.slow
def test_restart_on_the_same_port_after_sigkill_of_the_process_group(sample, bodies):
    """`make serve` killed with `kill -9 -PGID`: no worker survives it, the port is free again."""
    first = Server(sample, "restart", cli=True)
    try:
        first.wait_ready()
        family = first._family()
        assert len(family) > 1, "the server's worker processes were not found"
        os.killpg(first.process.pid, signal.SIGKILL)  # the group only: workers are not in it
        first.process.wait(10)
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"orphaned after the server died: {[p.pid for p in alive]}"
    finally:
        first.stop()
    second = Server(sample, "restart-again", port=first.port, cli=True)
    try:
        second.wait_ready()
        r = httpx.post(second.url + "/classify", json=bodies[0])
        assert r.status_code == 200, r.text
    finally:
        second.stop()


def fuzz(operation, mode, url: str, session, statuses: dict, errors: list) -> None:
    """Send FUZZ_CASES generated requests of one operation; count statuses, keep 5xx."""
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=FUZZ_CASES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        response = case.call(base_url=url, session=session, timeout=30)
        key = (operation.path, mode.value, response.status_code)
        statuses[key] = statuses.get(key, 0) + 1
        if mode.value == "positive" and response.status_code != 200 and statuses[key] <= 3:
            print("valid by the schema, refused:", key, response.text[:300])
        if response.status_code >= 500:
            errors.append(f"{operation.path} {response.status_code}: {response.text[:200]}")

    call()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fuzzed_from_its_own_openapi_no_server_error(sample):
    """Schemathesis from the server's /docs.json: valid and invalid bodies for both API routes;
    no answer is a 5xx and the server still answers afterwards."""
    import requests
    import schemathesis
    from schemathesis import GenerationMode

    server = Server(sample, "fuzz", cli=True)
    statuses: dict[int, int] = {}
    errors: list[str] = []
    try:
        server.wait_ready()
        schema = schemathesis.openapi.from_url(server.url + "/docs.json")
        operations = {op.path: op for op in (r.ok() for r in schema.get_all_operations())}
        assert {"/classify", "/classify_batch"} <= set(operations)
        with requests.Session() as session:
            for path in ("/classify", "/classify_batch"):
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    fuzz(operations[path], mode, server.url, session, statuses, errors)
        r = httpx.post(server.url + "/classify", json=minimal_body(sample.cfg))
        assert r.status_code == 200, r.text
    finally:
        server.stop()
    total = sum(statuses.values())
    print(f"schemathesis: {total} cases, statuses {dict(sorted(statuses.items()))}")
    assert total >= 1000, statuses
    assert not errors, f"{len(errors)} server errors:\n" + "\n".join(errors[:20])


# The kill test stays last: it kills the single-mode server.
@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_prediction(servers, bodies):
    server = servers["single"]
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(worker: int):
        with httpx.Client(base_url=server.url, timeout=5) as http:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if i % 5 == 0:
                        r = http.post("/classify_batch", json=bodies[:4])
                        ids = [p["request_id"] for p in r.json()] if r.status_code == 200 else []
                    else:
                        body = bodies[(worker * 7 + i) % len(bodies)]
                        r = http.post("/classify", json=body)
                        ids = [r.json()["request_id"]] if r.status_code == 200 else []
                except (httpx.HTTPError, json.JSONDecodeError):
                    continue  # the server is gone: only answered requests count
                with lock:
                    acknowledged.extend(ids)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    with lock:
        before = len(acknowledged)
    workers = server._family()[1:]
    assert workers, "the server's worker processes were not found"
    server.kill()  # SIGKILL to the server and its workers, mid-load
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive, "a worker outlived the kill"
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(10)

    assert before > 20, "the load did not get going"
    with server.log() as log:
        logged = log.request_ids()
    missing = set(acknowledged) - logged
    print(f"kill test: {len(acknowledged)} acknowledged, {len(logged)} logged, {len(missing)} lost")
    assert not missing, f"{len(missing)} acknowledged predictions are not in the log"


@pytest.mark.slow
def test_bentoml_build_works_offline(project_root, tmp_path):
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPATH": str(project_root / "src"),
        # bentoml build resolves with uv; the one beside this interpreter, not a download.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", "build"],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    [bento] = [p for p in (tmp_path / "bentoml/bentos").glob("*/*") if p.name != "latest"]
    package = "{{cookiecutter.package_name}}"
    assert (bento / "src/src" / package / "serving/service.py").is_file()
    assert (bento / "src/configs/system.yaml").is_file()
    assert "/classify" in (bento / "apis/openapi.yaml").read_text()
