"""The CLI lists its stages, checks the contract and shows it as the stages see it."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.cli import app

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
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "--help"],
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
