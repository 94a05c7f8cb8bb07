"""The contract's Great Expectations suite, and the project's GX file context that runs it.

The suite is built from ``data.columns`` and the data-set rules of ``configs/system.yaml``. Its
scoring variant (``scoring=True``) judges records that have no label yet, for batch scoring: the
same checks of each record's values without the label column's, and none of the data set's
statistics (label rate, minimum size, a nullable column's share of values): each record is
scored on its own, as the server scores it, and a file with no record is an empty batch. The
context lives in the project's ``gx/`` folder and keeps the suite, every validation result and
the HTML data docs. Great Expectations is imported inside the functions (it takes seconds).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..config import Column, SystemConfig
from .coerce import PANDAS_DTYPES

SUITE_NAME = "records"
SCORING_SUITE_NAME = "records-scoring"
# Bump when build_suite changes what it builds from the same contract.
_SUITE_VERSION = 3
# Stored validation results keep at most this many unexpected rows per expectation.
_KEEP_UNEXPECTED = 20


def import_gx() -> Any:
    """The ``great_expectations`` module, with its usage analytics off."""
    # Offline project: never phone home. Set before the first import reads it.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


@dataclass
class GxProject:
    """The project's GX context and the saved objects a validation run uses."""

    context: Any
    batch_definition: Any
    suite: Any
    validation: Any


def suite_name(scoring: bool = False) -> str:
    """The stored name of the contract's suite, or of its scoring variant."""
    return SCORING_SUITE_NAME if scoring else SUITE_NAME


def open_project(cfg: SystemConfig, *, scoring: bool = False) -> GxProject:
    """The project's file context with the contract's suite (``scoring``: its variant for
    unlabelled records) and validation definition saved."""
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=cfg.root)
    bars = context.variables.progress_bars
    # A saved context reads the setting back as a plain dict.
    shown = bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)
    if shown is not False:
        # GX draws one tqdm bar per metric batch: noise in a CLI that prints one summary line.
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    source = context.data_sources.add_or_update_pandas(SUITE_NAME)
    asset = source.get_asset(SUITE_NAME) if source.assets else None
    asset = asset or source.add_dataframe_asset(SUITE_NAME)
    batch = next(
        (b for b in asset.batch_definitions if b.name == "whole"), None
    ) or asset.add_batch_definition_whole_dataframe("whole")
    # Saving a suite compares every expectation pairwise (seconds): reuse the stored suite and
    # validation definition while the contract's data section is unchanged.
    name = suite_name(scoring)
    wanted = fingerprint(cfg, scoring=scoring)
    try:
        suite = context.suites.get(name)
        validation = context.validation_definitions.get(name)
        fresh = (suite.meta or {}).get("fingerprint") == wanted
    except Exception:  # not stored yet, or stored by another GX version: rebuild
        fresh = False
    if not fresh:
        suite = context.suites.add_or_update(build_suite(cfg, scoring=scoring))
        validation = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
    return GxProject(context, batch, suite, validation)


def _column_expectations(gxe: Any, column: Column, scoring: bool = False) -> list[Any]:
    name = column.name

    def meta(check: str) -> dict[str, Any]:
        return {"check": check, "column": name}

    out = [
        gxe.ExpectColumnToExist(column=name, meta=meta("column_exists")),
        gxe.ExpectColumnTypeToBe(column=name, type_=PANDAS_DTYPES[column.dtype], meta=meta("type")),
    ]
    if not column.nullable:
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=name, meta=meta("not_null")))
    elif column.mostly > 0 and not scoring:
        out.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=name, mostly=column.mostly, meta=meta("mostly")
            )
        )
    if column.unique:
        out.append(gxe.ExpectColumnValuesToBeUnique(column=name, meta=meta("unique")))
    if column.allowed is not None:
        out.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=name, value_set=list(column.allowed), meta=meta("allowed")
            )
        )
    if column.dtype in ("int", "float") and (column.min is not None or column.max is not None):
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=name, min_value=column.min, max_value=column.max, meta=meta("range")
            )
        )
    if column.dtype == "datetime":
        # Every datetime column is bounded (at least by what the stages can hold). The bounds
        # are run parameters: the upper one moves with the run's time, and the stored suite
        # then holds no datetime (its JSON store would give it back as text).
        low, high = bound_parameters(name)
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=name,
                min_value={"$PARAMETER": low},
                max_value={"$PARAMETER": high},
                meta=meta("range"),
            )
        )
    return out


def bound_parameters(column: str) -> tuple[str, str]:
    """Names of the run parameters holding a datetime column's lower and upper bound."""
    return f"min_{column}", f"max_{column}"


def run_parameters(cfg: SystemConfig, now: Any) -> dict[str, Any]:
    """The suite's parameters for a run at ``now`` (a UTC ``pd.Timestamp``)."""
    import pandas as pd

    parameters = {}
    for column in cfg.data.columns:
        if column.dtype == "datetime":
            low, high = column.time_bounds(now.to_pydatetime())
            names = bound_parameters(column.name)
            parameters |= {names[0]: pd.Timestamp(low), names[1]: pd.Timestamp(high)}
    return parameters


def fingerprint(cfg: SystemConfig, *, scoring: bool = False) -> str:
    """Hash of everything the suite is built from (changes when the contract's schema does)."""
    inputs = {
        "suite": suite_name(scoring),
        "columns": [c.model_dump(mode="json") for c in cfg.data.columns],
        "min_rows": cfg.data.min_rows,
        "positive_rate": cfg.data.positive_rate.model_dump(),
        "classes": [cfg.problem.positive_class, cfg.problem.negative_class],
        "dtypes": PANDAS_DTYPES,
        "version": _SUITE_VERSION,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def build_suite(cfg: SystemConfig, *, scoring: bool = False) -> Any:
    """The contract's expectation suite (``gx.ExpectationSuite``), not yet saved anywhere.

    ``scoring``: the variant for records to score. The label column is neither required nor
    checked (a file may carry it or not), and no rule judges the data set as a whole (label
    rate, minimum size, ``mostly``): a record valid on its own is scored, as by the server.

    Each expectation carries ``meta = {"check": ..., "column": ...}``. Only expectations whose
    results serialize are used (the quantile and KL-divergence ones return numpy bools that break
    persisted runs in GX 1.24).
    """
    gx = import_gx()
    gxe = gx.expectations
    label = cfg.data.column("label").name
    columns = [c for c in cfg.data.columns if not (scoring and c.name == label)]
    expectations = [e for c in columns for e in _column_expectations(gxe, c, scoring)]
    if not scoring:
        expectations.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=cfg.data.min_rows, meta={"check": "row_count", "column": None}
            )
        )
    bounds = cfg.data.positive_rate
    if scoring:
        bounds = bounds.model_copy(update={"min": 0.0, "max": 1.0})
    positive_meta = {"check": "positive_rate", "column": label}
    # Share of labelled rows that are positive >= min, and share that are negative >= 1 - max.
    if bounds.min > 0:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=label,
                value_set=[cfg.problem.positive_class],
                mostly=bounds.min,
                meta=positive_meta,
            )
        )
    if bounds.max < 1:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=label,
                value_set=[cfg.problem.negative_class],
                mostly=round(1 - bounds.max, 12),
                meta=positive_meta,
            )
        )
    # Passed whole: add_expectation() on a suite whose name is already stored writes the store
    # once per expectation.
    return gx.ExpectationSuite(
        name=suite_name(scoring),
        expectations=expectations,
        meta={
            "contract_version": cfg.contract_version,
            "built_from": "configs/system.yaml",
            "fingerprint": fingerprint(cfg, scoring=scoring),
        },
    )


def result_identifier(project: GxProject, results: Any) -> Any:
    """The key GX stored this run's result under."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    return ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=project.suite.name),
        run_id=results.meta["run_id"],
        batch_identifier=results.batch_id,
    )


def store_trimmed(project: GxProject, results: Any) -> Any:
    """Re-store the run's result without the full lists of unexpected rows; return its key.

    The full lists are needed once, to quarantine rows; stored, the positive-rate check alone
    would list most rows of the data set (megabytes per run, in the JSON and the data docs).
    """
    for result in results.results:
        info = result.result or {}
        if len(info.get("unexpected_index_list") or ()) > _KEEP_UNEXPECTED:
            for key in ("unexpected_list", "unexpected_index_list", "unexpected_index_query"):
                info.pop(key, None)
    identifier = result_identifier(project, results)
    project.context.validation_results_store.set(identifier, results)
    return identifier


def build_docs(project: GxProject, identifier: Any) -> Path | None:
    """Render this run's page (and the suite's) of the data docs; return the run page's path."""
    # Only these pages: a full rebuild re-renders every stored run, slower with each run.
    pages = [identifier, identifier.expectation_suite_identifier]
    project.context.build_data_docs(resource_identifiers=pages)
    for site in project.context.get_docs_sites_urls(resource_identifier=identifier):
        url = urlparse(site.get("site_url") or "")
        if url.scheme == "file":  # percent-encoded: a project path may hold spaces
            return Path(url2pathname(url.path))
    return None
