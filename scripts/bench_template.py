"""Time what a template user waits for: a bake, and the baked project's own test suite.

Prints numbers; asserts nothing (speed is tracked here, not in the tests).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]


def time_bakes(repeats: int = 5) -> list[float]:
    """Seconds per default bake, hooks included."""
    seconds = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            cookiecutter(str(TEMPLATE), no_input=True, output_dir=out)
            seconds.append(time.perf_counter() - start)
    return seconds


def time_generated_tests() -> float:
    """Seconds for the default project's own pytest run, with the template's environment."""
    with tempfile.TemporaryDirectory() as out:
        project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=out))
        env = {**os.environ, "PYTHONPATH": str(project / "src")}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=project, env=env, check=True)
        return time.perf_counter() - start


if __name__ == "__main__":
    bakes = time_bakes()
    print(
        f"bake (default answers): median {statistics.median(bakes):.2f} s, max {max(bakes):.2f} s"
    )
    print(f"generated test suite: {time_generated_tests():.1f} s")
