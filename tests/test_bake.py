"""Bake the default and a pairwise cover of every choice, and prove each result is sound."""

from __future__ import annotations

import itertools
import json
import py_compile
import re
import sys
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import TEMPLATE, run_in_project

CHOICES = {
    key: value
    for key, value in json.loads((TEMPLATE / "cookiecutter.json").read_text()).items()
    if isinstance(value, list) and not key.startswith("_")
}
# A pairwise cover: every pair of values of any two choices appears in some row.
PAIRWISE = [
    {
        "python_version": "3.11",
        "retraining_schedule": "weekly",
        "deploy_strategy": "argo-rollouts",
        "ci": "github",
    },
    {
        "python_version": "3.11",
        "retraining_schedule": "daily",
        "deploy_strategy": "istio",
        "ci": "none",
    },
    {
        "python_version": "3.12",
        "retraining_schedule": "weekly",
        "deploy_strategy": "istio",
        "ci": "none",
    },
    {
        "python_version": "3.12",
        "retraining_schedule": "daily",
        "deploy_strategy": "argo-rollouts",
        "ci": "none",
    },
    {
        "python_version": "3.12",
        "retraining_schedule": "daily",
        "deploy_strategy": "istio",
        "ci": "github",
    },
]
BINARY_SUFFIXES = {".png", ".jpg", ".gif", ".parquet", ".db", ".pyc", ".ico", ".zip"}
# Tool caches a developer's local runs may leave in the template; a clean checkout has none.
CACHE_DIRS = {".git", ".ruff_cache", "__pycache__", ".pytest_cache"}
# Runtime expressions of other tools that legitimately keep double braces after the bake:
# GitHub Actions ${{ }}, Prometheus {{ $labels }} / {{ $value }}, Argo {{args.x}}.
RUNTIME_EXPRESSION = re.compile(r"\$\{\{[^}]*\}\}|\{\{\s*(\$|args\.)[^}]*\}\}")


def _text_files(project: Path):
    for path in sorted(project.rglob("*")):
        skipped = path.suffix in BINARY_SUFFIXES or CACHE_DIRS & set(path.parts)
        if path.is_file() and not skipped:
            yield path, path.read_text(encoding="utf-8")


def test_pairwise_rows_cover_every_pair_of_choice_values():
    assert set(PAIRWISE[0].keys()) == set(CHOICES)
    assert all(row[key] in CHOICES[key] for row in PAIRWISE for key in row)
    for a, b in itertools.combinations(sorted(CHOICES), 2):
        seen = {(row[a], row[b]) for row in PAIRWISE}
        assert seen == set(itertools.product(CHOICES[a], CHOICES[b])), (a, b)
    # The first row is the default bake, so the defaults are covered too.
    assert all(PAIRWISE[0][key] == CHOICES[key][0] for key in CHOICES)


def assert_no_leftover_template_syntax(project: Path) -> None:
    for path, text in _text_files(project):
        stripped = RUNTIME_EXPRESSION.sub("", text)
        # Openers are the evidence: "}}" closes nested dicts and "%}" ends a Python format spec
        # ({rate:.1%}); a Jinja tag's end is " %}" or "-%}".
        for marker in ("{{", "{%", " %}", "-%}", "cookiecutter."):
            assert marker not in stripped, f"{path.relative_to(project)} keeps '{marker}'"


def assert_structured_files_parse(project: Path) -> None:
    for path, text in _text_files(project):
        if path.suffix in {".yaml", ".yml"}:
            list(yaml.safe_load_all(text))
        elif path.suffix == ".toml":
            tomllib.loads(text)
        elif path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".py":
            py_compile.compile(str(path), doraise=True, cfile=str(path) + ".check")
            Path(str(path) + ".check").unlink()


def assert_lint_clean(project: Path) -> None:
    ruff = str(Path(sys.executable).parent / "ruff")
    for args in ([ruff, "check", "."], [ruff, "format", "--check", "."]):
        out = run_in_project(project, *args)
        assert out.returncode == 0, f"{' '.join(args[1:])}:\n{out.stdout}{out.stderr}"


# The answers that are not the default change the contract values, deploy/ and CI, not the
# ML code: the other bakes run every test but the slow ones (training, servers, pipeline runs),
# which the default bake runs.
FAST_TESTS_ONLY = ("-m", "not slow")


def assert_generated_tests_pass(project: Path, *paths: str) -> None:
    out = run_in_project(
        project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths
    )
    tail = "\n".join((out.stdout + out.stderr).splitlines()[-40:])
    assert out.returncode == 0, f"generated test suite failed in {project.name}:\n{tail}"


@pytest.mark.parametrize("answers", PAIRWISE, ids=lambda row: "-".join(row.values()))
def test_bake_is_sound(bake, answers):
    project = bake(**answers)
    assert_no_leftover_template_syntax(project)
    assert_structured_files_parse(project)
    assert_lint_clean(project)
    is_default = answers == PAIRWISE[0]
    assert_generated_tests_pass(project, *(() if is_default else FAST_TESTS_ONLY))


def test_unselected_options_are_removed(bake):
    with_ci = bake(ci="github")
    assert (with_ci / ".github/workflows/ci.yml").is_file()
    workflow = yaml.safe_load((with_ci / ".github/workflows/ci.yml").read_text())
    assert "${{ github.workflow }}" in workflow["concurrency"]["group"]
    assert workflow["jobs"]["test"]["steps"][1]["with"]["python-version"] == "3.11"
    without_ci = bake(ci="none")
    assert not (without_ci / ".github").exists()


def test_answers_are_recorded_for_later_updates(bake):
    project = bake(project_name="Mail Guard", peak_qps="2500", deploy_strategy="istio")
    record = json.loads((project / ".cruft.json").read_text())
    answers = record["context"]["cookiecutter"]
    assert answers["project_name"] == "Mail Guard"
    assert answers["project_slug"] == "mail-guard"
    assert answers["peak_qps"] == "2500"
    assert answers["deploy_strategy"] == "istio"
    assert Path(record["template"]) == TEMPLATE
    assert "_output_dir" not in answers
    readme = (project / "README.md").read_text()
    assert ".cruft.json" in readme


def test_derived_names_follow_the_project_name(bake):
    project = bake(project_name="Fraud Radar 2")
    assert project.name == "fraud-radar-2"
    assert (project / "src" / "fraud_radar_2" / "config.py").is_file()
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"fraud-radar-2": "fraud_radar_2.cli:main"}


def test_gitignore_keeps_every_generated_file(bake):
    """Stage outputs are ignored, the package's own files (src/<pkg>/data/ too) are not."""
    project = bake()
    assert run_in_project(project, "git", "init", "-q").returncode == 0
    ignored = run_in_project(project, "git", "status", "--porcelain", "--ignored", "-uall")
    dropped = [line for line in ignored.stdout.splitlines() if line.startswith("!!")]
    assert not dropped, f"the generated .gitignore hides generated files: {dropped}"
    (project / "data" / "raw").mkdir(parents=True)
    (project / "data" / "raw" / "emails.parquet").write_bytes(b"x")
    check = run_in_project(project, "git", "check-ignore", "-q", "data/raw/emails.parquet")
    assert check.returncode == 0, "stage outputs under data/ must be ignored"


def test_default_project_trains_with_make(bake):
    """`make train deploy-check` in a fresh bake: data to a registered, gated model."""
    project = bake()
    make = [
        "make",
        "train",
        "deploy-check",
        "ROWS=4000",
        "TRIALS=3",
        "SKIP_INSTALL=1",
        f"VENV={Path(sys.executable).parent.parent}",
    ]
    out = run_in_project(project, *make)
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    report = json.loads((project / "data/validated/report.json").read_text())
    assert report["success"] is True
    sizes = {
        name: len(pq.read_table(project / f"data/split/{name}.parquet"))
        for name in ("train", "validation", "test")
    }
    assert sum(sizes.values()) == 4000
    assert sizes["train"] > sizes["validation"] > 0 and sizes["test"] > 0
    evaluation = json.loads((project / "reports/evaluation/evaluation.json").read_text())
    assert evaluation["baseline"]["test"]["pr_auc"] > 0.5
    assert evaluation["test"]["pr_auc"] > evaluation["baseline"]["test"]["pr_auc"]
    assert (project / "reports/evaluation/model_card.md").is_file()
    # The candidate was registered and gated; the printed decision names its outcome.
    assert "registered models:/spam-detection/1" in out.stdout
    assert re.search(r"version 1 is (now 'champion'|rejected|'challenger')", out.stdout)
    assert "deploy check passed" in out.stdout


@pytest.mark.parametrize("strategy", CHOICES["deploy_strategy"])
def test_make_deploy_check_passes_for_each_strategy_and_fails_on_breakage(bake, strategy):
    project = bake(deploy_strategy=strategy)
    make = ["make", "deploy-check", "SKIP_INSTALL=1", f"VENV={Path(sys.executable).parent.parent}"]
    out = run_in_project(project, *make)
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    assert "deploy check passed" in out.stdout
    deployment = project / "deploy/k8s/base/workload/deployment.yaml"
    deployment.write_text(deployment.read_text().replace("readinessProbe:", "readinesProbe:"))
    broken = run_in_project(project, *make)
    assert broken.returncode != 0
    assert "readinesProbe" in broken.stdout + broken.stderr
