"""Shared fixtures: the project root and its contract."""

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.config import SystemConfig, load_config

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def cfg() -> SystemConfig:
    """The project's contract, as every stage receives it."""
    return load_config(PROJECT_ROOT / "configs" / "system.yaml")
