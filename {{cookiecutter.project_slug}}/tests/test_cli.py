"""The CLI lists its stages, checks the contract and shows it as the stages see it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from {{cookiecutter.package_name}}.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "config" in result.output


def test_config_check_passes_on_the_project_contract(project_root):
    result = runner.invoke(
        app, ["config", "check", "-c", str(project_root / "configs/system.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "contract OK" in result.output


def test_config_check_names_the_bad_key(tmp_path, project_root):
    raw = yaml.safe_load((project_root / "configs/system.yaml").read_text(encoding="utf-8"))
    raw["metrics"]["offline"]["target_precision"] = 0
    bad = tmp_path / "system.yaml"
    bad.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["config", "check", "-c", str(bad)])
    assert result.exit_code == 2
    assert "metrics.offline.target_precision" in result.output


def test_config_show_prints_the_resolved_contract(cfg, project_root):
    result = runner.invoke(app, ["config", "show", "-c", str(project_root / "configs/system.yaml")])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["metrics"]["offline"]["target_precision"] == cfg.metrics.offline.target_precision
    assert shown["problem"]["name"] == cfg.problem.name


def test_module_entry_point_runs(project_root: Path):
    out = subprocess.run(
        [sys.executable, "-m", "{{cookiecutter.package_name}}", "--help"],
        cwd=project_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "config" in out.stdout


def test_deploy_check_fails_on_a_stale_copy_until_render_rewrites_it(tmp_path, project_root):
    shutil.copytree(project_root / "deploy", tmp_path / "deploy")
    (tmp_path / "configs").mkdir()
    raw = yaml.safe_load((project_root / "configs/system.yaml").read_text(encoding="utf-8"))
    raw["alerts"]["false_positive_rate_max"] = 0.0042
    contract = tmp_path / "configs/system.yaml"
    contract.write_text(yaml.safe_dump(raw), encoding="utf-8")

    stale = runner.invoke(app, ["deploy", "check", "-c", str(contract)])
    assert stale.exit_code == 1, stale.output
    assert "alerts.false_positive_rate_max" in stale.output
    assert "deploy render" in stale.output

    rendered = runner.invoke(app, ["deploy", "render", "-c", str(contract)])
    assert rendered.exit_code == 0, rendered.output
    assert "prometheusrule.yaml" in rendered.output
    assert "0.0042" in (tmp_path / "deploy/monitoring/prometheusrule.yaml").read_text()

    fresh = runner.invoke(app, ["deploy", "check", "-c", str(contract)])
    assert fresh.exit_code == 0, fresh.output
    assert "deploy check passed" in fresh.output


@pytest.mark.slow
def test_promote_strict_exits_5_with_the_reasons_when_the_gate_rejects(tmp_path, project_root):
    """`make train` runs `promote --strict`: a rejected model fails it with its own exit code."""
    from sample_project import sample_project

    from {{cookiecutter.package_name}}.features.history import attach_history

    sample = sample_project(project_root / "configs/system.yaml", tmp_path, rows=400)
    (tmp_path / "data/features").mkdir(parents=True)
    attach_history(sample.cfg, sample.records).to_parquet(tmp_path / "data/features/test.parquet")
    (tmp_path / "reports/evaluation").mkdir(parents=True)
    (tmp_path / "reports/evaluation/evaluation.json").write_text("{}", encoding="utf-8")
    raw = yaml.safe_load(sample.config_path.read_text(encoding="utf-8"))
    raw["metrics"]["offline"]["target_recall"] = 1.0  # out of any model's reach
    sample.config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    version = sample.challenger_version
    promote = ["promote", "--version", str(version), "-c", str(sample.config_path)]

    strict = runner.invoke(app, [*promote, "--strict"])
    assert strict.exit_code == 5, strict.output
    assert f"the gate rejected version {version}" in strict.output
    assert "recall" in strict.output.split("the gate rejected", 1)[1]

    lenient = runner.invoke(app, promote)
    assert lenient.exit_code == 0, lenient.output
    assert "is rejected" in lenient.output and "going on without --strict" in lenient.output

    # Without a champion to go on with, a rejection ends the run whatever the flag: the
    # steps after it (traffic, serving) could only fail one by one.
    from {{cookiecutter.package_name}}.models.tracking import connect

    name = sample.cfg.training.mlflow.registered_model
    connect(sample.cfg).delete_registered_model_alias(name, "champion")
    alone = runner.invoke(app, promote)
    assert alone.exit_code == 5, alone.output
    assert "no model is the champion yet" in alone.output
