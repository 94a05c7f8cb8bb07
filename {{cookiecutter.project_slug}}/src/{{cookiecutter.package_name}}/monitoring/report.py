"""The monitoring report: a JSON summary, a self-contained HTML page with plots, a short table.

The HTML embeds its plots as data URIs so the one file can be sent, archived or shown as a
Kubeflow artifact.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

STATUS_ORDER = {"alert": 0, "warn": 1, "ok": 2, "no_data": 3, "too_few_rows": 3}
_COLORS = {"alert": "#a01010", "warn": "#b06000", "ok": "#176b17"}
_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:66em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;"
    "text-align:left}.alert{color:#a01010;font-weight:bold}.warn{color:#b06000}"
    ".ok{color:#176b17}img{max-width:40em;margin:.5em 0;display:block}"
)
JSON_FILE = "monitor.json"
HTML_FILE = "monitor.html"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.4g}"
    return str(value)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    return plt


def plot_drift(features: list[dict], psi_max: float, top: int = 25) -> str:
    """Horizontal bars of PSI per feature (the ``top`` largest), with the alert threshold."""
    rows = [f for f in features if f.get("psi") is not None][:top]
    if not rows:
        return "<p>No feature had enough rows for a drift score.</p>"
    rows = sorted(rows, key=lambda f: f["psi"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(rows) + 1.2))
    colors = [_COLORS.get(f["status"], "#777") for f in rows]
    ax.barh([f["name"] for f in rows], [f["psi"] for f in rows], color=colors)
    ax.axvline(psi_max, color="grey", ls="--", lw=1, label=f"alert (PSI {psi_max:g})")
    ax.set(xlabel="PSI (window vs reference)", title="Data drift per feature")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def plot_scores(histogram: dict | None) -> str:
    """Share of scores per reference bin: reference vs the window."""
    if not histogram or not histogram.get("window"):
        return "<p>No scores in the window.</p>"
    cuts = histogram.get("cuts", [])
    edges = [0.0, *cuts, 1.0]
    labels = [f"{edges[i]:.2f}-{edges[i + 1]:.2f}" for i in range(len(edges) - 1)]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], histogram["reference"], width=0.4, label="reference")
    ax.bar([x + 0.2 for x in xs], histogram["window"], width=0.4, label="window")
    ax.set_xticks(list(xs), labels, rotation=45, ha="right", fontsize=7)
    ax.set(ylabel="share of predictions", title="Score distribution (reference deciles)")
    ax.legend()
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def plot_precision(points: list[dict], training_precision: float | None) -> str:
    """Online precision per period with its confidence band."""
    points = [p for p in points if p.get("precision") is not None]
    if not points:
        return "<p>No positive predictions with feedback over time yet.</p>"
    import pandas as pd

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    times = pd.to_datetime([p["start"] for p in points])
    ax.plot(times, [p["precision"] for p in points], marker="o", ms=3, label="online precision")
    low = [p.get("low") if p.get("low") is not None else p["precision"] for p in points]
    high = [p.get("high") if p.get("high") is not None else p["precision"] for p in points]
    ax.fill_between(times, low, high, alpha=0.2, label="confidence interval")
    if training_precision is not None:
        ax.axhline(training_precision, color="grey", ls="--", lw=1, label="at training")
    ax.set(ylabel="precision", title="Online precision from feedback")
    ax.legend(loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def _table(headers: list[str], rows: list[list[Any]], status_column: int | None = None) -> str:
    out = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in headers), "</tr>"]
    for row in rows:
        css = (
            f' class="{html.escape(str(row[status_column]))}"' if status_column is not None else ""
        )
        out.append(
            f"<tr{css}>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
        )
    out.append("</table>")
    return "".join(out)


def render_html(summary: dict) -> str:
    """The report page of one ``monitor`` run."""
    window = summary["window"]
    checks = summary["checks"]
    drift = summary.get("drift", {}).get("features", [])
    online = summary.get("online", {})
    body = [
        f'<h1>Monitoring: <span class="{summary["status"]}">{summary["status"]}</span></h1>',
        f"<p>Window {html.escape(str(window['since']))} to {html.escape(str(window['until']))} "
        f"(UTC): {window['served']:,} served predictions, {window['feedback_labels']:,} with "
        f"feedback, {window['errors']:,} failed requests. Champion version "
        f"{summary['champion']['version']} (reference: {summary['champion']['reference_source']})."
        "</p>",
        "<h2>Checks</h2>",
        _table(
            ["check", "value", "threshold", "status", "reason"],
            [[c["name"], c["value"], c["threshold"], c["status"], c["reason"]] for c in checks],
            status_column=3,
        ),
        "<h2>Data drift</h2>",
        plot_drift(drift, summary["thresholds"]["drift_psi_max"]),
        _table(
            ["feature", "kind", "rows", "PSI", "KS", "missing ref", "missing now", "status"],
            [
                [
                    f["name"],
                    f["kind"],
                    f["n"],
                    f["psi"],
                    f["ks"],
                    f["null_share_ref"],
                    f["null_share_now"],
                    f["status"],
                ]
                for f in drift
            ],
            status_column=7,
        ),
        "<h2>Predictions</h2>",
        plot_scores(summary.get("prediction_drift", {}).get("histogram")),
        "<h2>Online quality</h2>",
        plot_precision(online.get("over_time", []), summary["champion"]["training_precision"]),
        f"<pre>{html.escape(json.dumps(_json_safe(online.get('quality', {})), indent=1))}</pre>",
        "<h2>Serving health</h2>",
        f"<pre>{html.escape(json.dumps(_json_safe(summary.get('health', {})), indent=1))}</pre>",
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Monitoring</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def write_report(summary: dict, out_dir: Path) -> dict[str, Path]:
    """Write ``monitor.json`` and ``monitor.html`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / JSON_FILE, "html": out_dir / HTML_FILE}
    paths["json"].write_text(json.dumps(_json_safe(summary), indent=2), encoding="utf-8")
    paths["html"].write_text(render_html(summary), encoding="utf-8")
    return paths


def print_summary(console, summary: dict, paths: dict[str, Path] | None = None) -> None:
    """The checks as a table, worst first, and where the report is."""
    from rich.table import Table

    table = Table(title=f"Monitoring: {summary['status']}")
    for header in ("check", "value", "threshold", "status", "reason"):
        table.add_column(header, overflow="fold")
    styles = {"alert": "bold red", "warn": "yellow", "ok": "green"}
    for check in sorted(summary["checks"], key=lambda c: STATUS_ORDER.get(c["status"], 4)):
        table.add_row(
            check["name"],
            _fmt(check["value"]),
            _fmt(check["threshold"]),
            check["status"],
            check["reason"],
            style=styles.get(check["status"]),
        )
    console.print(table)
    if paths:
        console.print(f"report: {paths['html']}\nsummary: {paths['json']}")
