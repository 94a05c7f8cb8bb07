"""Bake the default and a pairwise cover of every choice, and prove each result is sound."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import py_compile
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import BIN, TEMPLATE, run_in_project

CHOICES = {
    key: value
    for key, value in json.loads((TEMPLATE / "cookiecutter.json").read_text()).items()
    if isinstance(value, list) and not key.startswith("_")
}
# A pairwise cover: every pair of values of any two choices appears in some row.
PAIRWISE = [
    {
        "use_case": "spam-email",
        "python_version": "3.11",
        "retraining_schedule": "weekly",
        "deploy_strategy": "argo-rollouts",
        "ci": "github",
    },
    {
        "use_case": "card-fraud",
        "python_version": "3.11",
        "retraining_schedule": "weekly",
        "deploy_strategy": "istio",
        "ci": "none",
    },
    {
        "use_case": "custom",
        "python_version": "3.11",
        "retraining_schedule": "daily",
        "deploy_strategy": "argo-rollouts",
        "ci": "none",
    },
    {
        "use_case": "card-fraud",
        "python_version": "3.12",
        "retraining_schedule": "daily",
        "deploy_strategy": "argo-rollouts",
        "ci": "github",
    },
    {
        "use_case": "spam-email",
        "python_version": "3.12",
        "retraining_schedule": "daily",
        "deploy_strategy": "istio",
        "ci": "none",
    },
    {
        "use_case": "custom",
        "python_version": "3.12",
        "retraining_schedule": "weekly",
        "deploy_strategy": "istio",
        "ci": "github",
    },
]
# Answers besides the choices, by PAIRWISE row: a non-default bake also renames the project and
# its classes, so every run proves the generated suite reads names and labels from the contract.
EXTRA_ANSWERS = {
    4: {"project_name": "Fraud Radar", "positive_class": "fraud", "negative_class": "legit"},
    5: {"project_name": "Churn Watch", "positive_class": "churned", "negative_class": "stayed"},
}
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
    assert 0 not in EXTRA_ANSWERS and set(EXTRA_ANSWERS) <= set(range(len(PAIRWISE)))
    assert not {key for extra in EXTRA_ANSWERS.values() for key in extra} & set(CHOICES)


def assert_no_leftover_template_syntax(project: Path) -> None:
    for path, text in _text_files(project):
        stripped = RUNTIME_EXPRESSION.sub("", text)
        # Openers are the evidence: "}}" closes nested dicts and "%}" ends a Python format spec
        # ({rate:.1%}); a Jinja tag's end is " %}" or "-%}".
        for marker in ("{{", "{%", " %}", "-%}", "cookiecutter."):
            assert marker not in stripped, f"{path.relative_to(project)} keeps '{marker}'"


# Words of the default (email) instance that a core file of another instance must not use:
# the core reads roles from the contract and the domain lives in src/<package>/domain/.
EMAIL_WORDS = re.compile(r"\b(spam|e-?mails?|mail|mbox|inbox|senders?)\b|\.eml\b", re.IGNORECASE)
# The standard library's email package, and the author's address.
EMAIL_WORDS_ALLOWED = re.compile(r"\bemail\.utils\b|author_email|[\w.-]+@example\.com")
CORE_PARTS = ("src", "tests", "deploy", "configs", "benchmarks", "Makefile")


def assert_core_never_names_the_email_instance(project: Path) -> None:
    for path, text in _text_files(project):
        parts = path.relative_to(project).parts
        domain = "domain" in parts[:3] or (parts[0] == "tests" and parts[1].startswith("domain_"))
        if parts[0] not in CORE_PARTS or domain:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            found = EMAIL_WORDS.search(EMAIL_WORDS_ALLOWED.sub("", line))
            assert found is None, f"{'/'.join(parts)}:{number} names '{found[0]}': {line.strip()}"


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


# The default bake runs the whole generated suite, slow tests included (~13 min of tests in one
# process): two xdist workers (the template's venv has pytest-xdist) halve its wall time.
WHOLE_SUITE = ("-n", "2")


def assert_generated_tests_pass(project: Path, *paths: str) -> None:
    out = run_in_project(
        project,
        sys.executable,
        *("-m", "pytest", "-q", "-p", "no:cacheprovider", *paths),
        timeout=1800,
    )
    tail = "\n".join((out.stdout + out.stderr).splitlines()[-40:])
    assert out.returncode == 0, f"generated test suite failed in {project.name}:\n{tail}"


def _bake_id(index: int) -> str:
    extra = EXTRA_ANSWERS.get(index, {})
    labels = [extra[key] for key in ("positive_class", "negative_class") if key in extra]
    return "-".join([*PAIRWISE[index].values(), *labels])


@pytest.mark.parametrize(
    "answers, extra",
    [(row, EXTRA_ANSWERS.get(i, {})) for i, row in enumerate(PAIRWISE)],
    ids=[_bake_id(i) for i in range(len(PAIRWISE))],
)
def test_bake_is_sound(bake, answers, extra):
    project = bake(**answers, **extra)
    assert_no_leftover_template_syntax(project)
    assert_structured_files_parse(project)
    assert_lint_clean(project)
    if answers["use_case"] != "spam-email":
        assert_core_never_names_the_email_instance(project)
    is_default = answers == PAIRWISE[0]
    assert_generated_tests_pass(project, *(WHOLE_SUITE if is_default else FAST_TESTS_ONLY))


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
    (project / "data" / "raw" / "records.parquet").write_bytes(b"x")
    check = run_in_project(project, "git", "check-ignore", "-q", "data/raw/records.parquet")
    assert check.returncode == 0, "stage outputs under data/ must be ignored"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(project: Path, port: int) -> subprocess.Popen:
    """`serve --routing shadow` in the baked project, once /readyz answers."""
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("SYSTEM_CONFIG", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "spam_detection", "serve", "--routing", "shadow", f"--port={port}"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited: {server.stderr.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError("the server did not become ready in 120 s")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server, then SIGKILL whatever is left of it: BentoML starts each worker in a
    session of its own, out of reach of the server's process group."""
    try:
        family = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(30)
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(10)


def _ok(out: subprocess.CompletedProcess, *codes: int) -> subprocess.CompletedProcess:
    assert out.returncode in (codes or (0,)), f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_default_project_runs_the_whole_loop_with_make(bake):
    """The lifecycle a user runs in a fresh bake: data -> train (make) -> healthy traffic ->
    monitor (no drift) -> shadow server -> drifted traffic with feedback -> monitor alerts ->
    retraining on recent data produces a challenger."""
    project = bake()
    make = ["make", "SKIP_INSTALL=1", f"VENV={Path(sys.executable).parent.parent}"]
    cli = [sys.executable, "-m", "spam_detection"]
    # The Makefile's default corpus size: on fewer rows (10,000) the baseline's PR-AUC matched
    # the 3-trial model's and the gate rightly rejected it.
    _ok(run_in_project(project, *make, "data", "ROWS=20000", "HOLDOUT=2000"))
    out = _ok(run_in_project(project, *make, "train", "deploy-check", "TRIALS=3"))
    report = json.loads((project / "data/validated/report.json").read_text())
    assert report["success"] is True
    sizes = {
        name: len(pq.read_table(project / f"data/split/{name}.parquet"))
        for name in ("train", "validation", "test")
    }
    assert sum(sizes.values()) == 18000  # the 2,000 latest emails were held out
    assert sizes["train"] > sizes["validation"] > 0 and sizes["test"] > 0
    evaluation = json.loads((project / "reports/evaluation/evaluation.json").read_text())
    assert evaluation["test"]["pr_auc"] > evaluation["baseline"]["test"]["pr_auc"] > 0.5
    assert (project / "reports/evaluation/model_card.md").is_file()
    assert "registered models:/spam-detection/1" in out.stdout
    assert "version 1 is now 'champion'" in out.stdout, out.stdout[-2000:]
    assert "deploy check passed" in out.stdout

    # The same world's future, replayed in-process: no drift alert.
    _ok(run_in_project(project, *make, "traffic"))
    _ok(run_in_project(project, *cli, "monitor"), 0, 3, 4)
    healthy = json.loads((project / "reports/monitoring/monitor.json").read_text())
    checks = {c["name"]: c for c in healthy["checks"]}
    assert healthy["window"]["served"] == 2000
    assert checks["data drift"]["status"] != "alert", checks["data drift"]
    assert checks["prediction drift"]["status"] != "alert", checks["prediction drift"]

    # A drifted world through a real shadow-mode server, with user feedback.
    since = datetime.now(UTC).isoformat()
    port = _free_port()
    server = _serve(project, port)
    try:
        url = f"http://127.0.0.1:{port}"
        sent = run_in_project(
            project, *cli, "traffic", "--generate", "2000", "--drift", "0.4", "--url", url
        )
        _ok(sent)
        assert "replayed 2,000 records" in sent.stdout
    finally:
        _stop(server)
    recent = ["--rows=10000", "--drift=0.4", "--seed=9", "--out=data/live/recent.parquet"]
    _ok(run_in_project(project, *cli, "data", "generate", *recent))
    retrain = [
        "monitor",
        "--since",
        since,
        "--retrain-on-alert",
        "--retrain-data",
        "data/live/recent.parquet",
        "--retrain-trials",
        "3",
    ]
    out = _ok(run_in_project(project, *cli, *retrain, timeout=1200), 4)
    drifted = json.loads((project / "reports/monitoring/monitor.json").read_text())
    checks = {c["name"]: c for c in drifted["checks"]}
    assert drifted["window"]["served"] == 2000
    assert checks["data drift"]["status"] == "alert"
    assert drifted["drift"]["alerts"], "the alert names the drifted features"
    assert drifted["drift"]["alerts"][0] in checks["data drift"]["reason"]
    assert "alerts fired: retraining" in out.stderr
    # Retraining goes through the same gate and stops at challenger: live traffic decides.
    assert "retrained: version 2 is challenger" in out.stdout, out.stdout[-3000:]

    # The shadow server now runs the challenger beside the champion; audited labels let
    # `compare` judge them on the same requests.
    since = datetime.now(UTC).isoformat()
    server = _serve(project, port)
    try:
        traffic = ["--generate=600", "--drift=0.4", "--seed=3", "--audit-share=1", f"--url={url}"]
        _ok(run_in_project(project, *cli, "traffic", *traffic))
    finally:
        _stop(server)
    out = _ok(run_in_project(project, *cli, "compare", "--since", since))
    comparison = json.loads((project / "reports/monitoring/compare.json").read_text())
    assert comparison["mode"] == "paired" and comparison["pairs"] == 600
    assert comparison["labelled"] == 600
    assert comparison["verdict"] in ("better", "worse", "not_distinguishable")
    assert "challenger" in out.stdout


def test_card_fraud_project_runs_make_demo(bake):
    """The second instance, as its user starts: `make demo` generates the card world, trains,
    checks the deploy, replays held-out transactions through the champion and monitors them."""
    project = bake(use_case="card-fraud")
    make = ["make", "SKIP_INSTALL=1", f"VENV={Path(sys.executable).parent.parent}"]
    # Few trials keep the template suite short; the 5-seed quality table uses the default.
    out = _ok(run_in_project(project, *make, "demo", "TRIALS=5", "HOLDOUT=3000", timeout=1500))
    assert "Demo finished" in out.stdout
    sizes = {
        name: len(pq.read_table(project / f"data/split/{name}.parquet"))
        for name in ("train", "validation", "test")
    }
    assert sum(sizes.values()) == 47000  # the pack's 50,000 rows, the latest 3,000 held out
    evaluation = json.loads((project / "reports/evaluation/evaluation.json").read_text())
    assert evaluation["test"]["pr_auc"] > evaluation["baseline"]["test"]["pr_auc"] + 0.2
    assert set(evaluation["slices"]) >= {"new_entity", "online", "abroad"}
    monitor = json.loads((project / "reports/monitoring/monitor.json").read_text())
    assert monitor["window"]["served"] == 3000


def _loan_applications(path: Path, n: int = 4000) -> None:
    """A user's own table: other names, no text, no entity and no time column; 20 % default."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    income = np.round(rng.lognormal(10.8, 0.5, n), -2)
    loan = np.round(income * rng.uniform(0.05, 0.6, n), -1)
    term = rng.choice([36, 60], n, p=[0.7, 0.3])
    purpose = rng.choice(["car", "home", "debt", "education", "medical"], n)
    risk = 5 * loan / income + 1.5 * (term == 60) + 1.5 * (purpose == "debt")
    risk = risk + rng.normal(0, 0.3, n)
    pd.DataFrame(
        {
            "application": [f"A{i:06d}" for i in range(n)],
            "annual_income": income,
            "loan_amount": loan,
            "term_months": term,
            "purpose": purpose,
            "defaulted": np.where(risk > np.quantile(risk, 0.8), "yes", "no"),
        }
    ).to_csv(path, index=False)


def test_custom_project_runs_make_demo_then_trains_on_a_users_table(bake):
    """The core with no pack, as its user starts: `make demo` on records made from the example
    schema; then their own CSV (no time column) through `data profile --write` and `make train`,
    split at random within each label and said to be so."""
    project = bake(use_case="custom")
    make = ["make", "SKIP_INSTALL=1", f"VENV={Path(sys.executable).parent.parent}"]
    cli = [sys.executable, "-m", "record_classifier"]
    out = _ok(run_in_project(project, *make, "demo", "TRIALS=5", "HOLDOUT=2000", timeout=1500))
    assert "Demo finished" in out.stdout
    evaluation = json.loads((project / "reports/evaluation/evaluation.json").read_text())
    assert evaluation["contract"]["met"], evaluation["contract"]
    assert evaluation["test"]["pr_auc"] > evaluation["baseline"]["test"]["pr_auc"] + 0.03
    assert evaluation["split"]["by_time"]
    monitor = json.loads((project / "reports/monitoring/monitor.json").read_text())
    assert monitor["window"]["served"] == 2000

    _ok(run_in_project(project, *make, "clean"))
    (project / "data").mkdir()
    _loan_applications(project / "data/applications.csv")
    profiled = _ok(run_in_project(project, *cli, "data", "profile", "data/applications.csv"))
    assert "time leakage cannot be ruled out" in " ".join(profiled.stdout.split())
    _ok(run_in_project(project, *cli, "data", "profile", "data/applications.csv", "--write"))
    out = _ok(run_in_project(project, *make, "train", "TRIALS=3", timeout=1200))
    assert "version 1 is now 'champion'" in out.stdout, out.stdout[-2000:]
    split = json.loads((project / "data/split/split.json").read_text())
    assert split["method"] == "stratified" and split["rows"] == 4000
    evaluation = json.loads((project / "reports/evaluation/evaluation.json").read_text())
    assert not evaluation["split"]["by_time"]
    card = (project / "reports/evaluation/model_card.md").read_text()
    assert "time leakage cannot be ruled out" in card
    assert evaluation["test"]["pr_auc"] > 0.8

    # New applications, not yet labelled, scored in batch with the champion just trained.
    import pandas as pd

    fresh = project / "data/new_applications.csv"
    _loan_applications(fresh, n=500)
    pd.read_csv(fresh).drop(columns=["defaulted"]).to_csv(fresh, index=False)
    out = _ok(
        run_in_project(
            project, *make, "predict", f"FILE={fresh}", "OUT=data/predictions/new.csv", timeout=600
        )
    )
    assert "scored 500 of 500 records" in out.stdout, out.stdout[-2000:]
    predictions = pd.read_csv(project / "data/predictions/new.csv")
    assert predictions["application"].tolist() == [f"A{i:06d}" for i in range(500)]
    assert predictions["model_version"].eq(1).all() and predictions["score"].between(0, 1).all()


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
