"""The contract carries the answers given when the project was generated."""

import pytest

# One entry per line: a long answer then never changes how the formatter lays this file out.
ANSWERS = {
    "project_name": {{ cookiecutter.project_name|tojson }},
    "business_goal": {{ cookiecutter.business_goal|tojson }},
    "positive_class": "{{ cookiecutter.positive_class }}",
    "negative_class": "{{ cookiecutter.negative_class }}",
    "peak_qps": {{ cookiecutter.peak_qps }},
    "daily_volume": {{ cookiecutter.daily_volume }},
    "serving_latency_ms": {{ cookiecutter.serving_latency_ms }},
    "end_to_end_latency_ms": {{ cookiecutter.end_to_end_latency_ms }},
    "target_precision": {{ cookiecutter.target_precision }},
    "target_recall": {{ cookiecutter.target_recall }},
    "fp_rate_alert": {{ cookiecutter.fp_rate_alert }},
    "precision_drop_alert": {{ cookiecutter.precision_drop_alert }},
    "retraining_schedule": "{{ cookiecutter.retraining_schedule }}",
    "k8s_namespace": "{{ cookiecutter.k8s_namespace }}",
    "image": "{{ cookiecutter.image_registry }}/{{ cookiecutter.project_slug }}",
    "deploy_strategy": "{{ cookiecutter.deploy_strategy }}",
}


@pytest.mark.parametrize(
    ("answer", "contract_value"),
    [
        ("project_name", lambda c: c.problem.name),
        ("business_goal", lambda c: c.problem.business_goal),
        ("positive_class", lambda c: c.problem.positive_class),
        ("negative_class", lambda c: c.problem.negative_class),
        ("peak_qps", lambda c: c.requirements.peak_qps),
        ("daily_volume", lambda c: c.requirements.daily_volume),
        ("serving_latency_ms", lambda c: c.requirements.serving_latency_p99_ms),
        ("serving_latency_ms", lambda c: c.alerts.latency_p99_ms),
        ("end_to_end_latency_ms", lambda c: c.requirements.end_to_end_latency_ms),
        ("target_precision", lambda c: c.metrics.offline.target_precision),
        ("target_recall", lambda c: c.metrics.offline.target_recall),
        ("fp_rate_alert", lambda c: c.alerts.false_positive_rate_max),
        ("precision_drop_alert", lambda c: c.alerts.precision_drop_max),
        ("retraining_schedule", lambda c: c.training.schedule),
        ("k8s_namespace", lambda c: c.platform.namespace),
        ("image", lambda c: c.platform.image),
        ("deploy_strategy", lambda c: c.platform.deploy_strategy),
    ],
)
def test_contract_value_equals_the_answer(cfg, answer, contract_value):
    assert contract_value(cfg) == ANSWERS[answer]
