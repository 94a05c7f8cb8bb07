"""Bad answers are refused before generation, naming the answer; awkward valid ones render."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import run_in_project

INVALID = [
    ({"project_slug": "Bad_Slug"}, "project_slug"),
    ({"project_slug": "1spam"}, "project_slug"),
    ({"package_name": "class"}, "package_name"),
    ({"package_name": "json"}, "package_name"),
    ({"package_name": "mlflow"}, "package_name"),
    ({"package_name": "test"}, "package_name"),
    ({"target_precision": "0"}, "target_precision"),
    ({"target_precision": "1.5"}, "target_precision"),
    ({"target_recall": "high"}, "target_recall"),
    ({"fp_rate_alert": "0"}, "fp_rate_alert"),
    ({"peak_qps": "-100"}, "peak_qps"),
    ({"daily_volume": "0"}, "daily_volume"),
    ({"serving_latency_ms": "50.5"}, "serving_latency_ms"),
    ({"serving_latency_ms": "500"}, "serving_latency_ms"),
    ({"k8s_namespace": "Spam"}, "k8s_namespace"),
    ({"k8s_namespace": "spam_ns"}, "k8s_namespace"),
    ({"author_email": "not-an-email"}, "author_email"),
    ({"image_registry": "GHCR.io/Org"}, "image_registry"),
    ({"negative_class": "spam"}, "negative_class"),
    ({"positive_class": "Spam Mail"}, "positive_class"),
    ({"project_name": "Spam {{ detection }}"}, "project_name"),
    ({"deploy_strategy": "helm"}, "deploy_strategy"),
    ({"use_case": "crypto"}, "use_case"),
]


@pytest.mark.parametrize(("answers", "named"), INVALID, ids=[f"{a}" for a, _ in INVALID])
def test_invalid_answer_is_refused_naming_it(cookies, capfd, answers, named):
    result = cookies.bake(extra_context=answers)
    assert result.exit_code != 0
    assert result.project_path is None or not Path(result.project_path).exists()
    message = f"{result.exception}\n{capfd.readouterr().err}"
    assert named in message, message


def test_every_problem_is_reported_at_once(cookies, capfd):
    result = cookies.bake(
        extra_context={"target_precision": "2", "peak_qps": "lots", "k8s_namespace": "NS"}
    )
    assert result.exit_code != 0
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")]
    assert [line.split("=")[0] for line in errors] == [
        "ERROR: peak_qps",
        "ERROR: target_precision",
        "ERROR: k8s_namespace",
    ]


AWKWARD_NAME = 'Tom\'s "Spam" & Ham — Détection'


def test_awkward_but_valid_answers_render_valid_files(bake):
    project = bake(
        project_name=AWKWARD_NAME,
        description='Says "no" to spam & keeps Zoë\'s mail',
        author_name="Zoë O'Brien",
        business_goal='Block "spam" & <phishing> without hiding real mail',
    )
    assert project.name == "tom-s-spam-ham-detection"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == 'Says "no" to spam & keeps Zoë\'s mail'
    assert pyproject["project"]["authors"][0]["name"] == "Zoë O'Brien"
    contract = yaml.safe_load((project / "configs/system.yaml").read_text(encoding="utf-8"))
    assert contract["problem"]["name"] == AWKWARD_NAME
    assert (
        contract["problem"]["business_goal"] == 'Block "spam" & <phishing> without hiding real mail'
    )
    assert AWKWARD_NAME in (project / "README.md").read_text(encoding="utf-8")
    record = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert record["context"]["cookiecutter"]["project_name"] == AWKWARD_NAME
    out = run_in_project(
        project,
        sys.executable,
        "-c",
        "import tom_s_spam_ham_detection.config as c; print(c.load_config().problem.name)",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == AWKWARD_NAME
    tests = run_in_project(project, sys.executable, "-m", "pytest", "-q", "tests/test_contract.py")
    assert tests.returncode == 0, tests.stdout + tests.stderr
