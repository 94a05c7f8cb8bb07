"""Ingestion of labelled tables (CSV, JSONL, Parquet) under this project's contract.

Rows come from the domain pack's generator and columns from the contract, so the same tests hold
for every use case; the pack's own sources and repairs are tested with the pack.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.cli import app
from {{ cookiecutter.package_name }}.config import Column
from {{ cookiecutter.package_name }}.data import ingest as ing
from {{ cookiecutter.package_name }}.data import synthetic
from {{ cookiecutter.package_name }}.data.labels import id_key


@pytest.fixture(scope="module")
def rows(cfg) -> pd.DataFrame:
    return synthetic.generate(cfg, 60, 5, days=3)


def names(cfg, role: str) -> str:
    return cfg.data.column(role).name


def with_mapping(cfg, mapping: dict[str, str]):
    """The contract with another column_mapping (the contract model is frozen)."""
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"column_mapping": mapping})})


def assert_bookkeeping(cfg, result: ing.IngestResult) -> None:
    """Schema and counts every ingest must satisfy."""
    records, counts = result.records, result.counts
    assert list(records.columns) == [c.name for c in cfg.data.columns]
    labels = {cfg.problem.positive_class, cfg.problem.negative_class}
    assert set(records[names(cfg, "label")]) <= labels
    assert list(result.quarantine.columns) == ["source", "location", "reason", "excerpt"]
    assert counts.read == counts.ingested + counts.quarantined
    assert counts.ingested == len(records) and counts.quarantined == len(result.quarantine)


def test_a_csv_under_other_column_names_is_mapped_back(cfg, rows, tmp_path):
    source = rows.rename(columns={c: f"src_{c}" for c in rows.columns})
    path = tmp_path / "export.csv"
    source.to_csv(path, index=False)
    mapping = {f"src_{c}": c for c in rows.columns}
    result = ing.ingest(with_mapping(cfg, mapping), path)
    assert_bookkeeping(cfg, result)
    assert result.counts.ingested == len(rows) and result.counts.quarantined == 0
    records = result.records
    for role in ("id", "label"):
        assert records[names(cfg, role)].tolist() == rows[names(cfg, role)].tolist()
    ts = names(cfg, "timestamp")
    assert (records[ts] == pd.to_datetime(rows[ts], utc=True)).all()


def test_jsonl_keeps_good_lines_and_quarantines_broken_ones(cfg, rows, tmp_path):
    lines = [json.dumps(r, default=str) for r in rows.head(5).to_dict("records")]
    lines[2:2] = ["{not json", "", "[1, 2]"]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = ing.ingest(cfg, path)
    assert_bookkeeping(cfg, result)
    assert result.counts.ingested == 5
    assert result.counts.by_reason == {"unparseable_row": 2}  # the blank line is no record
    assert sorted(result.quarantine["location"]) == ["line 3", "line 5"]


def test_rows_without_a_usable_label_are_quarantined_with_the_reason(cfg, rows, tmp_path):
    label = names(cfg, "label")
    frame = rows.head(4).copy()
    frame[label] = frame[label].astype(object)
    frame.loc[1, label] = None
    frame.loc[2, label] = "maybe"
    path = tmp_path / "labels.parquet"
    frame.to_parquet(path)
    result = ing.ingest(cfg, path)
    assert_bookkeeping(cfg, result)
    assert result.counts.ingested == 2
    assert result.counts.by_reason == {"no_label": 1, "unmappable_label": 1}
    reasons = result.quarantine.set_index("reason")
    assert "maybe" in reasons.loc["unmappable_label", "excerpt"]


def test_a_labels_file_that_gives_an_id_both_classes_quarantines_its_record(cfg, rows, tmp_path):
    """A labels-file entry beats the label column; an id given both classes (whatever their
    spelling) is no label at all: its record is quarantined naming both, not labelled by
    whichever line came last. The same class twice is no conflict."""
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    ids = rows[names(cfg, "id")].astype(str).tolist()
    path = tmp_path / "records.csv"
    rows.head(4).to_csv(path, index=False)
    labels = tmp_path / "labels.csv"
    entries = [(ids[0], pos), (ids[1], "1"), (ids[0], neg), (ids[1], pos.upper()), (ids[2], neg)]
    pd.DataFrame(entries, columns=[names(cfg, "id"), "label"]).to_csv(labels, index=False)
    result = ing.ingest(cfg, path, labels_file=labels)
    assert_bookkeeping(cfg, result)
    assert result.counts.by_reason == {"conflicting_label": 1}
    said = f"the labels file gives {pos!r} and {neg!r} for {id_key(ids[0])!r}"
    assert result.quarantine["excerpt"].str.contains(said, regex=False).all()
    got = result.records.set_index(names(cfg, "id"))[names(cfg, "label")].to_dict()
    assert {str(k): v for k, v in got.items()} == {
        ids[1]: pos,
        ids[2]: neg,
        ids[3]: rows[names(cfg, "label")].iloc[3],
    }


def _contract(cfg, *, flags: bool, nullable: str | None = None):
    """The contract with (or without) a flags column, ``nullable`` made nullable."""
    columns = [
        c.model_copy(update={"nullable": True}) if c.name == nullable else c
        for c in cfg.data.columns
        if c.role != "flags"
    ]
    if flags:
        columns.append(Column(name="quality_flags", dtype="string", role="flags", nullable=True))
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"columns": columns})})


@pytest.mark.parametrize("flags", [True, False])
@pytest.mark.parametrize("nullable", [False, True])
def test_a_value_that_needs_a_repair_is_flagged_or_quarantined_never_passed_off(
    cfg, rows, tmp_path, flags, nullable
):
    """A missing or invalid number is filled in only where a flags column records it; a
    contract without one quarantines the record naming the value. A nullable column keeps a
    missing number as null (no repair) and an invalid one as null (flagged)."""
    number = next(c for c in cfg.data.columns if c.role == "numeric" and not c.nullable)
    contract = _contract(cfg, flags=flags, nullable=number.name if nullable else None)
    frame = rows.head(6)[[c.name for c in cfg.data.columns if c.role != "flags"]].copy()
    frame[number.name] = frame[number.name].astype(object)
    frame.loc[1, number.name] = "three"
    frame.loc[3, number.name] = None
    path = tmp_path / "records.csv"
    frame.to_csv(path, index=False)
    result = ing.ingest(contract, path)
    assert_bookkeeping(contract, result)
    records, counts = result.records, result.counts
    if flags:
        assert counts.ingested == 6
        got = records.set_index(names(cfg, "id")).loc[frame[names(cfg, "id")], number.name]
        assert f"invalid:{number.name}" in records.loc[1, "quality_flags"]
        if nullable:
            assert got.isna().tolist() == [False, True, False, True, False, False]
            assert f"missing:{number.name}" not in records.loc[3, "quality_flags"]
        else:
            assert not got.isna().any()
            assert f"missing:{number.name}" in records.loc[3, "quality_flags"]
    elif nullable:  # the missing number is no repair: only the invalid one is quarantined
        assert counts.ingested == 5 and counts.by_reason == {"invalid_value": 1}
        assert records[number.name].isna().sum() == 1
    else:
        assert counts.ingested == 4
        assert counts.by_reason == {"invalid_value": 1, "missing_value": 1}
    if not flags:
        why = result.quarantine.set_index("reason")["excerpt"]
        assert f"{number.name} 'three' is not a valid {number.dtype}" in why["invalid_value"]
        if not nullable:
            assert f"{number.name} is missing" in why["missing_value"]


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [("1", "pos"), ("0", "neg"), ("true", "pos"), ("False", "neg"), (" {POS} ", "pos")],
)
def test_label_spellings(cfg, spelling, expected):
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    labels = ing.normalise_labels(cfg, pd.Series([spelling.format(POS=pos.upper())]))
    assert labels.iloc[0] == (pos if expected == "pos" else neg)


def test_a_corrupt_parquet_file_is_quarantined_as_a_file(cfg, tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    result = ing.ingest(cfg, path)
    assert_bookkeeping(cfg, result)
    assert result.counts.read == 1 and result.counts.by_reason == {"unreadable_file": 1}


def test_run_writes_records_and_a_quarantine_that_belongs_to_them(cfg, rows, tmp_path):
    label = names(cfg, "label")
    frame = rows.head(6).copy()
    frame[label] = frame[label].astype(object)
    frame.loc[0, label] = None
    source = tmp_path / "in.parquet"
    frame.to_parquet(source)
    out = tmp_path / "data" / "raw" / "records.parquet"
    result = ing.run(cfg, source, out, progress=False)
    assert result.counts.read == 6
    written = pd.read_parquet(out)
    assert list(written.columns) == [c.name for c in cfg.data.columns] and len(written) == 5
    side = ing.quarantine_path(out)
    assert side.name == "records.quarantine.parquet"
    assert pd.read_parquet(side)["reason"].tolist() == ["no_label"]
    # A clean re-run removes the stale quarantine, so the two files always belong together.
    rows.head(6).to_parquet(source)
    ing.run(cfg, source, out, progress=False)
    assert not side.exists()


def test_format_option_and_usage_errors(cfg, tmp_path):
    table = tmp_path / "export.txt"
    table.write_text(
        f"{names(cfg, 'id')},{names(cfg, 'label')}\nm1,{cfg.problem.positive_class}\n",
        encoding="utf-8",
    )
    assert ing.ingest(cfg, table, fmt="csv").counts.read == 1
    with pytest.raises(FileNotFoundError):
        ing.ingest(cfg, tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="unknown format"):
        ing.ingest(cfg, table, fmt="xlsx")


def test_ingest_never_writes_parquet_over_a_file_of_another_format(
    cfg, rows, tmp_path, project_root
):
    """``data profile --write`` can point data.source.path at the team's own CSV: ingesting
    with the default --out must refuse, not replace that CSV with Parquet."""
    import yaml

    own = tmp_path / "own.csv"
    rows.head(5).to_csv(own, index=False)
    before = own.read_bytes()
    contract = yaml.safe_load((project_root / "configs" / "system.yaml").read_text())
    contract["data"]["source"] = {**contract["data"].get("source", {}), "path": str(own)}
    config = tmp_path / "system.yaml"
    config.write_text(yaml.safe_dump(contract))
    export = tmp_path / "march.csv"
    rows.head(5).to_csv(export, index=False)
    runner = CliRunner()
    cases = [
        (["data", "ingest", str(export)], "data.source.path"),
        (["data", "ingest", str(export), "--out", str(own)], "--out"),
        (["data", "window"], "data.source.path"),
    ]
    for args, named in cases:
        result = runner.invoke(app, [*args, "--config", str(config)])
        assert result.exit_code == 2, result.output
        assert f"{named} {own}" in result.output and "Parquet" in result.output, result.output
        assert own.read_bytes() == before
    parquet = tmp_path / "own.parquet"
    parquet.write_bytes(b"not parquet")
    result = runner.invoke(app, ["data", "ingest", str(export), "--out", str(parquet)])
    assert result.exit_code == 2 and "exists and is not Parquet" in result.output
    result = runner.invoke(
        app, ["data", "ingest", str(export), "--out", str(tmp_path / "new.parquet")]
    )
    assert result.exit_code == 0, result.output


TIMES = [
    # (values read together, what each becomes: an ISO instant, or None for refused)
    (["2025-03-31 04:00 PM", "2025-03-31 04:00 (UTC)"], ["2025-03-31T16:00", "2025-03-31T04:00"]),
    (
        ["March 2025", "2025", "2025-03", "31 March 2025 4pm"],
        [None, None, None, "2025-03-31T16:00"],
    ),
    (["13/03/2025 04:00", "03/04/2025 04:00"], ["2025-03-13T04:00", "2025-04-03T04:00"]),
    (["03/13/2025", "03/04/2025"], ["2025-03-13T00:00", "2025-03-04T00:00"]),
    (["03/04/2025", "12.03.2025"], [None, None]),  # no value says which comes first
    (["13/03/2025", "03/13/2025", "01/02/2025"], [None, None, None]),  # they disagree
]


@pytest.mark.parametrize(("values", "expected"), TIMES)
def test_a_time_is_read_as_written_or_refused_never_completed_or_guessed(values, expected):
    """A 12-hour clock is kept; a date missing its day or month is not completed with today's
    or the first one; day and month are read in the one order the column's values show."""
    from {{ cookiecutter.package_name }}.data.canonical import parse_times
    from {{ cookiecutter.package_name }}.data.coerce import _coerce_column

    times, invalid = parse_times(pd.Series(values, dtype=object))
    wanted = [None if e is None else pd.Timestamp(e, tz="UTC") for e in expected]
    assert [None if t is pd.NaT else t for t in times] == wanted
    assert invalid.tolist() == [e is None for e in expected]
    # Validation (batch scoring, training) reads ISO 8601 only, and no year or month alone.
    typed, bad = _coerce_column(pd.Series(["2025", "2025-03", "2025-03-31"]), "datetime")
    assert bad.tolist() == [True, True, False]
