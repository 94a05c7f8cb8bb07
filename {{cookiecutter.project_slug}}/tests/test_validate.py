"""Validation: the contract's suite passes good data, names each broken check, quarantines bad rows.

Every test runs the real Great Expectations suite in a real file context (one per module, to keep
the suite fast); frames are built here from scratch, independent of the synthetic generator.
"""

import json

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.data import validate

NOW = pd.Timestamp("2024-06-01", tz="UTC")
N = 40


def make_rows(cfg, n: int = N) -> pd.DataFrame:
    """``n`` valid records of the canonical schema: one every 10 minutes, every 4th positive."""
    rng = np.random.default_rng(7)
    senders = [f"user{i % 7}@example{i % 3}.com" for i in range(n)]
    start = pd.Timestamp("2024-05-01", tz="UTC")
    return pd.DataFrame(
        {
            "message_id": [f"<m{i}@example.com>" for i in range(n)],
            "received_at": start + pd.to_timedelta(np.arange(n) * 600, unit="s"),
            "sender": senders,
            "sender_domain": [s.split("@")[1] for s in senders],
            "sender_created_at": start - pd.to_timedelta(rng.integers(1, 900, n), unit="D"),
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
    """The contract with ``data`` fields replaced (e.g. min_rows, allow_partial)."""
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=changes)})


@pytest.fixture(scope="module")
def small(cfg, tmp_path_factory):
    """Contract for small frames, with its own project root (and so its own gx/ folder)."""
    root = tmp_path_factory.mktemp("project")
    return with_data(cfg.model_copy(update={"root": root}), min_rows=20, allow_partial=False)


def checks(report) -> set:
    return {(f.check, f.column) for f in report.failures}


def test_good_data_passes_and_writes_data_docs(small):
    report = validate.validate_emails(small, make_rows(small), now=NOW, docs=True)

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
    "duplicate id": (
        lambda df, cfg: _set(df, "message_id", [9], df.at[4, "message_id"]),
        "unique",
        "message_id",
        "expect_column_values_to_be_unique",
        {9},
    ),
    "future timestamp": (
        lambda df, cfg: _set(df, "received_at", [11], NOW + pd.Timedelta(days=1)),
        "future",
        "received_at",
        "expect_column_values_to_be_between",
        {11},
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

    report = validate.validate_emails(small, df, now=NOW, docs=False)

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

    report = validate.validate_emails(small, df, now=NOW, docs=False)

    (failure,) = report.failures
    assert "many" in failure.observed and "1 of 40" in failure.observed
    assert set(report.quarantine["source_row"]) == {5}
    assert report.quarantine["recipient_count"].tolist() == ["many"]
    assert report.valid.loc[6, "recipient_count"] == 3


def _broken_csv(cfg, path):
    """A CSV (text all the way, as real exports are) with three bad rows."""
    df = make_rows(cfg)
    _set(df, "body", [3], None)
    df.at[3, "content_type"] = "application/pdf"  # row 3 fails two checks
    _set(df, "recipient_count", [5], "many")
    df.at[9, "message_id"] = df.at[4, "message_id"]
    df.to_csv(path, index=False)
    return df


def test_run_with_partial_data_writes_quarantine_and_valid_remainder(small, tmp_path):
    cfg = with_data(small, allow_partial=True)
    source = tmp_path / "emails.csv"
    df = _broken_csv(cfg, source)
    out = tmp_path / "validated"

    report = validate.run(cfg, source, out, now=NOW)

    assert not report.success and report.usable
    saved = json.loads((out / "report.json").read_text())
    assert saved["success"] is False and saved["usable"] is True
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

    # Same data, same folder, no partial data allowed: the earlier valid remainder must go.
    strict = validate.run(small, source, out, now=NOW)

    assert not strict.usable
    assert json.loads((out / "report.json").read_text())["usable"] is False
    assert (out / "quarantine.parquet").is_file()
    assert not (out / "validated.parquet").exists()


def test_partial_data_is_unusable_when_the_remainder_still_fails(small):
    cfg = with_data(small, allow_partial=True, min_rows=N - 1)
    df = _set(make_rows(cfg), "body", [1, 2], None)  # two rows out leaves N - 2 < min_rows

    report = validate.validate_emails(cfg, df, now=NOW, docs=False)

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
