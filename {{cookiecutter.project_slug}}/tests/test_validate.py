"""Validation: the contract's suite passes good data, names each broken check, quarantines bad rows.

Every test runs the real Great Expectations suite in a real file context (one per module, to keep
the suite fast); frames are built here from scratch, independent of the synthetic generator.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from reference_contract import reference_config, write_reference

from {{cookiecutter.package_name}}.data import validate
from {{cookiecutter.package_name}}.data.coerce import MAX_TEXT_CHARS
from {{cookiecutter.package_name}}.entity_history import _ns
from {{cookiecutter.package_name}}.predlog.store import KEY_MAX_CHARS

NOW = pd.Timestamp("2024-06-01", tz="UTC")
N = 40


def make_rows(cfg, n: int = N) -> pd.DataFrame:
    """``n`` valid records of the canonical schema: one every 10 minutes, every 4th positive."""
    rng = np.random.default_rng(7)
    accounts = [f"user{i % 7}@example{i % 3}.com" for i in range(n)]
    start = pd.Timestamp("2024-05-01", tz="UTC")
    return pd.DataFrame(
        {
            "message_id": [f"<m{i}@example.com>" for i in range(n)],
            "received_at": start + pd.to_timedelta(np.arange(n) * 600, unit="s"),
            "account": accounts,
            "account_domain": [s.split("@")[1] for s in accounts],
            "account_created_at": start - pd.to_timedelta(rng.integers(1, 900, n), unit="D"),
            "reply_to": [None] * n,
            "recipient_count": rng.integers(1, 5, n),
            "subject": [f"subject {i}" for i in range(n)],
            "body": ["hello, see the attached report"] * n,
            "content_type": np.where(np.arange(n) % 3 == 0, "text/html", "text/plain"),
            "urls": [None] * n,
            "attachment_count": rng.integers(0, 3, n),
            "attachment_types": [None] * n,
            "inline_image_count": rng.integers(0, 2, n),
            "quality_flags": [None] * n,
            "label": np.where(
                np.arange(n) % 4 == 0, cfg.problem.positive_class, cfg.problem.negative_class
            ),
        }
    )


def with_data(cfg, **changes):
    """The contract with ``data`` fields replaced (e.g. min_rows, max_quarantine_share)."""
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=changes)})


@pytest.fixture(scope="module")
def small(cfg, tmp_path_factory):
    """The reference contract for small frames, with its own project root (and so its own gx/
    folder)."""
    root = tmp_path_factory.mktemp("project")
    return reference_config(
        cfg.model_copy(update={"root": root}), min_rows=20, max_quarantine_share=0.0
    )


def checks(report) -> set:
    return {(f.check, f.column) for f in report.failures}


def test_good_data_passes_and_writes_data_docs(small):
    report = validate.validate_records(small, make_rows(small), now=NOW, docs=True)

    assert report.success and report.usable, report.summary()
    assert report.failures == [] and report.quarantine.empty
    assert len(report.valid) == N
    assert report.valid["recipient_count"].dtype == "Int64"
    assert str(report.valid["received_at"].dtype) == "datetime64[us, UTC]"
    assert report.summary().startswith("PASS")
    gx_dir = small.path("gx")
    assert (gx_dir / "great_expectations.yml").is_file()
    assert report.docs_path is not None and report.docs_path.is_file()
    assert report.docs_path.is_relative_to(gx_dir)
    # The run is persisted (the path that breaks on expectations returning numpy bools).
    assert list((gx_dir / "uncommitted" / "validations").rglob("*.json"))


def _set(df, column, rows, value):
    df[column] = df[column].astype(object)
    for row in rows:
        df.at[row, column] = value
    return df


BROKEN = {
    # name: (mutation, check, column, expectation type, quarantined rows or None)
    "null in non-nullable": (
        lambda df, cfg: _set(df, "body", [3, 7], None),
        "not_null",
        "body",
        "expect_column_values_to_not_be_null",
        {3, 7},
    ),
    "wrong type": (
        lambda df, cfg: _set(df, "recipient_count", [5], "many"),
        "type",
        "recipient_count",
        "expect_column_type_to_be",
        {5},
    ),
    "duplicate id": (  # rows 4 and 8 have the same label: a copy
        lambda df, cfg: _set(df, "message_id", [8], df.at[4, "message_id"]),
        "unique",
        "message_id",
        "expect_column_values_to_be_unique",
        {8},
    ),
    "timestamp after the run's time + max_ahead_days": (
        lambda df, cfg: _set(df, "received_at", [11], NOW + pd.Timedelta(days=2)),
        "range",
        "received_at",
        "expect_column_values_to_be_between",
        {11},
    ),
    "timestamp before the contract's min": (
        lambda df, cfg: _set(df, "received_at", [12], pd.Timestamp("1994-12-31", tz="UTC")),
        "range",
        "received_at",
        "expect_column_values_to_be_between",
        {12},
    ),
    "obsolete year, outside what the stages can hold": (
        lambda df, cfg: _set(df, "received_at", [13], pd.Timestamp("0102-08-22 04:07:35Z")),
        "range",
        "received_at",
        "expect_column_values_to_be_between",
        {13},
    ),
    "account created before the contract's min": (
        lambda df, cfg: _set(df, "account_created_at", [14], pd.Timestamp("1969-12-31", tz="UTC")),
        "range",
        "account_created_at",
        "expect_column_values_to_be_between",
        {14},
    ),
    "value not allowed": (
        lambda df, cfg: _set(df, "content_type", [2], "application/pdf"),
        "allowed",
        "content_type",
        "expect_column_values_to_be_in_set",
        {2},
    ),
    "out of range": (
        lambda df, cfg: _set(df, "attachment_count", [8], 1000),
        "range",
        "attachment_count",
        "expect_column_values_to_be_between",
        {8},
    ),
    "all negative": (
        lambda df, cfg: df.assign(label=cfg.problem.negative_class),
        "positive_rate",
        "label",
        "expect_column_values_to_be_in_set",
        None,
    ),
    "too few rows": (
        lambda df, cfg: df.head(10),
        "row_count",
        None,
        "expect_table_row_count_to_be_between",
        None,
    ),
    "too many nulls in a nullable column": (
        lambda df, cfg: _set(df, "subject", range(0, N, 10), None),
        "mostly",
        "subject",
        "expect_column_values_to_not_be_null",
        None,
    ),
    "missing column": (
        lambda df, cfg: df.drop(columns=["body"]),
        "column_exists",
        "body",
        "expect_column_to_exist",
        None,
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_each_broken_variant_fails_naming_the_check_and_column(small, name):
    mutate, check, column, expectation, bad_rows = BROKEN[name]
    df = mutate(make_rows(small), small)

    report = validate.validate_records(small, df, now=NOW, docs=False)

    assert not report.success and not report.usable
    failed = [f for f in report.failures if (f.check, f.column) == (check, column)]
    assert failed, f"{name}: expected {check} on {column}, got {checks(report)}"
    assert failed[0].expectation == expectation
    assert failed[0].observed and failed[0].expected
    # Only the broken check fails: errors it implies (e.g. on a missing column) are folded in.
    assert checks(report) == {(check, column)}
    quarantined = set(report.quarantine["source_row"]) if len(report.quarantine) else set()
    assert quarantined == (bad_rows or set())
    if bad_rows:
        assert all(f"{check}: {column}" in r for r in report.quarantine["reason"])
        assert len(report.valid) == len(df) - len(bad_rows)


def test_wrong_type_reports_the_unparseable_value_but_accepts_parseable_text(small):
    df = _set(make_rows(small), "recipient_count", [5], "many")
    df.at[6, "recipient_count"] = "3"  # text that parses as an int is fine

    report = validate.validate_records(small, df, now=NOW, docs=False)

    (failure,) = report.failures
    assert "many" in failure.observed and "1 of 40" in failure.observed
    assert set(report.quarantine["source_row"]) == {5}
    assert report.quarantine["recipient_count"].tolist() == ["many"]
    assert report.valid.loc[6, "recipient_count"] == 3


def test_a_key_the_log_cannot_hold_is_quarantined_naming_why(small):
    """The id and the entity key are stored as text in columns of a set width: a NUL
    (PostgreSQL refuses it) or a key longer than its column fails the type check of its column,
    as the API refuses it; a key of exactly the width is kept, and a text column may hold a
    NUL."""
    id_width, entity_width = KEY_MAX_CHARS["id"], KEY_MAX_CHARS["entity_key"]
    df = make_rows(small)
    df.at[4, "message_id"] = "m\x00x"
    df.at[7, "account"] = "a\x00b"
    df.at[9, "body"] = "a body with a \x00 in it"
    df.at[11, "message_id"] = "m" * (id_width + 1)
    df.at[12, "message_id"] = "m" * id_width
    df.at[13, "account"] = "a" * (entity_width + 1)
    df.at[14, "account"] = "a" * entity_width
    report = validate.validate_records(small, df, now=NOW, docs=False)
    assert checks(report) == {("type", "message_id"), ("type", "account")}
    assert all(
        f"of at most {KEY_MAX_CHARS[role]:,} characters without a NUL character (a key)"
        in f.expected
        for f, role in zip(report.failures, ("id", "entity_key"), strict=True)
    )
    assert set(report.quarantine["source_row"]) == {4, 7, 11, 13}
    assert set(report.quarantine["reason"]) == {
        "type: message_id (a NUL character)",
        "type: account (a NUL character)",
        f"type: message_id ({id_width + 1:,} characters, over the {id_width:,} of a key)",
        f"type: account ({entity_width + 1:,} characters, over the {entity_width:,} of a key)",
    }


def test_blank_text_is_missing_where_no_flags_column_records_a_default(small, tmp_path):
    """Without a flags column, "" or spaces in a string column is missing, whatever the file:
    a JSON-lines record with a blank required string is quarantined as the same record in a CSV
    (an empty cell) is, and as the API refuses it. With one, "" is ingest's flagged default."""
    df = make_rows(small)
    df.at[3, "account_domain"] = "  "
    df.at[5, "body"] = ""
    df.at[6, "urls"] = " "
    flagged = validate.validate_records(small, df, now=NOW, docs=False)
    assert not flagged.failures
    unflagged = with_data(small, columns=[c for c in small.data.columns if c.role != "flags"])
    lines = tmp_path / "records.jsonl"
    df.drop(columns=["quality_flags"]).to_json(
        lines, orient="records", lines=True, date_format="iso"
    )
    frame = validate.read_table(lines)
    report = validate.validate_records(unflagged, frame, now=NOW, docs=False)
    assert checks(report) == {("not_null", "account_domain"), ("not_null", "body")}
    reasons = report.quarantine.set_index("source_row")["reason"].to_dict()
    assert reasons == {3: "not_null: account_domain", 5: "not_null: body"}
    assert pd.isna(report.valid.at[6, "urls"])  # a nullable column: missing, the record kept


def test_a_json_boolean_or_list_is_no_number_and_no_text(small, tmp_path):
    """JSON lines keep JSON's types: ``true`` in a count is not 1 and a list in a text is not its
    repr. Each is a type failure of its column, as the API refuses it; a number in a text column
    is the text of that number. Text longer than the API takes is refused here too."""
    df = make_rows(small).astype(object)
    df.at[2, "recipient_count"] = True
    df.at[4, "account_domain"] = False
    df.at[6, "body"] = ["a", "b"]
    df.at[8, "subject"] = {"text": "hi"}
    df.at[10, "subject"] = 12345
    df.at[12, "body"] = "x" * (MAX_TEXT_CHARS + 1)
    lines = tmp_path / "records.jsonl"
    df.to_json(lines, orient="records", lines=True, date_format="iso")
    report = validate.validate_records(small, validate.read_table(lines), now=NOW, docs=False)
    reasons = report.quarantine.set_index("source_row")["reason"].to_dict()
    assert reasons == {
        2: "type: recipient_count",
        4: "type: account_domain (not text)",
        6: "type: body (not text)",
        8: "type: subject (not text)",
        12: f"type: body ({MAX_TEXT_CHARS + 1:,} characters, over the {MAX_TEXT_CHARS:,} a "
        "value holds)",
    }
    assert report.valid.at[10, "subject"] == "12345"


def test_numbers_in_a_text_column_read_line_by_line_are_its_text(small, tmp_path):
    """A broken line makes the reader go line by line, every column plain objects: a text
    column that holds numbers only (numeric ids) is still the text of those numbers."""
    df = make_rows(small).astype(object)
    df["message_id"] = list(range(len(df)))
    lines = df.to_json(orient="records", lines=True, date_format="iso").splitlines()
    lines[3] = lines[3][:10]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = validate.validate_records(small, validate.read_table(path), now=NOW, docs=False)
    assert set(report.quarantine["source_row"]) == {3}
    assert report.valid["message_id"].tolist()[:4] == ["0", "1", "2", "4"]


def test_lines_that_do_not_parse_are_quarantined_by_line_the_rest_validated(small, tmp_path):
    """A CSV line with extra fields, a line that is not UTF-8, a broken JSON line, a byte order
    mark: the file is read line by line, each unreadable line quarantined as ``parse`` with its
    line number, in its place among the records; nothing else is lost."""
    df = make_rows(small)
    df.at[5, "body"] = "caf\u00e9 menu"
    csv_path = tmp_path / "records.csv"
    df.to_csv(csv_path, index=False)
    lines = csv_path.read_bytes().split(b"\n")
    lines[3] += b",extra,fields"  # record 2 (line 4)
    lines[6] = lines[6].replace("\u00e9".encode(), "\u00e9".encode("cp1252"))  # record 5
    csv_path.write_bytes(b"\n".join(lines))
    table = validate.read_table(csv_path)
    assert len(table) == len(df)
    report = validate.validate_records(small, table, now=NOW, docs=False)
    (parse,) = [f for f in report.failures if f.check == "parse"]
    assert parse.rows == (2,) and "line 4: expected" in parse.observed
    assert report.quarantine.set_index("source_row").loc[2, "reason"].startswith("parse (line 4")
    assert set(report.quarantine["source_row"]) == {2}
    assert len(report.valid) == len(df) - 1
    assert report.valid.loc[5, "body"] == "caf\u00e9 menu"  # read as cp1252

    records = [json.dumps(r, default=str) for r in df.to_dict("records")]
    records[0] = "\ufeff" + records[0]
    records[7] = records[7][:-5]  # cut short
    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("\n".join(records) + "\n", encoding="utf-8")
    report = validate.validate_records(small, validate.read_table(jsonl), now=NOW, docs=False)
    assert set(report.quarantine["source_row"]) == {7}
    assert report.quarantine["reason"].iloc[0].startswith("parse (line 8: not JSON")
    assert len(report.valid) == len(df) - 1

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.csv: empty file"):
        validate.read_table(empty)


def test_jsonl_numbers_read_exactly_by_either_reader(tmp_path):
    """A clean file (pandas) and a file with a broken line (line by line) give the same floats:
    batch scoring's request ids hash them."""
    values = [0.30000000000000004, 1234.5678901234567, 0.12345678901234568]
    path = tmp_path / "numbers.jsonl"
    path.write_text("".join(json.dumps({"x": v}) + "\n" for v in values), encoding="utf-8")
    assert validate.read_table(path)["x"].tolist() == values
    path.write_text(path.read_text(encoding="utf-8") + "{broken\n", encoding="utf-8")
    assert validate.read_table(path)["x"].tolist()[:3] == values


def _broken_csv(cfg, path):
    """A CSV (text all the way, as real exports are) with three bad rows."""
    df = make_rows(cfg)
    _set(df, "body", [3], None)
    df.at[3, "content_type"] = "application/pdf"  # row 3 fails two checks
    _set(df, "recipient_count", [5], "many")
    df.at[9, "message_id"] = df.at[4, "message_id"]  # a copy of row 4
    df.at[9, "label"] = df.at[4, "label"]
    df.to_csv(path, index=False)
    return df


def test_copies_of_an_id_that_disagree_on_the_label_are_all_quarantined(small):
    """Copies of a record keep the first; copies whose labels differ (the same message in two
    label folders) are all quarantined, since which label is right is not known."""
    df = make_rows(small)
    ids, labels = df["message_id"].tolist(), df["label"].tolist()
    other = next(i for i in range(2, len(df)) if labels[i] != labels[0])
    same = next(i for i in range(2, len(df)) if i != other and labels[i] == labels[1])
    df.at[other, "message_id"] = ids[0]  # the same id, the other label
    df.at[same, "message_id"] = ids[1]  # the same id, the same label
    report = validate.validate_records(small, df, now=NOW, docs=False)
    reasons = report.quarantine.set_index("source_row")["reason"].to_dict()
    disagree = "unique: message_id (its copies disagree on the label)"
    assert reasons == {0: disagree, other: disagree, same: "unique: message_id"}


def test_run_with_partial_data_writes_quarantine_and_valid_remainder(small, tmp_path):
    cfg = with_data(small, max_quarantine_share=0.1)  # 3 of 40 rows will be quarantined
    source = tmp_path / "records.csv"
    df = _broken_csv(cfg, source)
    out = tmp_path / "validated"

    report = validate.run(cfg, source, out, now=NOW)

    assert not report.success and report.usable
    assert validate.decide(report).status == validate.PARTIAL
    assert report.summary().startswith("PARTIAL: quarantined 3 of 40 rows (7.50 %)")
    saved = json.loads((out / "report.json").read_text())
    assert saved["success"] is False and saved["usable"] is True
    assert saved["status"] == "partial" and saved["quarantined_share"] == 3 / N
    assert saved["quarantined_rows"] == 3 and saved["valid_rows"] == N - 3
    assert {(f["check"], f["column"]) for f in saved["failures"]} == {
        ("not_null", "body"),
        ("allowed", "content_type"),
        ("type", "recipient_count"),
        ("unique", "message_id"),
    }
    quarantine = pd.read_parquet(out / "quarantine.parquet").set_index("source_row")
    assert quarantine["reason"].to_dict() == {
        3: "not_null: body; allowed: content_type",
        5: "type: recipient_count",
        9: "unique: message_id",
    }
    validated = pd.read_parquet(out / "validated.parquet")
    assert len(validated) == N - 3
    assert validated["message_id"].is_unique
    assert set(validated["message_id"]) == set(df["message_id"].drop([3, 5, 9]))
    assert str(validated["received_at"].dtype).startswith("datetime64")
    assert validated["recipient_count"].dtype == "Int64"

    # Same data, same folder, no quarantined row allowed: the earlier valid remainder must go.
    strict = validate.run(small, source, out, now=NOW)

    assert not strict.usable
    assert json.loads((out / "report.json").read_text())["usable"] is False
    assert (out / "quarantine.parquet").is_file()
    assert not (out / "validated.parquet").exists()


def test_partial_data_is_unusable_when_the_remainder_still_fails(small):
    cfg = with_data(small, max_quarantine_share=1.0, min_rows=N - 1)
    df = _set(make_rows(cfg), "body", [1, 2], None)  # two rows out leaves N - 2 < min_rows

    report = validate.validate_records(cfg, df, now=NOW, docs=False)

    assert not report.success and not report.usable
    assert {(f.check, f.column) for f in report.remainder_failures} == {("row_count", None)}
    assert "not usable" in report.summary()


def test_suite_follows_the_contract(small):
    column = next(c for c in small.data.columns if c.name == "content_type")
    edited = with_data(
        small,
        min_rows=123,
        columns=[
            c.model_copy(update={"allowed": ["text/plain"]}) if c is column else c
            for c in small.data.columns
        ],
    )

    suite = validate.build_suite(edited)

    by_check = {}
    for e in suite.expectations:
        by_check.setdefault(e.meta["check"], []).append(e)
    assert by_check["row_count"][0].min_value == 123
    allowed = {e.column: e.value_set for e in by_check["allowed"]}
    assert allowed["content_type"] == ["text/plain"]
    assert {e.column for e in by_check["column_exists"]} == {c.name for c in small.data.columns}
    assert {e.column for e in by_check["unique"]} == {"message_id"}
    # Only expectations whose persisted results serialize (no quantile / KL ones).
    assert not {e.expectation_type for e in suite.expectations} & {
        "expect_column_quantile_values_to_be_between",
        "expect_column_kl_divergence_to_be_less_than",
    }
    json.dumps(suite.to_json_dict())


def test_coercion_parses_text_and_flags_what_does_not_parse(small):
    raw = make_rows(small, 4).astype(object)
    raw["received_at"] = ["2024-05-01T10:00:00Z", "2024-05-01 11:00", "not a date", None]
    raw["recipient_count"] = ["2", 3.0, 3.5, ""]

    typed, bad = validate.coerce_to_contract(small, raw)

    assert bad["received_at"].tolist() == [False, False, True, False]
    assert typed["received_at"].iloc[1] == pd.Timestamp("2024-05-01 11:00", tz="UTC")
    assert bad["recipient_count"].tolist() == [False, False, True, False]
    assert typed["recipient_count"].iloc[:2].tolist() == [2, 3]
    assert typed["recipient_count"].isna().tolist() == [False, False, True, True]


# --- time bounds ---------------------------------------------------------------------------------


def test_out_of_range_times_are_quarantined_with_column_value_and_bound(small, tmp_path):
    """Text as a foreign export or a log line gives it: each out-of-range time is named."""
    df = make_rows(small).astype({"received_at": object})
    df.loc[1, "received_at"] = "0102-08-22T04:07:35+00:00"  # RFC 2822 obsolete year, unrepaired
    df.loc[2, "received_at"] = "1994-12-31T23:59:59Z"
    df.loc[3, "received_at"] = "2999-01-01T00:00:00Z"
    df.loc[4, "received_at"] = "+10000-01-01T00:00:00Z"  # beyond any datetime: does not parse
    source = tmp_path / "records.csv"
    df.to_csv(source, index=False)

    report = validate.run(small, source, tmp_path / "out", now=NOW, docs=False)

    reasons = report.quarantine.set_index("source_row")["reason"].to_dict()
    assert set(reasons) == {1, 2, 3, 4}
    assert reasons[1] == (
        "range: received_at (0102-08-22T04:07:35+00:00 < min 1995-01-01T00:00:00+00:00)"
    )
    assert reasons[2] == (
        "range: received_at (1994-12-31T23:59:59+00:00 < min 1995-01-01T00:00:00+00:00)"
    )
    assert reasons[3] == (
        "range: received_at (2999-01-01T00:00:00+00:00 > max 2024-06-02T00:00:00+00:00 "
        "(the run's time + 1 day))"
    )
    assert reasons[4] == "type: received_at"
    (failure,) = [f for f in report.failures if f.check == "range"]
    assert "0102-08-22" in failure.observed and "1995-01-01" in failure.expected
    assert report.valid["received_at"].between(pd.Timestamp("1995-01-01", tz="UTC"), NOW).all()


def test_a_datetime_column_without_bounds_still_keeps_what_the_stages_can_hold(small):
    created = next(c for c in small.data.columns if c.name == "account_created_at")
    unbounded = with_data(
        small,
        columns=[
            c.model_copy(update={"min": None}) if c is created else c for c in small.data.columns
        ],
    )
    df = make_rows(small)
    df = _set(df, "account_created_at", [5], pd.Timestamp("1500-01-01", tz="UTC"))

    report = validate.validate_records(unbounded, df, now=NOW, docs=False)

    assert report.quarantine.set_index("source_row")["reason"].to_dict() == {
        5: "range: account_created_at (1500-01-01T00:00:00+00:00 < min 1677-09-22T00:00:00+00:00)"
    }


_ANY_TIME = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)
_RECENT = st.datetimes(
    min_value=datetime(2024, 5, 1), max_value=datetime(2024, 5, 30), timezones=st.just(UTC)
)


# No shrinking: each example runs the whole suite (about a second); the failing one is printed.
@settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(times=st.lists(st.one_of(_RECENT, _ANY_TIME), min_size=N, max_size=N))
def test_any_time_is_either_within_the_bounds_or_quarantined_naming_them(small, times):
    """The class: any representable time, valid or not, never raises and never slips through."""
    df = make_rows(small).assign(received_at=pd.Series(times, dtype="datetime64[us, UTC]"))
    column = small.data.column("timestamp")
    low, high = column.time_bounds(NOW.to_pydatetime())
    outside = {i for i, t in enumerate(times) if not low <= t <= high}

    report = validate.validate_records(small, df, now=NOW, docs=False)

    quarantined = report.quarantine.set_index("source_row")["reason"].to_dict()
    assert {r for r, why in quarantined.items() if "range: received_at (" in why} == outside
    assert all(("< min" in quarantined[r]) or ("> max" in quarantined[r]) for r in outside)
    kept = report.valid["received_at"]
    assert kept.between(low, high).all()
    # What passes is what the later stages compute on, in nanoseconds.
    assert len(_ns(kept, "received_at")) == len(kept)


def _history_splits(cfg, folder, received_at):
    """Three split files as `data split` writes them, the test part holding ``received_at``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = make_rows(cfg)
    for name, part in (("train", rows[:20]), ("validation", rows[20:30]), ("test", rows[30:])):
        part = part.reset_index(drop=True)
        if name == "test":
            part = _set(part, "received_at", [2], received_at)
            part["received_at"] = part["received_at"].astype("datetime64[us, UTC]")
        part.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def test_stages_after_validation_refuse_times_they_cannot_hold_in_one_line(small, tmp_path):
    """A file that skipped validation: split and features stop naming the file, column, check."""
    from typer.testing import CliRunner

    from {{cookiecutter.package_name}}.cli import app
    from {{cookiecutter.package_name}}.data import split
    from {{cookiecutter.package_name}}.features import build

    year_102 = pd.Timestamp("0102-08-22 04:07:35Z")
    rows = make_rows(small)
    rows = _set(rows, "received_at", [3], year_102).astype({"received_at": "datetime64[us, UTC]"})
    rows.to_parquet(tmp_path / "validated.parquet", index=False)
    with pytest.raises(ValueError) as raised:
        split.run(small, tmp_path / "validated.parquet", tmp_path / "split")
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'validated.parquet'}: received_at: 1 of 40 values")
    assert "outside the time range 1677-09-22 .. 2262-04-11" in message
    assert "0102-08-22T04:07:35+00:00" in message and "\n" not in message

    splits = _history_splits(small, tmp_path / "splits", year_102)
    with pytest.raises(ValueError, match=r"test\.parquet: received_at: 1 of 10 values outside"):
        build.run(small, splits, tmp_path / "features", store_url="sqlite://")

    config = str(write_reference(small, tmp_path / "configs" / "system.yaml"))
    args = ["features", "build", "--split-dir", str(splits), "--out", str(tmp_path / "f")]
    result = CliRunner().invoke(app, [*args, "--config", config])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "test.parquet: received_at: 1 of 10 values outside the time range" in result.output
    assert "Traceback" not in result.output


# --- one rule for going on with partial data: the CLI and the pipeline ----------------------------

SHARE = 0.05  # 2 of 40 rows


@pytest.mark.parametrize(
    ("bad", "status"),
    [(0, "passed"), (1, "partial"), (2, "partial"), (3, "failed"), (N // 2, "failed")],
    ids=["0 %", "below the share", "at the share", "above the share", "half"],
)
def test_cli_and_pipeline_step_decide_alike_on_the_quarantined_share(small, tmp_path, bad, status):
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from {{cookiecutter.package_name}}.cli import app
    from {{cookiecutter.package_name}}.pipeline import steps

    # The module's project (its GX context), with the reference columns.
    config = write_reference(
        small, small.root / "configs" / "partial.yaml", min_rows=20, max_quarantine_share=SHARE
    )
    raw = tmp_path / "raw"
    raw.mkdir()
    _set(make_rows(small), "body", range(bad), None).to_parquet(raw / steps.RAW_FILE)

    cli_out = tmp_path / "cli"
    args = ["data", "validate", str(raw / steps.RAW_FILE), "--out", str(cli_out), "--no-docs"]
    result = CliRunner().invoke(app, [*args, "--config", str(config)])

    step_out = SimpleNamespace(path=str(tmp_path / "step"), metadata={})
    md = SimpleNamespace(path=str(tmp_path / "report.md"))
    step_status, summary = steps.validate_data(
        str(config), SimpleNamespace(path=str(raw)), step_out, md
    )

    assert step_status == status
    assert result.exit_code == (1 if status == "failed" else 0), result.output
    if status == "failed":
        with pytest.raises(RuntimeError, match="data validation failed"):
            steps.check_data(step_status, summary)
    else:
        steps.check_data(step_status, summary)  # the pipeline goes on, as `make train` does
    for folder in (cli_out, Path(step_out.path)):
        saved = json.loads((folder / "report.json").read_text())
        assert saved["status"] == status and saved["quarantined_rows"] == bad
        validated = folder / "validated.parquet"
        assert validated.is_file() == (status != "failed")
        if validated.is_file():
            assert len(pd.read_parquet(validated)) == N - bad
    if status == "partial":
        share = f"{100 * bad / N:.2f} %"
        assert f"PARTIAL: quarantined {bad} of {N} rows ({share})" in result.output
        assert f"quarantine: {cli_out / 'quarantine.parquet'}" in result.output
        assert f"valid remainder: {cli_out / 'validated.parquet'}" in result.output
    if status == "failed":
        assert "is over data.max_quarantine_share 5.00 %" in summary
        assert "not_null: body" in summary and "not_null on body" in result.output


def test_a_failed_data_set_check_stops_whatever_the_share(small):
    cfg = with_data(small, max_quarantine_share=1.0)
    df = make_rows(cfg).assign(label=cfg.problem.negative_class)  # no positive row at all

    report = validate.validate_records(cfg, df, now=NOW, docs=False)

    assert report.quarantine.empty
    decision = validate.decide(report)
    assert decision.status == "failed"
    assert "data-set checks failed: positive_rate" in decision.reason
