"""The values deploy/ copies from the contract: find them, compare them, rewrite them.

Kubernetes, Istio and Prometheus cannot read ``configs/system.yaml``, so a few of its values are
written into deploy/: the namespace, the image, the HPA's maximum size (from the peak QPS), the
alert and analysis thresholds, the canary weight and a copy of the contract for the ConfigMap.
Each copy is an :class:`OwnedValue` (file, place, contract key, expected, actual).
:func:`render_manifests` rewrites the stale ones in place, keeping comments and layout;
``deploy check`` fails on any of them, naming the command that fixes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..config import DEFAULT_CONFIG, SystemConfig
from .manifests import KUSTOMIZATION_FILES, parse_yaml_all
from .promql import (
    range_minutes,
    replace_ranges,
    replace_trailing_threshold,
    trailing_threshold,
)

# The image name the Deployment uses; the `images` entry of a kustomization rewrites it.
IMAGE_NAME = "server"
# The sustained requests/s of one pod, written once on the HPA it sizes.
PER_POD_RPS_ANNOTATION = "sizing/per-pod-rps"
# Kustomize reads only files below a kustomization, so the ConfigMap is built from this copy.
CONTRACT_COPY = Path("k8s/base/system.yaml")
CANARY_WEIGHTS = Path("k8s/overlays/canary/weights.yaml")
CHALLENGER_SUBSET = "challenger"
CHAMPION_SUBSET = "champion"

# PrometheusRule alert -> (contract key, how the threshold is written in its expression).
ALERT_THRESHOLDS: dict[str, tuple[str, str]] = {
    "ModelFalsePositiveRateHigh": ("alerts.false_positive_rate_max", "threshold"),
    "ModelPrecisionDrop": ("alerts.precision_drop_max", "threshold"),
    "ServingLatencyP99High": ("alerts.latency_p99_ms", "threshold"),
    "ServingErrorRateHigh": ("alerts.error_rate_max", "threshold"),
    "ModelFeatureDrift": ("alerts.drift_psi_max", "threshold"),
    "ModelNoPredictions": ("alerts.no_predictions_minutes", "range"),
}
# AnalysisTemplate metric -> contract key of the limit in its success/failure conditions.
GATE_THRESHOLDS: dict[str, str] = {
    "error-rate": "alerts.error_rate_max",
    "p99-latency-ms": "alerts.latency_p99_ms",
}


def render_command() -> str:
    """The command that rewrites deploy/ from the contract."""
    return f"python -m {__package__.split('.')[0]} deploy render"


@dataclass(frozen=True)
class OwnedValue:
    """One contract value copied into a deploy/ file.

    ``location`` is the document index in the file followed by the keys down to the value;
    ``mode`` says how the value sits there: ``value`` (the field itself), ``threshold`` (the
    number after the last comparison of an expression), ``range`` (the minutes of every range
    selector of an expression) or ``text`` (the whole file).
    """

    file: Path
    location: tuple
    where: str
    contract_key: str
    expected: Any
    actual: Any
    mode: str = "value"
    # Why the expected value cannot be derived, if it cannot: always stale, never rendered.
    problem: str = ""

    @property
    def stale(self) -> bool:
        if self.problem:
            return True
        if self.mode == "text":
            return self.actual != self.expected
        if self.mode == "range":
            return not self.actual or any(m != self.expected for m in self.actual)
        if isinstance(self.expected, (int, float)) and not isinstance(self.expected, bool):
            try:
                return not math.isclose(float(self.actual), float(self.expected), rel_tol=1e-9)
            except (TypeError, ValueError):
                return True
        return str(self.actual) != str(self.expected)


def contract_value(cfg: SystemConfig, key: str) -> Any:
    """The contract's value at a dotted key such as ``alerts.error_rate_max``."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def contract_file(cfg: SystemConfig) -> Path:
    """The contract file ``cfg`` was loaded from (``configs/system.yaml`` under its root)."""
    return cfg.path(DEFAULT_CONFIG)


def contract_values(
    cfg: SystemConfig, deploy_dir: str | Path, *, contract_path: str | Path | None = None
) -> list[OwnedValue]:
    """Every contract value found in deploy/, with what the contract says it should be."""
    deploy_dir = Path(deploy_dir)
    values: list[OwnedValue] = []
    for path in sorted(deploy_dir.rglob("*.y*ml")):
        docs = parse_yaml_all(path.read_text(encoding="utf-8"))
        if path.name in KUSTOMIZATION_FILES:
            values.extend(_kustomization_values(cfg, path, docs[0] or {}))
        elif path.resolve() == (deploy_dir / CANARY_WEIGHTS).resolve():
            values.extend(_canary_values(cfg, path, docs[0] or []))
        elif path.resolve() != (deploy_dir / CONTRACT_COPY).resolve():
            for index, doc in enumerate(docs):
                if isinstance(doc, dict):
                    values.extend(_document_values(cfg, path, index, doc))
    copy = deploy_dir / CONTRACT_COPY
    if copy.parent.is_dir():
        source = Path(contract_path) if contract_path else contract_file(cfg)
        values.append(
            OwnedValue(
                file=copy,
                location=(),
                where="copy of the contract for the ConfigMap",
                contract_key=_display(source, cfg.root),
                expected=source.read_text(encoding="utf-8"),
                actual=copy.read_text(encoding="utf-8") if copy.is_file() else None,
                mode="text",
            )
        )
    return values


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def stale_values(
    cfg: SystemConfig, deploy_dir: str | Path, *, contract_path: str | Path | None = None
) -> list[OwnedValue]:
    """The contract values in deploy/ that differ from the contract."""
    return [v for v in contract_values(cfg, deploy_dir, contract_path=contract_path) if v.stale]


def _kustomization_values(cfg: SystemConfig, path: Path, spec: dict) -> list[OwnedValue]:
    out = []
    if "namespace" in spec:
        out.append(
            OwnedValue(
                file=path,
                location=(0, "namespace"),
                where="namespace",
                contract_key="platform.namespace",
                expected=cfg.platform.namespace,
                actual=spec["namespace"],
            )
        )
    for i, image in enumerate(spec.get("images") or []):
        if image.get("name") != IMAGE_NAME:
            continue
        out.append(
            OwnedValue(
                file=path,
                location=(0, "images", i, "newName"),
                where=f"images[{IMAGE_NAME}].newName",
                contract_key="platform.image",
                expected=cfg.platform.image,
                actual=image.get("newName"),
            )
        )
        out.append(
            OwnedValue(
                file=path,
                location=(0, "images", i, "newTag"),
                where=f"images[{IMAGE_NAME}].newTag",
                contract_key="project version",
                expected=__version__,
                actual=image.get("newTag"),
            )
        )
    return out


def _canary_values(cfg: SystemConfig, path: Path, ops: list) -> list[OwnedValue]:
    share = cfg.serving.canary_percent
    # Istio route weights are whole numbers.
    problem = "" if float(share).is_integer() else f"Istio weights are integers, not {share}"
    weights = {CHALLENGER_SUBSET: int(share), CHAMPION_SUBSET: 100 - int(share)}
    out = []
    for i, op in enumerate(ops):
        routes = (op.get("value") or {}).get("route") if isinstance(op, dict) else None
        for j, route in enumerate(routes or []):
            subset = (route.get("destination") or {}).get("subset")
            if subset in weights:
                out.append(
                    OwnedValue(
                        file=path,
                        location=(0, i, "value", "route", j, "weight"),
                        where=f"VirtualService route weight of subset {subset}",
                        contract_key="serving.canary_percent",
                        expected=weights[subset],
                        actual=route.get("weight"),
                        problem=problem,
                    )
                )
    return out


def _document_values(cfg: SystemConfig, path: Path, index: int, doc: dict) -> list[OwnedValue]:
    kind = doc.get("kind")
    name = f"{kind}/{(doc.get('metadata') or {}).get('name')}"
    if kind == "Namespace":
        return [
            OwnedValue(
                file=path,
                location=(index, "metadata", "name"),
                where=f"{name} metadata.name",
                contract_key="platform.namespace",
                expected=cfg.platform.namespace,
                actual=doc["metadata"].get("name"),
            )
        ]
    if kind == "HorizontalPodAutoscaler":
        return _hpa_values(cfg, path, index, doc, name)
    if kind == "PrometheusRule":
        return _alert_values(cfg, path, index, doc, name)
    if kind == "AnalysisTemplate":
        return _gate_values(cfg, path, index, doc, name)
    return []


def max_replicas(peak_qps: float, per_pod_rps: float, min_replicas: int) -> int:
    """Pods needed at peak: ceil(peak QPS / per-pod throughput), never below the minimum."""
    if per_pod_rps <= 0:
        raise ValueError(f"per-pod throughput must be positive, got {per_pod_rps}")
    return max(math.ceil(peak_qps / per_pod_rps), int(min_replicas))


def _hpa_values(
    cfg: SystemConfig, path: Path, index: int, doc: dict, name: str
) -> list[OwnedValue]:
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    if PER_POD_RPS_ANNOTATION not in annotations:
        return []
    spec = doc.get("spec") or {}
    rps = annotations[PER_POD_RPS_ANNOTATION]
    try:
        expected: Any = max_replicas(
            cfg.requirements.peak_qps, float(rps), spec.get("minReplicas", 1)
        )
        problem = ""
    except (TypeError, ValueError, ZeroDivisionError):
        expected, problem = None, f"annotation {PER_POD_RPS_ANNOTATION} must be a positive number"
    return [
        OwnedValue(
            file=path,
            location=(index, "spec", "maxReplicas"),
            where=f"{name} spec.maxReplicas (ceil(peak_qps / {rps}))",
            contract_key="requirements.peak_qps",
            expected=expected,
            actual=spec.get("maxReplicas"),
            problem=problem,
        )
    ]


def _alert_values(
    cfg: SystemConfig, path: Path, index: int, doc: dict, name: str
) -> list[OwnedValue]:
    out = []
    for g, group in enumerate((doc.get("spec") or {}).get("groups") or []):
        for r, rule in enumerate(group.get("rules") or []):
            alert = rule.get("alert")
            if alert not in ALERT_THRESHOLDS:
                continue
            key, mode = ALERT_THRESHOLDS[alert]
            expr = str(rule.get("expr", ""))
            actual = range_minutes(expr) if mode == "range" else trailing_threshold(expr)
            out.append(
                OwnedValue(
                    file=path,
                    location=(index, "spec", "groups", g, "rules", r, "expr"),
                    where=f"{name} alert {alert} threshold",
                    contract_key=key,
                    expected=contract_value(cfg, key),
                    actual=actual,
                    mode=mode,
                )
            )
    return out


def _gate_values(
    cfg: SystemConfig, path: Path, index: int, doc: dict, name: str
) -> list[OwnedValue]:
    out = []
    for m, metric in enumerate((doc.get("spec") or {}).get("metrics") or []):
        key = GATE_THRESHOLDS.get(metric.get("name"))
        if key is None:
            continue
        for field in ("successCondition", "failureCondition"):
            if field in metric:
                out.append(
                    OwnedValue(
                        file=path,
                        location=(index, "spec", "metrics", m, field),
                        where=f"{name} metric {metric['name']} {field}",
                        contract_key=key,
                        expected=contract_value(cfg, key),
                        actual=trailing_threshold(str(metric[field])),
                        mode="threshold",
                    )
                )
    return out


def format_number(value: Any) -> str:
    """A contract number as written in a manifest: ints as ints, floats in shortest form."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return repr(value) if isinstance(value, float) else str(value)


def render_manifests(
    cfg: SystemConfig, deploy_dir: str | Path, *, contract_path: str | Path | None = None
) -> list[Path]:
    """Rewrite every stale contract value in deploy/; return the files changed.

    Only the stale values' characters change: comments, layout and quoting stay byte for byte.
    A value that cannot be derived (a bad per-pod annotation, a fractional canary weight) raises
    ValueError naming it.
    """
    stale = stale_values(cfg, deploy_dir, contract_path=contract_path)
    for value in stale:
        if value.problem:
            raise ValueError(f"{value.file}: {value.where}: {value.problem}")
    by_file: dict[Path, list[OwnedValue]] = {}
    for value in stale:
        by_file.setdefault(value.file, []).append(value)
    for path, values in by_file.items():
        if values[0].mode == "text":
            path.write_text(values[0].expected, encoding="utf-8")
        else:
            path.write_text(_rewrite(path.read_text(encoding="utf-8"), values), encoding="utf-8")
    return sorted(by_file)


def _rewrite(text: str, values: list[OwnedValue]) -> str:
    # A round-trip parse gives each value's line and column; the edit happens in the text.
    from ruamel.yaml import YAML

    docs = list(YAML().load_all(text))
    lines = text.splitlines(keepends=True)
    starts = sorted({n for doc in docs for n in _node_lines(doc)})
    for value in values:
        holder: Any = docs[value.location[0]]
        for key in value.location[1:-1]:
            holder = holder[key]
        last = value.location[-1]
        line, col = holder.lc.item(last) if isinstance(last, int) else holder.lc.value(last)
        end = next((s for s in starts if s > line), len(lines))
        if value.mode == "value":
            lines[line] = _replace_scalar(lines[line], col, value.expected)
        elif value.mode == "threshold":
            _replace_threshold(lines, line, end, format_number(value.expected))
        else:
            for n in range(line, end):
                if not lines[n].lstrip().startswith("#"):
                    lines[n] = replace_ranges(lines[n], int(value.expected))
    return "".join(lines)


def _node_lines(node: Any):
    # The line of every key, value and item: a value's text ends before the next of them.
    if hasattr(node, "lc") and isinstance(node, dict):
        for key in node:
            yield node.lc.key(key)[0]
            yield node.lc.value(key)[0]
            yield from _node_lines(node[key])
    elif hasattr(node, "lc") and isinstance(node, list):
        for i, item in enumerate(node):
            yield node.lc.item(i)[0]
            yield from _node_lines(item)


def _replace_scalar(line: str, col: int, new: Any) -> str:
    body = line[col:].rstrip("\r\n")
    comment = body.find(" #")
    token = (body[:comment] if comment >= 0 else body).rstrip()
    if token.startswith('"'):
        text = json.dumps(str(new))
    elif token.startswith("'"):
        text = "'" + str(new).replace("'", "''") + "'"
    elif isinstance(new, (int, float)) and not isinstance(new, bool):
        text = format_number(new)
    else:
        # Plain when it reads back as the same string, quoted otherwise (e.g. "0.10", "true").
        text = str(new) if yaml.safe_load(str(new) or "''") == new else json.dumps(str(new))
    return line[:col] + text + line[col + len(token) :]


def _replace_threshold(lines: list[str], start: int, end: int, number: str) -> None:
    # The threshold ends the expression: on its last line that is not a comment.
    for n in range(end - 1, start - 1, -1):
        stripped = lines[n].strip()
        if stripped and not stripped.startswith("#"):
            lines[n] = replace_trailing_threshold(lines[n], number)
            return
