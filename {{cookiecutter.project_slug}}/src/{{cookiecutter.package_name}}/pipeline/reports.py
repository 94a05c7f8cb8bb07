"""The reports pipeline steps hand to the Kubeflow UI: Markdown and self-contained HTML.

The UI shows one file per artifact, so HTML reports embed their plots as data URIs.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:60em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;"
    "text-align:right}th:first-child,td:first-child{text-align:left}"
    ".pass{color:#176b17}.fail{color:#a01010}img{max-width:32em;margin:.5em}"
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _md_cell(value: Any) -> str:
    return _cell(value).replace("|", "\\|").replace("\n", " ")


def validation_markdown(report: Any) -> str:
    """The validation report: verdict, counts and each failed check."""
    lines = [
        "# Data validation",
        "",
        f"**{report.summary()}**",
        "",
        f"- rows: {report.rows:,}; valid: {len(report.valid):,}; "
        f"quarantined: {len(report.quarantine):,}",
        f"- checks: {report.checks}; failed: {len(report.failures)}",
        f"- quarantined share: {report.quarantined_share:.2%} (at most "
        f"{report.max_quarantine_share:.2%} may go on, `data.max_quarantine_share`)",
    ]
    if report.failures:
        lines += [
            "",
            "| check | column | expected | observed | quarantined rows |",
            "| --- | --- | --- | --- | --- |",
        ]
        for f in report.failures:
            cells = (f.check, f.column or "table", f.expected, f.observed, len(f.rows))
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _page(title: str, body: list[str]) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def tuning_html(result: Any) -> str:
    """Best trial, its parameters and Optuna's plots."""
    params = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(_cell(v))}</td></tr>"
        for k, v in result.best_params.items()
    )
    body = [
        f"<p>study <code>{html.escape(result.study_name)}</code>: {result.trials_run} trials "
        f"run ({result.pruned} pruned in the study); best trial {result.best_trial}, "
        f"validation PR-AUC {result.best_value:.4f}.</p>",
        f"<table><tr><th>parameter</th><th>value</th></tr>{params}</table>",
    ]
    if result.mlflow_run_id:
        body.append(f"<p>MLflow run <code>{html.escape(result.mlflow_run_id)}</code></p>")
    body += [
        _img(path, name)
        for name, path in (result.files or {}).items()
        if Path(path).suffix.lower() == ".png" and Path(path).is_file()
    ]
    return _page("Hyperparameter tuning", body)


def evaluation_html(cfg: Any, body: dict, result: Any, reasons: list[str]) -> str:
    """Test metrics of the candidate and the baseline, the gate verdict and the plots."""
    offline = cfg.metrics.offline
    keys = ("precision", "recall", "f1", "roc_auc", "pr_auc")
    header = "".join(f"<th>{k}</th>" for k in ("model", "threshold", *keys))
    rows = []
    baseline = body.get("baseline")
    if baseline:
        cells = [baseline["threshold"]["threshold"], *(baseline["test"].get(k) for k in keys)]
        rows.append(
            f"<tr><td>{html.escape(baseline['kind'])} (baseline)</td>"
            + "".join(f"<td>{_cell(c)}</td>" for c in cells)
            + "</tr>"
        )
    cells = [result.choice.threshold, *(result.test.get(k) for k in keys)]
    rows.append(
        f"<tr><td>{html.escape(body['kind'])} (candidate)</td>"
        + "".join(f"<td>{_cell(c)}</td>" for c in cells)
        + "</tr>"
    )
    rows.append(
        f"<tr><td>contract target</td><td></td><td>&ge; {offline.target_precision:g}</td>"
        f"<td>&ge; {offline.target_recall:g}</td><td></td><td></td><td></td></tr>"
    )
    if reasons:
        items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
        verdict = f"<p class='fail'><b>Gate failed: not promoted.</b></p><ul>{items}</ul>"
    else:
        verdict = (
            "<p class='pass'><b>Gate passed:</b> the contract is met and the baseline beaten; "
            "the registry decides against the champion next.</p>"
        )
    page = [
        verdict,
        "<h2>Held-out test set (threshold chosen on validation)</h2>",
        f"<table><tr>{header}</tr>{''.join(rows)}</table>",
    ]
    page += [_img(path, name) for name, path in result.plots.items() if Path(path).is_file()]
    return _page("Model evaluation", page)


def gate_failure_markdown(reasons: str) -> str:
    """Why the candidate was not registered."""
    items = [f"- {r.strip()}" for r in reasons.split(";") if r.strip()] or ["- (no reason given)"]
    return "\n".join(
        [
            "# Not promoted",
            "",
            "The candidate did not pass the evaluation gate, so it was not registered. "
            "The run still succeeded: nothing is wrong with the pipeline.",
            "",
            *items,
        ]
    )


def decision_markdown(model_uri: str, lines: list[str]) -> str:
    """The registry's decision: outcome and each promotion check."""
    head, *checks = lines
    return "\n".join(
        ["# Promotion", "", f"Registered `{model_uri}`.", "", f"**{head}**", ""]
        + [f"- {c}" for c in checks]
    )
