"""Validate raw records against the contract with Great Expectations; quarantine bad rows.

The expectation suite is built from ``data.columns`` in ``configs/system.yaml`` (see
:func:`build_suite`) and run in a GX file context inside the project (``gx/``), which keeps the
suite, every validation result and the HTML data docs. Checks come in two kinds:

- row checks (type, not_null, unique, allowed, range): the rows that break them go to a
  quarantine frame with a ``reason`` naming each failed check, e.g. ``not_null: body``, and for
  a range the value and the bound it breaks;
- data-set checks (column_exists, mostly, row_count, positive_rate): nothing to quarantine;
- ``parse``: a line of a CSV or JSON-lines file that does not parse, quarantined by its line
  number and why (``records_file.py``).

Every datetime column has a range: the contract's ``min`` / ``max``, at most ``max_ahead_days``
after the run, and never outside the span the stages can hold (``timebounds``).

:func:`decide` is the one rule the CLI and the pipeline apply: the data passes; or it is
``partial`` (no data-set check failed, at most ``data.max_quarantine_share`` of the rows were
quarantined, and the valid remainder passes the whole suite again) and the run goes on with the
remainder; or it ``failed`` and nothing downstream may run on it. The suite and the GX context
are in ``gx_suite.py``, type coercion in ``coerce.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import SystemConfig
from ..predlog.store import KEY_MAX_CHARS
from .coerce import (
    KEY_ROLES,
    MAX_TEXT_CHARS,
    PANDAS_DTYPES,
    coerce_to_contract,
    text_problem,
)
from .gx_suite import build_docs, build_suite, open_project, run_parameters, store_trimmed
from .records_file import UNPARSED, read_table

__all__ = [
    "Decision",
    "FailedCheck",
    "ValidationReport",
    "build_suite",
    "coerce_to_contract",
    "decide",
    "read_table",
    "run",
    "validate_records",
]

# Checks whose failing rows are quarantined; the others judge the data set as a whole.
ROW_CHECKS = ("type", "not_null", "unique", "allowed", "range")
PASSED, PARTIAL, FAILED = "passed", "partial", "failed"
_CONTRACT_DTYPES = {pandas: contract for contract, pandas in PANDAS_DTYPES.items()}
_SAMPLES = 3


@dataclass(frozen=True)
class FailedCheck:
    """One failed check: which, on which column, what the contract expects and what was seen."""

    check: str
    column: str | None
    expectation: str
    observed: str
    expected: str
    # Source rows (0-based positions in the input) quarantined by this check.
    rows: tuple[int, ...] = ()
    # Per quarantined row, what it broke (a range check: the value and the bound).
    notes: dict[int, str] = field(default_factory=dict, compare=False, hash=False)

    def reason(self, row: int) -> str:
        """The quarantine reason for ``row``: ``check: column``, and the note when there is one."""
        note = self.notes.get(row)
        where = f"{self.check}: {self.column}" if self.column else self.check
        return where + (f" ({note})" if note else "")

    def line(self) -> str:
        """One line for people, e.g. ``not_null on body: expected no nulls, observed ...``."""
        where = self.column or "table"
        return (
            f"{self.check} on {where} ({self.expectation}): "
            f"expected {self.expected}; observed {self.observed}"
        )

    __str__ = line

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "column": self.column,
            "expectation": self.expectation,
            "observed": self.observed,
            "expected": self.expected,
            "quarantined_rows": len(self.rows),
        }


@dataclass(frozen=True)
class Decision:
    """What may happen to the data: ``passed``, ``partial`` (go on with the valid remainder) or
    ``failed`` (nothing downstream runs on it), and why, in one line."""

    status: str
    reason: str

    @property
    def proceed(self) -> bool:
        return self.status != FAILED


@dataclass
class ValidationReport:
    """The outcome of one validation run.

    ``valid`` holds the typed rows that passed every row check (indexed by source row);
    ``quarantine`` the rest as read, with ``source_row`` and ``reason``.
    """

    success: bool
    rows: int
    checks: int
    failures: list[FailedCheck]
    quarantine: pd.DataFrame
    valid: pd.DataFrame
    now: pd.Timestamp
    max_quarantine_share: float
    remainder_failures: list[FailedCheck] = field(default_factory=list)
    docs_path: Path | None = None
    seconds: float = 0.0
    # Set by ``run``: where the valid rows (when usable) and the quarantined rows were written.
    validated_path: Path | None = None
    quarantine_path: Path | None = None

    @property
    def quarantined_share(self) -> float:
        return len(self.quarantine) / self.rows if self.rows else 0.0

    @property
    def decision(self) -> Decision:
        return decide(self)

    @property
    def usable(self) -> bool:
        """Whether anything downstream may run on the valid rows (see :func:`decide`)."""
        return self.decision.proceed

    def summary(self) -> str:
        """One line: PASS, PARTIAL or FAIL, counts, and why."""
        if self.success:
            return (
                f"PASS: {self.rows:,} rows meet the contract ({self.checks} checks, "
                f"{self.seconds:.1f} s)"
            )
        decision = self.decision
        if decision.status == PARTIAL:
            return f"PARTIAL: {decision.reason}"
        return (
            f"FAIL: {len(self.failures)} of {self.checks} checks failed on {self.rows:,} rows; "
            f"quarantined {_count(len(self.quarantine), 'row')}, {len(self.valid):,} valid; "
            f"not usable: {decision.reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report written to ``report.json``."""
        decision = self.decision
        return {
            "success": self.success,
            "status": decision.status,
            "usable": decision.proceed,
            "summary": self.summary(),
            "decision": decision.reason,
            "rows": self.rows,
            "valid_rows": len(self.valid),
            "quarantined_rows": len(self.quarantine),
            "quarantined_share": self.quarantined_share,
            "max_quarantine_share": self.max_quarantine_share,
            "checks": self.checks,
            "now": self.now.isoformat(),
            "seconds": round(self.seconds, 3),
            "failures": [f.to_dict() for f in self.failures],
            "remainder_failures": [f.to_dict() for f in self.remainder_failures],
            "docs_path": str(self.docs_path) if self.docs_path else None,
        }


def _share(value: float) -> str:
    return f"{100 * value:.2f} %"


def _names(failures: Sequence[FailedCheck]) -> str:
    names = [f"{f.check}: {f.column or 'table'}" for f in failures]
    more = f" and {len(names) - _SAMPLES} more" if len(names) > _SAMPLES else ""
    return ", ".join(names[:_SAMPLES]) + more


def _dataset_failures(failures: Sequence[FailedCheck]) -> list[FailedCheck]:
    # A failure that quarantined no row judges the data set as a whole (or could not run).
    return [f for f in failures if not f.rows]


def decide(report: ValidationReport) -> Decision:
    """The one rule for going on: the CLI's exit code and the pipeline's check-data use it.

    Passed when every check passed. Partial when only row checks failed, the quarantined share
    is at most ``data.max_quarantine_share`` and the valid remainder passes the whole suite.
    Failed otherwise, naming what stopped it.
    """
    if report.success:
        return Decision(PASSED, f"{report.rows:,} rows meet the contract")
    quarantined, share = len(report.quarantine), report.quarantined_share
    counted = f"quarantined {quarantined:,} of {report.rows:,} rows ({_share(share)})"
    limit = f"data.max_quarantine_share {_share(report.max_quarantine_share)}"
    dataset = _dataset_failures(report.failures)
    if dataset:
        return Decision(FAILED, f"data-set checks failed: {_names(dataset)}")
    if share > report.max_quarantine_share:
        return Decision(
            FAILED, f"{counted} is over {limit}; row checks failed: {_names(report.failures)}"
        )
    if report.remainder_failures:
        return Decision(
            FAILED,
            f"{counted}, but the remainder still fails {_names(report.remainder_failures)}",
        )
    return Decision(
        PARTIAL,
        f"{counted}, within {limit}, by {_names(report.failures)}; going on with the "
        f"{len(report.valid):,} valid rows",
    )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _gx_frame(typed: pd.DataFrame, bad: pd.DataFrame) -> pd.DataFrame:
    """What GX sees: the typed frame, except that a column with unparseable cells stays plain
    objects, so GX's own type check fails on it; the bad cells are missing there."""
    frame = typed
    for name in bad.columns[bad.any().to_numpy()]:
        if frame is typed:
            frame = typed.copy()
        frame[name] = typed[name].astype(object).where(typed[name].notna(), None)
    return frame


def _format(value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _samples(values: pd.Series) -> str:
    shown = list(dict.fromkeys(_format(v) for v in values.head(50)))[:_SAMPLES]
    # Counted by their text: a JSON list or object in a cell cannot be hashed.
    distinct = values.map(_format).nunique(dropna=False) if values.dtype == object else None
    more = (distinct if distinct is not None else values.nunique(dropna=False)) > len(shown)
    return ", ".join(shown) + (", ..." if more else "")


def _rows(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_SAMPLES])
    return (
        f"row {shown}"
        if len(rows) == 1
        else f"rows {shown}" + (", ..." if len(rows) > _SAMPLES else "")
    )


def _expected(
    cfg: SystemConfig, expectation: str, kwargs: dict[str, Any], check: str, now: pd.Timestamp
) -> str:
    if check == "column_exists":
        return "the column to be present"
    if check == "type":
        return f"{_CONTRACT_DTYPES.get(kwargs.get('type_'), '')} values ({kwargs.get('type_')})"
    if check == "not_null":
        return "no missing values"
    if check == "mostly":
        return f"at least {kwargs.get('mostly', 1):.1%} non-missing"
    if check == "unique":
        return "unique values"
    if check == "allowed":
        return "one of " + ", ".join(map(str, kwargs.get("value_set", [])))
    if check == "range":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if high is None:
            return f"values >= {_bound(low)}"
        if low is None:
            return f"values <= {_bound(high)}"
        return f"values between {_bound(low)} and {_bound(high)}"
    if check == "row_count":
        return f"at least {kwargs.get('min_value')} rows"
    if check == "positive_rate":
        bounds = cfg.data.positive_rate
        return (
            f"a '{cfg.problem.positive_class}' rate between {bounds.min:.0%} and {bounds.max:.0%}"
        )
    return expectation


def _bound(value: Any) -> str:
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).isoformat()
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _range_notes(
    cfg: SystemConfig, typed: pd.DataFrame, column: str, rows: Sequence[int], kwargs: dict, now
) -> dict[int, str]:
    """Per row out of range: its value and the bound it breaks, e.g. ``1000 > max 100``."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    spec = next((c for c in cfg.data.columns if c.name == column), None)
    upper = _bound(high)
    if spec is not None and spec.dtype == "datetime" and high is not None:
        ahead = now + pd.Timedelta(days=spec.max_ahead_days or 0)
        if pd.Timestamp(high) == ahead:
            days = spec.max_ahead_days or 0
            plural = "" if days == 1 else "s"
            upper += " (the run's time" + (f" + {days:g} day{plural})" if days else ")")
    notes = {}
    for row in rows:
        value = typed.at[row, column]
        if pd.isna(value):
            continue
        if low is not None and value < low:
            notes[row] = f"{_format(value)} < min {_bound(low)}"
        elif high is not None and value > high:
            notes[row] = f"{_format(value)} > max {upper}"
    return notes


def _parse_results(
    cfg: SystemConfig, results: Any, typed: pd.DataFrame, now: pd.Timestamp, scoring: bool
) -> list[FailedCheck]:
    """Failed expectations as FailedCheck, in suite order; row checks carry their rows."""
    failures = []
    total = len(typed)
    for result in results.results:
        if result.success:
            continue
        config = result.expectation_config
        meta = config.meta or {}
        check, column = meta.get("check", config.type), meta.get("column")
        info = result.result or {}
        kwargs = dict(config.kwargs)
        rows: tuple[int, ...] = ()
        notes: dict[int, str] = {}
        raised = (result.exception_info or {}).get("raised_exception")
        if column is not None and column not in typed.columns:
            observed = "column missing"
        elif raised:
            observed = f"error: {(result.exception_info or {}).get('exception_message')}"
        elif check in ROW_CHECKS and check != "type":
            index = sorted(info.get("unexpected_index_list") or [])
            if check == "unique":
                # Keep the first record of each id; the later copies are the suspects. Copies
                # that disagree on the label are all suspects: which one is right is not known.
                copies = typed.loc[index, column]
                suspect = copies.duplicated(keep="first")
                label = cfg.data.column("label").name
                if label in typed.columns and not scoring:  # a file to score: labels unread
                    labels = typed.loc[index, label].astype(object)
                    split = (labels.groupby(copies).transform("nunique") > 1).to_numpy(bool)
                    disagree = copies.index[split]
                    notes = dict.fromkeys(map(int, disagree), "its copies disagree on the label")
                    suspect |= split
                index = list(suspect.index[suspect.to_numpy()])
            rows = tuple(int(i) for i in index)
            observed = f"{len(rows):,} of {total:,} rows ({_rows(rows)})"
            if check == "range":
                notes = _range_notes(cfg, typed, column, rows, kwargs, now)
            if check != "not_null":
                observed += f": {_samples(typed.loc[index, column])}"
        elif check == "type":
            observed = f"dtype {info.get('observed_value')}"
        elif check == "mostly":
            missing = info.get("unexpected_count", 0)
            observed = f"{1 - missing / max(total, 1):.1%} non-missing ({missing} missing)"
        elif check == "row_count":
            observed = f"{info.get('observed_value')} rows"
        elif check == "positive_rate":
            labelled = int(typed[column].notna().sum())
            positives = int((typed[column] == cfg.problem.positive_class).sum())
            observed = (
                f"positive rate {positives / max(labelled, 1):.1%} "
                f"({positives} of {labelled} labelled rows)"
            )
        else:
            observed = "column missing"
        failures.append(
            FailedCheck(
                check=check,
                column=column,
                expectation=config.type,
                observed=observed,
                expected=_expected(cfg, config.type, kwargs, check, now),
                rows=rows,
                notes=notes,
            )
        )
    return failures


def _unparsed(column: str, rows: pd.Index, raw: pd.DataFrame, expected: str) -> FailedCheck:
    return FailedCheck(
        check="type",
        column=column,
        expectation="expect_column_type_to_be",
        observed=f"{len(rows):,} of {len(raw):,} values do not parse ({_rows(rows)}): "
        f"{_samples(raw.loc[rows, column])}",
        expected=expected,
        rows=tuple(int(i) for i in rows),
    )


def _fold(
    cfg: SystemConfig, failures: list[FailedCheck], bad: pd.DataFrame, raw: pd.DataFrame
) -> list[FailedCheck]:
    """Report each problem once, under the check that names its cause.

    A missing column makes every other check on it fail: only ``column_exists`` is kept. A cell
    that does not parse is missing in the typed frame: its not-null (or range) failure is folded
    into the ``type`` failure, which names the unparseable values and their rows. The two
    positive-rate expectations (min and max) are one check.
    """
    missing = {f.column for f in failures if f.check == "column_exists"}
    unparsed = {name: bad.index[bad[name].to_numpy()] for name in bad.columns if bad[name].any()}
    dtypes = {c.name: c.dtype for c in cfg.data.columns}
    out: list[FailedCheck] = []
    seen: set[tuple[str, str | None]] = set()
    for f in failures:
        if f.column in missing and f.check != "column_exists":
            continue
        if f.column in unparsed and f.check == "type":
            f = _unparsed(f.column, unparsed[f.column], raw, f.expected)
        elif f.column in unparsed and f.check in ROW_CHECKS:
            folded = set(unparsed[f.column])
            rows = tuple(r for r in f.rows if r not in folded)
            if not rows:
                continue
            notes = {r: n for r, n in f.notes.items() if r not in folded}
            f = FailedCheck(f.check, f.column, f.expectation, f.observed, f.expected, rows, notes)
        if (f.check, f.column) not in seen:
            seen.add((f.check, f.column))
            out.append(f)
    # GX's type check always fails on such a column; this only guards against losing rows.
    for name, rows in unparsed.items():
        if ("type", name) not in seen:
            out.append(_unparsed(name, rows, raw, f"{dtypes.get(name)} values"))
    texts = {c.name: c.role for c in cfg.data.columns if c.dtype == "string"}
    for k, f in enumerate(out):
        if f.check == "type" and f.column in texts:
            role = texts[f.column]
            most = KEY_MAX_CHARS.get(role, MAX_TEXT_CHARS)
            expected = f"{f.expected} of at most {most:,} characters"
            if role in KEY_ROLES:
                expected += " without a NUL character (a key)"
            notes = {r: text_problem(raw.at[r, f.column], role) or "not text" for r in f.rows}
            out[k] = replace(f, expected=expected, notes=notes)
    return out


def _unparsed_lines(failures: list[FailedCheck], unparsed: dict[int, str]) -> list[FailedCheck]:
    """The lines of the file that did not parse (empty rows in their place: see
    ``records_file.py``) as one ``parse`` failure; the checks their emptiness failed forget them."""
    if not unparsed:
        return failures
    out = []
    for f in failures:
        rows = tuple(r for r in f.rows if r not in unparsed)
        if f.rows and not rows:
            continue  # it failed only on the empty rows
        if rows != f.rows:
            notes = {r: n for r, n in f.notes.items() if r not in unparsed}
            f = FailedCheck(f.check, f.column, f.expectation, f.observed, f.expected, rows, notes)
        out.append(f)
    where = "; ".join(list(unparsed.values())[:_SAMPLES])
    more = f" and {len(unparsed) - _SAMPLES:,} more" if len(unparsed) > _SAMPLES else ""
    parse = FailedCheck(
        check="parse",
        column=None,
        expectation="read the file",
        observed=f"{_count(len(unparsed), 'line')} do not parse: {where}{more}",
        expected="one record per line",
        rows=tuple(unparsed),
        notes=dict(unparsed),
    )
    return [parse, *out]


def _quarantine(raw: pd.DataFrame, failures: list[FailedCheck]) -> pd.DataFrame:
    """The failing rows as read, with ``source_row`` and ``reason`` (checks in suite order)."""
    reasons: dict[int, list[str]] = {}
    for f in failures:
        for row in f.rows:
            reasons.setdefault(row, []).append(f.reason(row))
    rows = sorted(reasons)
    out = raw.loc[rows].copy()
    for name in out.columns:
        if out[name].dtype == object:
            # Mixed types (an int column holding "many") cannot be written to Parquet: as text.
            out[name] = out[name].map(str, na_action="ignore").astype("str")
    out.insert(0, "source_row", np.asarray(rows, dtype="int64"))
    out.insert(1, "reason", ["; ".join(reasons[r]) for r in rows])
    return out


def _utc(now: Any) -> pd.Timestamp:
    ts = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    # Whole seconds: bounds derived from it read cleanly in reasons, and Python datetimes (the
    # contract's bounds) hold no nanoseconds.
    return ts.floor("s")


def validate_records(
    cfg: SystemConfig,
    df: pd.DataFrame,
    *,
    now: Any = None,
    docs: bool = True,
    scoring: bool = False,
) -> ValidationReport:
    """Run the contract's suite on ``df`` in the project's GX context; quarantine bad rows.

    ``scoring``: judge records to score, by the suite's variant without the label's checks
    (``gx_suite.build_suite``).
    ``now`` (default: the current time, UTC) is the run's time, which datetime columns may
    exceed by at most their ``max_ahead_days``.
    With ``docs`` the HTML data docs page of this run is written and its path returned in
    ``report.docs_path``. Rows are identified by their position in ``df`` (``source_row``).
    """
    started = time.perf_counter()
    now = _utc(now)
    unparsed = dict(df.attrs.get(UNPARSED) or {})
    raw = df.reset_index(drop=True)
    typed, bad = coerce_to_contract(cfg, raw)
    project = open_project(cfg, scoring=scoring)
    parameters = run_parameters(cfg, now)
    results = project.validation.run(
        batch_parameters={"dataframe": _gx_frame(typed, bad)},
        expectation_parameters=parameters,
        result_format={"result_format": "COMPLETE", "partial_unexpected_count": 20},
    )
    failures = _fold(cfg, _parse_results(cfg, results, typed, now, scoring), bad, raw)
    failures = _unparsed_lines(failures, unparsed)
    identifier = store_trimmed(project, results)
    quarantine = _quarantine(raw, failures)
    valid = typed.drop(index=quarantine["source_row"].to_numpy())
    success = not failures
    remainder_failures = []
    share = len(quarantine) / len(raw) if len(raw) else 0.0
    partial = (
        not success and not _dataset_failures(failures) and share <= cfg.data.max_quarantine_share
    )
    if partial:
        # The data set as a whole is judged again without the quarantined rows: dropping them
        # can leave too few rows, or shift the positive rate out of its bounds.
        batch = project.batch_definition.get_batch(batch_parameters={"dataframe": valid})
        # Not stored: the record of this run is the full data's result above.
        again = batch.validate(
            project.suite, expectation_parameters=parameters, result_format="SUMMARY"
        )
        remainder_failures = _fold(
            cfg, _parse_results(cfg, again, valid, now, scoring), bad.loc[valid.index], raw
        )
    docs_path = build_docs(project, identifier) if docs else None
    return ValidationReport(
        success=success,
        rows=len(raw),
        checks=len(project.suite.expectations),
        failures=failures,
        quarantine=quarantine,
        valid=valid,
        now=now,
        max_quarantine_share=cfg.data.max_quarantine_share,
        remainder_failures=remainder_failures,
        docs_path=docs_path,
        seconds=time.perf_counter() - started,
    )


# --- the stage -------------------------------------------------------------------------------------


def run(
    cfg: SystemConfig,
    input_path: Path,
    out_dir: Path,
    *,
    now: Any = None,
    docs: bool = True,
) -> ValidationReport:
    """Validate ``input_path``; write ``report.json`` and, as they apply, the quarantine and data.

    ``out_dir/quarantine.parquet`` holds the rows that failed a row check (when there are any);
    ``out_dir/validated.parquet`` the typed valid rows, written only when the data passes or the
    valid remainder is usable. Stale outputs of an earlier run are removed first.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    df = read_table(input_path)
    report = validate_records(cfg, df, now=now, docs=docs)
    out_dir.mkdir(parents=True, exist_ok=True)
    validated, quarantined = out_dir / "validated.parquet", out_dir / "quarantine.parquet"
    for stale in (validated, quarantined):
        stale.unlink(missing_ok=True)
    if len(report.quarantine):
        report.quarantine.to_parquet(quarantined, index=False)
    if report.usable:
        report.valid.to_parquet(validated, index=False)
    report.validated_path = validated if report.usable else None
    report.quarantine_path = quarantined if len(report.quarantine) else None
    saved = report.to_dict() | {
        "input": str(input_path),
        "validated_path": str(report.validated_path) if report.validated_path else None,
        "quarantine_path": str(report.quarantine_path) if report.quarantine_path else None,
    }
    (out_dir / "report.json").write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    return report
