"""Helpers shared by the template tests: bake, inspect and run a generated project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_SCHEMAS = TEMPLATE.parent / "shared" / "schemas" / "crds"


@pytest.fixture
def bake(cookies):
    """Bake with the given answers and insist that it worked; return the project path."""

    def _bake(**answers) -> Path:
        result = cookies.bake(extra_context=answers)
        assert result.exit_code == 0, f"bake failed for {answers}: {result.exception!r}"
        assert result.exception is None
        return Path(result.project_path)

    return _bake


def run_in_project(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command inside a baked project with the template's environment.

    The baked package is put on PYTHONPATH instead of being installed, so every bake is tested
    with the same pinned stack without building a virtualenv per bake.
    """
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    if SHARED_SCHEMAS.is_dir():
        env["CRD_SCHEMAS_DIR"] = str(SHARED_SCHEMAS)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SYSTEM_CONFIG", None)
    return subprocess.run(
        list(args), cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )
