"""Bad input files never end a stage in a Python traceback: one line naming the file, exit != 0."""

import os
import shutil
import subprocess
import sys

import pytest

import {{ cookiecutter.package_name }}

# The stages run in another folder: the package must be importable from there too.
SOURCE = os.path.dirname(os.path.dirname({{ cookiecutter.package_name }}.__file__))

# (command, the input it reads from the project folder, a word the error must say)
STAGES = [
    (["data", "validate"], "data/raw/records.parquet", "records.parquet"),
    (["features", "build"], "data/split/train.parquet", "train.parquet"),
    (["baseline"], "data/features/train.parquet", "train.parquet"),
    (["tune", "--trials", "1"], "data/features/train.parquet", "train.parquet"),
    (["evaluate"], "artifacts/candidate/bundle.json", "bundle"),
    (["promote", "--version", "1"], "reports/evaluation/evaluation.json", "evaluation.json"),
    (["feedback", "feedback.csv"], "feedback.csv", "feedback.csv"),
    (["data", "ingest", "export.csv", "--out", "data/raw/in.parquet"], "export.csv", "export.csv"),
]
SPLITS = ("train", "validation", "test")


def _cli(project, *args, **env):
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", *args],
        cwd=project,
        env={**os.environ, "PYTHONPATH": SOURCE, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def garbage_project(tmp_path_factory, project_root):
    """A project folder whose every stage input is there but is not what it claims to be."""
    root = tmp_path_factory.mktemp("garbage")
    (root / "configs").mkdir()
    shutil.copyfile(project_root / "configs/system.yaml", root / "configs/system.yaml")
    noise = bytes(range(256)) * 8
    files = [f"data/{stage}/{name}.parquet" for stage in ("split", "features") for name in SPLITS]
    files += [path for _, path, _ in STAGES]
    for path in files:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"\x00garbage," + noise)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, path, named", STAGES, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_a_stage_reports_a_bad_input_in_one_line(garbage_project, command, path, named):
    out = _cli(garbage_project, *command)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "Traceback" not in text, text
    assert named in text, text


@pytest.mark.slow
def test_the_traceback_is_there_on_request(garbage_project):
    out = _cli(garbage_project, "baseline", SHOW_TRACEBACK="1")
    assert out.returncode != 0
    assert "Traceback" in out.stderr
