"""Shared fixtures: the project root and its contract."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

from {{ cookiecutter.package_name }}.config import SystemConfig, load_config

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# On CI (which sets CI) the property tests replay the same examples every run, so a red build
# reproduces; elsewhere each run explores new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def cfg() -> SystemConfig:
    """The project's contract, as every stage receives it."""
    return load_config(PROJECT_ROOT / "configs" / "system.yaml")


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server (tests/postgres.py) for the session; fails with how to install
    one when this machine has none, unless POSTGRES_TESTS=skip."""
    import postgres as pg

    if os.environ.get(pg.SKIP_ENV, "").lower() == "skip":
        pytest.skip(f"{pg.SKIP_ENV}=skip")
    try:
        server = pg.start_server()
    except pg.PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL tests: {exc}", pytrace=False)
    yield server
    server.stop()
