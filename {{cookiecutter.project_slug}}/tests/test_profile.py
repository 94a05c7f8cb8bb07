"""`data profile FILE` proposes the contract's columns from a user's table, and `--write` puts
them in configs/system.yaml without touching the rest of the file.

The table is one the code has never seen (card transactions, no text column), in each format.
"""

import csv
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }}.cli import app
from {{ cookiecutter.package_name }}.cli.common import GATE_REJECTED
from {{ cookiecutter.package_name }}.config import Column, load_config
from {{ cookiecutter.package_name }}.data import contract_write, profile

SOURCE = os.path.dirname(os.path.dirname({{ cookiecutter.package_name }}.__file__))
FORMATS = ("csv", "parquet", "jsonl")
EXPECTED = {
    "txn_ref": ("string", "id"),
    "ts": ("datetime", "timestamp"),
    "account_no": ("string", "entity_key"),
    "merchant_type": ("string", "categorical"),
    "amount_usd": ("float", "numeric"),
    "country": ("string", "categorical"),
    "is_fraud": ("string", "label"),
}
# The lines --write may change outside data.columns.
SCALARS = ("positive_class:", "negative_class:", "kind:", "path:", "column_mapping:")


def transactions(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Card transactions: fraud is online and large more often; about 15 % of the rows."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 60 * 86400, n))
    kind = rng.choice(
        ["grocery", "fuel", "online", "travel", "atm"], n, p=[0.4, 0.2, 0.2, 0.1, 0.1]
    )
    amount = np.round(rng.lognormal(3, 1, n), 2)
    fraud = ((kind == "online") & (amount > 20) & (rng.random(n) < 0.8)) | (rng.random(n) < 0.05)
    return pd.DataFrame(
        {
            "txn_ref": [f"T{i:07d}" for i in range(n)],
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(seconds, unit="s"),
            "account_no": rng.choice([f"AC{i:05d}" for i in range(200)], n),
            "merchant_type": kind,
            "amount_usd": amount,
            "country": rng.choice(["US", "GB", "DE", "FR", "BR"], n),
            "is_fraud": fraud.astype(int),
        }
    )


def save(frame: pd.DataFrame, path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, date_format="iso")


def _cli(project, *args):
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", *args],
        cwd=project,
        env={**os.environ, "PYTHONPATH": SOURCE},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _step_ran(step, out) -> None:
    """Each step of the chain exits 0, but `promote`: whether the gate passes depends on the
    contract's targets (inherited here, not set for this table), so a rejection with its reasons
    is the chain working too, as long as the model was registered and gated."""
    shown = f"{' '.join(step)}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    if step[0] == "promote" and out.returncode == GATE_REJECTED:
        said = " ".join((out.stdout + out.stderr).split())
        assert "registered models:/" in said and "the gate rejected version 1: " in said, shown
        return
    assert out.returncode == 0, shown


def _with_wide_rate_band(text: str) -> str:
    # The tables these tests write are 10-15 % positive: a band any use case's data may have.
    return re.sub(
        r"(?m)^  positive_rate: .*$", "  positive_rate: {min: 0.01, max: 0.8}", text, count=1
    )


@pytest.fixture
def project(tmp_path, project_root):
    """A project folder with the generated contract and a data/ folder."""
    (tmp_path / "configs").mkdir()
    text = (project_root / "configs/system.yaml").read_text(encoding="utf-8")
    (tmp_path / "configs/system.yaml").write_text(_with_wide_rate_band(text), encoding="utf-8")
    (tmp_path / "data").mkdir()
    return tmp_path


def _propose(path, rows=profile.READ_ROWS):
    sample = profile.read_sample(path, rows=rows)
    return sample, profile.propose(sample.frame)


@pytest.mark.parametrize("fmt", FORMATS)
def test_roles_dtypes_and_label_of_an_unseen_table(tmp_path, fmt):
    frame = transactions()
    save(frame, tmp_path / f"tx.{fmt}")
    sample, proposal = _propose(tmp_path / f"tx.{fmt}")
    assert not sample.truncated and proposal.rows == len(frame)
    got = {c.source: (c.spec["dtype"], c.spec["role"]) for c in proposal.columns}
    assert got == EXPECTED
    specs = {s["name"]: s for s in proposal.specs}
    assert specs["txn_ref"]["unique"] is True
    assert proposal.positive_class == "1" and proposal.negative_class == "0"
    assert proposal.positive_rate == pytest.approx(frame.is_fraud.mean())
    assert specs["is_fraud"]["allowed"] == ["1", "0"]
    assert specs["merchant_type"]["allowed"] == ["atm", "fuel", "grocery", "online", "travel"]
    assert specs["amount_usd"]["min"] == 0
    assert specs["amount_usd"]["max"] >= 2 * frame.amount_usd.max() - frame.amount_usd.min()
    assert specs["ts"]["min"] == "2023-01-01" and specs["ts"]["max_ahead_days"] == 1
    assert all(s["nullable"] is False for s in proposal.specs)
    assert proposal.missing_roles() == [] and proposal.needs_ingest == []
    assert all(c.reason for c in proposal.columns)


def test_one_stray_value_does_not_change_a_columns_proposal(tmp_path):
    """A duplicate id, a date in another format, "n/a" in a number column and a third label
    value, once each in 3,000 rows: every column keeps its dtype and role, and the notes name
    each stray, whose rows validation then quarantines."""
    frame = transactions(3000).astype(object)
    frame.loc[10, "txn_ref"] = frame.loc[9, "txn_ref"]
    frame["ts"] = frame["ts"].map(lambda t: t.isoformat())
    frame.loc[20, "ts"] = "01/02/2024 10:00"
    frame.loc[30, "amount_usd"] = "n/a"
    frame.loc[40, "is_fraud"] = "maybe"
    path = tmp_path / "tx.csv"
    frame.to_csv(path, index=False)
    _, proposal = _propose(path)
    got = {c.source: (c.spec["dtype"], c.spec["role"]) for c in proposal.columns}
    assert got == EXPECTED
    assert proposal.positive_class == "1" and proposal.negative_class == "0"
    notes = "\n".join(proposal.notes)
    assert "txn_ref: 1 repeated value(s)" in notes
    assert "ts: 1 value(s) not datetime (e.g. '01/02/2024 10:00')" in notes
    assert "amount_usd: 1 value(s) not float (e.g. 'n/a')" in notes
    assert "is_fraud: 1 row(s) hold another value than the two classes (e.g. 'maybe')" in notes
    # Twice the share of strays: a number column with that much text is text.
    frame.loc[50:56, "amount_usd"] = "n/a"
    frame.to_csv(path, index=False)
    _, proposal = _propose(path)
    assert {c.source: c.spec["dtype"] for c in proposal.columns}["amount_usd"] == "string"


def test_gaps_ranges_epochs_and_odd_names(tmp_path):
    n = 400
    frame = transactions(n)
    frame["tip"] = np.where(np.arange(n) % 10 == 0, np.nan, -5.0 + np.arange(n) % 7)
    frame["note"] = [f"customer said the parcel number {i} was late again" for i in range(n)]
    frame["Signup Date"] = (pd.Timestamp("2020-06-01") + pd.to_timedelta(np.arange(n), "D")).astype(
        str
    )
    frame["ts"] = (frame["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)  # epoch
    frame["zip"] = [f"{i % 50:05d}" for i in range(n)]  # leading zeros: text, not numbers
    path = tmp_path / "tx.jsonl"
    save(frame, path)
    _, proposal = _propose(path)
    specs = {c.source: c.spec for c in proposal.columns}
    assert specs["tip"]["nullable"] is True and specs["tip"]["mostly"] == 0.88  # 90 % - margin
    assert specs["tip"]["min"] < -5 and specs["tip"]["max"] > 1
    assert specs["note"]["role"] == "text"
    assert specs["Signup Date"] == {
        "name": "Signup_Date",
        "dtype": "datetime",
        "role": "datetime",
        "nullable": False,
        "min": "2019-01-01",
    }
    assert specs["ts"]["role"] == "timestamp" and specs["ts"]["dtype"] == "datetime"
    assert specs["zip"]["dtype"] == "string" and specs["zip"]["role"] == "categorical"
    assert proposal.mapping == {"Signup Date": "Signup_Date"}
    assert len(proposal.needs_ingest) == 2  # a rename and epoch seconds: `data ingest` first


def test_row_cap_says_how_many_rows_were_read(tmp_path):
    save(transactions(1500), tmp_path / "tx.parquet")
    sample, proposal = _propose(tmp_path / "tx.parquet", rows=1000)
    assert sample.truncated and proposal.rows == 1000
    assert "first 1,000 of 1,500 rows" in sample.describe(tmp_path / "tx.parquet")


def _changed_outside_columns(before: str, after: str) -> list[str]:
    """Original lines that --write changed or dropped outside the data.columns items."""
    old, new = before.splitlines(), after.splitlines()
    start = old.index("  columns:") + 1
    end = next(i for i in range(start, len(old)) if old[i] and not old[i].startswith("    "))
    while not old[end - 1].strip().startswith("- "):
        end -= 1  # comments after the last item belong to what follows
    changed = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        for i in range(i1, i2) if tag != "equal" else ():
            if not (start <= i < end or old[i].strip().startswith(SCALARS)):
                changed.append(old[i])
    return changed


def test_write_round_trip_keeps_the_rest_of_the_contract(project):
    save(transactions(), project / "data/tx.csv")
    contract = project / "configs/system.yaml"
    before = contract.read_text(encoding="utf-8")
    out = _cli(project, "data", "profile", "data/tx.csv", "--write")
    assert out.returncode == 0, out.stderr
    assert "is_fraud" in out.stdout and "- {name: txn_ref, dtype: string, role: id" in out.stdout
    after = contract.read_text(encoding="utf-8")
    assert _changed_outside_columns(before, after) == []  # comments included
    cfg = load_config(contract)
    assert {c.name: (c.dtype, c.role) for c in cfg.data.columns} == EXPECTED
    assert (cfg.problem.positive_class, cfg.problem.negative_class) == ("1", "0")
    assert (cfg.data.source.kind, cfg.data.source.path.as_posix()) == ("file", "data/tx.csv")
    again = _cli(project, "data", "profile", "data/tx.csv", "--write")
    assert again.returncode == 0, again.stderr
    assert contract.read_text(encoding="utf-8") == after


def test_epochs_and_renames_go_through_ingest(project):
    """Validation cannot read epoch seconds or rename a column: the contract points at what
    `data ingest` writes, maps the name, and ingest fills it with the contract's columns."""
    from {{ cookiecutter.package_name }}.data import ingest

    frame = transactions().rename(columns={"amount_usd": "Amount (USD)"})
    frame["ts"] = (frame["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    save(frame, project / "data/tx.jsonl")
    out = _cli(project, "data", "profile", "data/tx.jsonl", "--write")
    assert out.returncode == 0, out.stderr
    assert "next: run `data ingest data/tx.jsonl` (writes data/raw/tx.parquet)" in out.stdout
    cfg = load_config(project / "configs/system.yaml")
    assert cfg.data.source.path.as_posix() == "data/raw/tx.parquet"
    assert cfg.data.column_mapping == {"Amount (USD)": "Amount_USD"}
    result = ingest.run(cfg, project / "data/tx.jsonl", cfg.path(cfg.data.source.path))
    assert result.counts.ingested == len(frame) and not result.counts.quarantined
    records = pd.read_parquet(cfg.path(cfg.data.source.path))
    assert records["Amount_USD"].tolist() == frame["Amount (USD)"].tolist()
    assert records["ts"].min() == pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(
        seconds=int(frame["ts"].min() - 1704067200)
    )


def _untidy_csv(path, n: int = 600, malformed: int = 2) -> pd.DataFrame:
    """The transactions as a hand-kept CSV: spaces after the commas of the header, the label
    (", 1") and the country, and ``malformed`` lines with a field too many. Returns the
    well-formed rows."""
    frame = transactions(n).assign(country=lambda f: " " + f.country)
    lines = [", ".join(frame.columns)]
    for i, row in enumerate(frame.astype(str).itertuples(index=False)):
        lines.append(",".join(row[:-1]) + ", " + row[-1])
        if i < malformed:
            lines.append(",".join(row[:-1]) + ", " + row[-1] + ",extra")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return frame


def test_header_spaces_are_mapped_not_silently_stripped(tmp_path):
    """Validation reads " ts" as it is: the contract maps it to ts and `data ingest` goes first."""
    path = tmp_path / "tx.csv"
    _untidy_csv(path, malformed=0)
    _, proposal = _propose(path)
    assert proposal.mapping == {f" {c}": c for c in EXPECTED if c != "txn_ref"}
    assert {c.name: (c.spec["dtype"], c.spec["role"]) for c in proposal.columns} == EXPECTED
    assert any("' ts' is renamed 'ts'" in why for why in proposal.needs_ingest)


def test_label_values_are_stripped_and_sent_through_ingest(tmp_path):
    path = tmp_path / "tx.csv"
    frame = _untidy_csv(path, malformed=0)
    _, proposal = _propose(path)
    assert (proposal.positive_class, proposal.negative_class) == ("1", "0")
    assert proposal.positive_rate == pytest.approx(frame.is_fraud.mean())
    label = next(s for s in proposal.specs if s["role"] == "label")
    assert label["allowed"] == ["1", "0"]
    assert "the values of ' is_fraud' have spaces around them" in proposal.needs_ingest
    # Categorical values keep their spaces: validation and ingest both compare them as they are.
    country = next(s for s in proposal.specs if s["name"] == "country")
    assert country["allowed"] == sorted(frame.country.unique())
    assert country["allowed"] == [" BR", " DE", " FR", " GB", " US"]


def test_malformed_lines_are_counted_and_sent_through_ingest(project):
    path = project / "data/tx.csv"
    frame = transactions(300)
    save(frame, path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("T9999998,2024-01-02T00:00:00Z,AC00001,fuel,1.5,US,0,surplus\n")
        handle.write("T9999999,2024-01-02T00:00:00Z,AC00001,fuel,1.5,US,0,surplus,more\n")
    sample, proposal = _propose(path)
    assert sample.malformed == 2 and proposal.rows == len(frame)
    assert "skipped 2 malformed lines" in sample.describe(path)
    assert sample.needs_ingest == "2 malformed lines"
    written = contract_write.source_for(proposal, path, project, sample.needs_ingest)
    assert written.source_path == "data/raw/tx.parquet"
    assert "run `data ingest" in written.next_step and "2 malformed lines" in written.next_step


@pytest.mark.slow
def test_an_untidy_csv_is_written_ingested_and_validated(project):
    """Header spaces, padded labels and malformed lines: --write, `data ingest` (which
    quarantines the malformed lines), then validation passes on what ingest wrote."""
    from {{ cookiecutter.package_name }}.data import ingest, validate

    frame = _untidy_csv(project / "data/tx.csv", n=1500, malformed=2)
    out = _cli(project, "data", "profile", "data/tx.csv", "--write")
    assert out.returncode == 0, out.stderr
    assert "skipped 2 malformed lines" in out.stdout
    assert "next: run `data ingest data/tx.csv` (writes data/raw/tx.parquet)" in out.stdout
    cfg = load_config(project / "configs/system.yaml")
    assert cfg.data.column_mapping[" ts"] == "ts"
    assert (cfg.problem.positive_class, cfg.problem.negative_class) == ("1", "0")
    target = cfg.path(cfg.data.source.path)
    result = ingest.run(cfg, project / "data/tx.csv", target)
    assert (result.counts.ingested, result.counts.quarantined) == (len(frame), 2)
    report = validate.run(cfg, target, project / "data/validated", docs=False)
    assert report.success, [f.__dict__ for f in report.failures][:3]
    assert report.rows == len(frame)


def test_write_refuses_a_file_that_cannot_fill_the_contract(project):
    frame = transactions().drop(columns=["ts", "is_fraud"])
    save(frame, project / "data/tx.csv")
    contract = project / "configs/system.yaml"
    before = contract.read_bytes()
    out = _cli(project, "data", "profile", "data/tx.csv", "--write")
    assert out.returncode != 0
    assert "timestamp" in out.stderr and "label" in out.stderr
    assert "entity_key" not in out.stderr  # optional: records without one have no history
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert contract.read_bytes() == before
    assert not list(contract.parent.glob(".*"))  # no trial copy left behind


def test_write_validates_before_it_replaces_the_contract(project):
    """A proposal the contract refuses (here a range upside down) leaves the file as it was."""
    save(transactions(), project / "data/tx.csv")
    _, proposal = _propose(project / "data/tx.csv")
    amount = next(c for c in proposal.columns if c.source == "amount_usd")
    amount.spec.update(min=10.0, max=1.0)
    contract = project / "configs/system.yaml"
    before = contract.read_bytes()
    written = contract_write.source_for(proposal, project / "data/tx.csv", project, None)
    with pytest.raises(contract_write.WriteError, match="amount_usd") as refused:
        contract_write.write(contract, proposal, written)
    assert "\n" not in str(refused.value)
    assert contract.read_bytes() == before and not list(contract.parent.glob(".*"))


BAD_FILES = {
    "empty.csv": b"",
    "header.csv": b"a,b,c\n",
    "twice.csv": b"id,amount,id\n1,2,3\n",
    "twice.jsonl": b'{"id": 1, "id": 2}\n',
    "nothing.jsonl": b"[1, 2]\nnot json\n",
    "noise.parquet": b"PAR1" + bytes(range(256)) * 4,
    "sheet.xlsx": b"PK\x03\x04",
    "missing.csv": None,
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_file_is_one_line_and_a_non_zero_exit(project, name):
    if BAD_FILES[name] is not None:
        (project / "data" / name).write_bytes(BAD_FILES[name])
    out = CliRunner().invoke(app, ["data", "profile", str(project / "data" / name)])
    assert out.exit_code == 2, out.output
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert name in out.stderr


# --------------------------------------------------------------------------- any table

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", " ", "1", "0", "true", "007", "2024-01-01", "1e999", "NaN", "é\u0301"]),
    st.datetimes(
        min_value=datetime(1600, 1, 1), max_value=datetime(2300, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat()),
)
_tables = st.integers(1, 25).flatmap(
    lambda n: st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda s: s.strip()),
        st.lists(_values, min_size=n, max_size=n),
        min_size=1,
        max_size=5,
    )
)


@pytest.fixture(scope="module")
def contract_copy(tmp_path_factory, project_root):
    folder = tmp_path_factory.mktemp("hostile") / "configs"
    folder.mkdir()
    shutil.copyfile(project_root / "configs/system.yaml", folder / "system.yaml")
    return folder / "system.yaml"


BASE = ("txn_ref", "ts", "account_no", "is_fraud")  # one column for each role the contract needs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=_tables, fmt=st.sampled_from(["frame", "jsonl", "csv"]), seeded=st.booleans())
def test_any_table_gives_a_valid_contract_or_one_line(
    tmp_path_factory, contract_copy, table, fmt, seeded
):
    """Any table, alone or after the four base columns (so that a contract can be written)."""
    if seeded:  # the random columns come after, and may take a base column's name or role
        base = transactions(120)
        table = {c: [_plain(v) for v in base[c]] for c in BASE} | {
            name: (values * len(base))[: len(base)] for name, values in table.items()
        }
    folder = tmp_path_factory.mktemp("table")
    try:
        if fmt == "frame":
            proposal = profile.propose(pd.DataFrame(table, dtype=object))
        else:
            path = folder / f"t.{fmt}"
            _save_raw(table, path)
            proposal = profile.propose(profile.read_sample(path).frame)
    except profile.ProfileError as exc:
        assert "\n" not in str(exc) and str(exc)
        event(f"seeded={seeded}: not profiled")
        return
    for spec in proposal.specs:  # every entry is a valid contract column
        Column.model_validate(spec)
    before = contract_copy.read_bytes()
    written = contract_write.source_for(proposal, folder / "t.csv", folder, None)
    try:
        contract_write.write(contract_copy, proposal, written)
    except contract_write.WriteError as exc:
        assert "\n" not in str(exc) and str(exc)
        assert contract_copy.read_bytes() == before
        event(f"seeded={seeded}: write refused")
        return
    event(f"seeded={seeded}: valid contract")
    cfg = load_config(contract_copy)
    assert [c.name for c in cfg.data.columns] == [s["name"] for s in proposal.specs]
    contract_copy.write_bytes(before)


def _no_role_hint(name: str) -> bool:
    """Not a base column's name, nor one that claims a role by its name (``y``, ``label``)."""
    hints = profile.LABEL_WORDS | profile.TIME_WORDS | profile.ID_WORDS | profile.ENTITY_WORDS
    return bool(name.strip()) and name.strip() not in EXPECTED and not profile._words(name) & hints


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(_no_role_hint),
        st.lists(_values, min_size=1, max_size=6),
        max_size=4,
    ),
    fmt=st.sampled_from(["jsonl", "csv"]),
)
def test_hostile_extra_columns_still_give_a_valid_contract(
    tmp_path_factory, contract_copy, extra, fmt
):
    """The transactions plus columns of hostile values: the contract is written and loads."""
    base = transactions(120)
    table = {c: [_plain(v) for v in base[c]] for c in base.columns}
    for name, values in extra.items():
        table[name] = (values * len(base))[: len(base)]
    path = tmp_path_factory.mktemp("extra") / f"t.{fmt}"
    _save_raw(table, path)
    try:
        proposal = profile.propose(profile.read_sample(path).frame)
    except profile.ProfileError as exc:  # two names the same once stripped
        assert "duplicate column names" in str(exc) and "\n" not in str(exc)
        return
    before = contract_copy.read_bytes()
    written = contract_write.source_for(proposal, path, path.parent, None)
    try:
        contract_write.write(contract_copy, proposal, written)
        cfg = load_config(contract_copy)
    finally:
        contract_copy.write_bytes(before)
    assert {c.name: c.role for c in cfg.data.columns if c.name in EXPECTED} == {
        name: role for name, (_, role) in EXPECTED.items()
    }


def _plain(value):
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if isinstance(value, np.generic) else value


def _save_raw(table: dict, path) -> None:
    names = list(table)
    rows = list(zip(*table.values(), strict=True))
    if path.suffix == ".jsonl":
        lines = [json.dumps(dict(zip(names, row, strict=True))) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:  # every field quoted: a name or value may hold a line break
        with open(path, "w", encoding="utf-8", errors="surrogatepass", newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
            writer.writerow(names)
            writer.writerows([["" if v is None else v for v in row] for row in rows])


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_profile_write_then_the_real_chain_trains(project):
    """The written contract drives the stages on the user's file: validate reads it where it
    is (data.source.path), split, features, the baseline; `data ingest` reads it too."""
    save(transactions(2500), project / "data/tx.csv")
    steps = [
        ("data", "profile", "data/tx.csv", "--write"),
        ("data", "ingest", "data/tx.csv", "--out", "data/raw/ingested.parquet"),
        ("data", "validate", "data/raw/ingested.parquet", "--out", "data/ingested", "--no-docs"),
        ("data", "generate"),  # `make data`: the contract names the data, nothing generated
        ("data", "validate", "--no-docs"),
        ("data", "split"),
        ("features", "build"),
        ("baseline",),
    ]
    for step in steps:
        out = _cli(project, *step)
        assert out.returncode == 0, f"{' '.join(step)}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    assert (
        "read 2,500, ingested 2,500, quarantined 0"
        in _cli(project, "data", "ingest", "data/tx.csv", "--out", "data/raw/again.parquet").stdout
    )
    assert pd.read_csv(project / "data/tx.csv").shape == (2500, 7)  # the user's file untouched
    assert (project / "artifacts/baseline").is_dir()
    assert yaml.safe_load((project / "configs/system.yaml").read_text())["data"]["source"] == {
        "kind": "file",
        "path": "data/tx.csv",
    }


@pytest.mark.slow
def test_a_table_without_an_entity_trains_and_is_served(project, monkeypatch):
    """No entity key (no account behind the records): the contract is written without one, the
    stages train without entity history or store, and the engine answers without a lookup."""
    # The project's own stores only (an earlier test in this process may have set MLflow's).
    for name in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "ENTITY_STORE_URL", "PREDICTION_LOG_URL"):
        monkeypatch.delenv(name, raising=False)
    from {{ cookiecutter.package_name }}.serving.engine import Engine
    from {{ cookiecutter.package_name }}.serving.loading import MODEL_VERSION_ENV
    from {{ cookiecutter.package_name }}.serving.schema import record_model

    frame = transactions(2500).drop(columns=["account_no"])
    save(frame, project / "data/tx.csv")
    steps = [
        ("data", "profile", "data/tx.csv", "--write"),
        ("data", "validate", "--no-docs"),
        ("data", "split"),
        ("features", "build"),
        ("baseline",),
        ("tune", "--trials", "2"),
        ("evaluate",),
        ("promote",),
    ]
    outputs = {}
    for step in steps:
        out = _cli(project, *step)
        _step_ran(step, out)
        outputs[step[0]] = out.stdout
    cfg = load_config(project / "configs/system.yaml")
    assert cfg.data.entity is None
    assert "no entity key" in outputs["features"]
    assert not list(project.glob("entity_store.db*"))
    features = pd.read_parquet(project / "data/features/train.parquet")
    assert not any(c.startswith("entity_") for c in features.columns)

    engine = Engine.from_config(
        cfg,
        {
            MODEL_VERSION_ENV: "1",
            "MLFLOW_TRACKING_URI": cfg.tracking_uri,
            "PREDICTION_LOG_URL": f"sqlite:///{project}/predictions.db",
        },
    )
    try:
        assert engine.store is None
        model = record_model(cfg)
        sent = frame.tail(5).drop(columns=["is_fraud"]).assign(ts=lambda f: f["ts"].astype(str))
        answers = engine.classify([model.model_validate(r) for r in sent.to_dict("records")])
    finally:
        engine.close()
    assert len(answers) == 5 and all(0.0 <= a.score <= 1.0 for a in answers)


def applications(n: int, seed: int = 0, *, timed: bool) -> pd.DataFrame:
    """Loan applications, a public-style table: no text, no entity; about 20 % default.

    Defaults follow the debt-to-income ratio, the term and the purpose, so a model has
    something to find. ``timed`` adds the application time (``submitted``).
    """
    rng = np.random.default_rng(seed)
    income = np.round(rng.lognormal(10.8, 0.5, n), -2)
    loan = np.round(income * rng.uniform(0.05, 0.6, n), -1)
    term = rng.choice([36, 60], n, p=[0.7, 0.3])
    purpose = rng.choice(["car", "home", "debt", "education", "medical"], n)
    ownership = rng.choice(["rent", "own", "mortgage"], n)
    risk = 4 * loan / income + (term == 60) + 0.8 * (purpose == "debt") + rng.normal(0, 0.6, n)
    frame = pd.DataFrame(
        {
            "application": [f"A-{seed}-{i:06d}" for i in range(n)],
            "annual_income": income,
            "loan_amount": loan,
            "term_months": term,
            "purpose": purpose,
            "home_ownership": ownership,
            "defaulted": np.where(risk > np.quantile(risk, 0.8), "yes", "no"),
        }
    )
    if timed:
        days = np.sort(rng.uniform(0, 90, n))
        frame.insert(
            1, "submitted", pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(days, "D")
        )
    return frame


@pytest.mark.slow
@pytest.mark.parametrize("timed", [True, False], ids=["with-time", "no-time"])
def test_a_public_style_table_trains_from_its_profile(project, monkeypatch, timed):
    """A table with other names, no text and no entity goes from `data profile --write` through
    the chain `make train` runs. Without a time column the split is a seeded stratified one, and
    the profile, the split and the evaluation say that time leakage cannot be ruled out."""
    for name in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "ENTITY_STORE_URL", "PREDICTION_LOG_URL"):
        monkeypatch.delenv(name, raising=False)
    save(applications(3000, timed=timed), project / "data/applications.csv")
    steps = [
        ("data", "profile", "data/applications.csv", "--write"),
        ("data", "validate", "--no-docs"),
        ("data", "split"),
        ("features", "build"),
        ("baseline",),
        ("tune", "--trials", "3"),
        ("evaluate",),
        ("promote",),
    ]
    outputs = {}
    for step in steps:
        out = _cli(project, *step)
        _step_ran(step, out)
        outputs[" ".join(step[:2])] = out.stdout
    cfg = load_config(project / "configs/system.yaml")
    roles = {c.name: c.role for c in cfg.data.columns}
    assert roles["application"] == "id" and roles["defaulted"] == "label"
    assert roles["purpose"] == "categorical" and roles["loan_amount"] == "numeric"
    assert cfg.data.entity is None and (cfg.data.timestamp == "submitted") == timed

    split = json.loads((project / "data/split/split.json").read_text())
    evaluation = json.loads((project / "reports/evaluation/evaluation.json").read_text())
    card = (project / "reports/evaluation/model_card.md").read_text()
    parts = {
        name: pd.read_parquet(project / f"data/split/{name}.parquet") for name in split["parts"]
    }
    rates = [info["positive_rate"] for info in split["parts"].values()]
    assert sum(len(p) for p in parts.values()) == 3000
    assert len(set().union(*(set(p["application"]) for p in parts.values()))) == 3000
    if timed:
        assert split["method"] == "time" and evaluation["split"]["by_time"]
        assert parts["train"]["submitted"].max() <= parts["test"]["submitted"].min()
        assert "leakage" not in card
    else:
        assert split["method"] == "stratified" and not evaluation["split"]["by_time"]
        assert max(rates) - min(rates) < 0.01  # stratified: each part keeps the positive rate
        shown = (outputs["data profile"], outputs["data split"], outputs["evaluate"], card)
        for text in shown:
            assert "time leakage cannot be ruled out" in " ".join(text.split())
        # The same seed draws the same parts.
        again = _cli(project, "data", "split")
        assert again.returncode == 0
        redrawn = pd.read_parquet(project / "data/split/test.parquet")
        assert redrawn["application"].tolist() == parts["test"]["application"].tolist()
    assert evaluation["selection"]["candidate"] > 0.5
