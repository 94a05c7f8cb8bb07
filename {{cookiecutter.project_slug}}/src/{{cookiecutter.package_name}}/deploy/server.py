"""What the manifests assume about the server: its port, probe paths, metrics and egress.

The manifests in deploy/ and the checks in this package read these constants; a test against a
running server can check :data:`REQUIRED_SERVER_METRICS` with :func:`missing_metrics`.
"""

from __future__ import annotations

# BentoML's default HTTP port; the Deployment names it `http`.
SERVER_PORT = 3000
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/livez"

# Every metric name the PrometheusRule and the AnalysisTemplate query, with its Prometheus type.
# A histogram `x` is queried as `x_bucket`, `x_count` and `x_sum`. Labels relied on:
# bentoml_service_*: endpoint, http_response_code; model_predictions_total: role, label;
# model_score: role; model_drift_score: feature.
REQUIRED_SERVER_METRICS: dict[str, str] = {
    "bentoml_service_request_total": "counter",
    "bentoml_service_request_duration_seconds": "histogram",
    "model_predictions_total": "counter",
    "model_score": "histogram",
    "model_online_false_positive_rate": "gauge",
    "model_online_precision": "gauge",
    "model_training_precision": "gauge",
    "model_drift_score": "gauge",
}

HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")

# The only ports the server's NetworkPolicy may open for egress.
EGRESS_PORTS: dict[int, str] = {
    53: "DNS",
    5000: "MLflow tracking server (registry and proxied model artifacts)",
    5432: "PostgreSQL (prediction log, entity store)",
    15012: "Istio control plane (istiod), for the sidecar",
}


def is_server_metric(name: str) -> bool:
    """True when ``name`` is a required metric or a series of a required histogram."""
    if name in REQUIRED_SERVER_METRICS:
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and REQUIRED_SERVER_METRICS.get(base) == "histogram":
            return True
    return False


def missing_metrics(exposition: str) -> list[str]:
    """Required metric names absent from a ``/metrics`` page (Prometheus text format)."""
    samples = set()
    for line in exposition.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            samples.add(line.split("{", 1)[0].split(" ", 1)[0])
    missing = []
    for name, kind in REQUIRED_SERVER_METRICS.items():
        wanted = f"{name}_bucket" if kind == "histogram" else name
        if wanted not in samples:
            missing.append(name)
    return missing
