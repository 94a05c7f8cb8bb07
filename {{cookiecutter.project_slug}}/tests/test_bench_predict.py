"""``benchmarks/bench_predict.py`` measures batch scoring against the ceiling, in one run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_predict.py"


@pytest.mark.slow
def test_the_batch_benchmark_runs_end_to_end(tmp_path):
    """``make bench-predict``, shortened: the ceiling and predict (the log written in turn, and
    beside the scoring) on the same records, with predict's CPU by phase."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("MLFLOW_TRACKING_URI", None)
    run = subprocess.run(
        [
            *(sys.executable, str(BENCH), "--rows", "1500", "--chunk-rows", "500"),
            *("--rounds", "2", "--out", str(out)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    results = json.loads(out.read_text())
    assert results["ceiling"]["records"] == 1500 and results["ceiling"]["records_per_s"] > 0
    runs = results["predict"]
    assert set(runs) == {"inline", "process"}
    for writer, predicted in runs.items():
        assert predicted["log_writer"] == writer
        assert predicted["scored"] == 1500 and predicted["quarantined"] == 0
        assert predicted["share_of_ceiling"] == pytest.approx(
            predicted["records_per_s"] / results["ceiling"]["records_per_s"], abs=0.001
        )
    # In turn, the log's phases are on the scoring thread; beside it, in the writer process,
    # whose CPU is counted in predict's.
    phases = runs["inline"]["phases_cpu_ms_per_record"]
    for phase in ("features", "model", "log rows", "log commit", "log lookup"):
        assert phases.get(phase, 0) > 0, phases
    assert sum(phases.values()) < runs["inline"]["cpu_ms_per_record"]
    phases = runs["process"]["phases_cpu_ms_per_record"]
    for phase in ("features", "model", "log hand-off", "log writer process", "log lookup"):
        assert phases.get(phase, 0) > 0, phases
    assert "log rows" not in phases and "log commit" not in phases
    assert phases["log writer process"] == runs["process"]["writer_cpu_ms_per_record"]
    assert sum(phases.values()) < runs["process"]["cpu_ms_per_record"]
    assert "ceiling: features + model" in run.stdout and "log beside: file to file" in run.stdout
    # Each round's shares against its own ceiling; the last round is the one in full.
    assert len(results["rounds"]) == 2
    assert (
        results["rounds"][-1]["share_of_ceiling"]["process"] == runs["process"]["share_of_ceiling"]
    )
    for writer in ("inline", "process"):
        shares = sorted(r["share_of_ceiling"][writer] for r in results["rounds"])
        assert results["median_share_of_ceiling"][writer] == pytest.approx(sum(shares) / 2)
    assert "share of the ceiling while scoring, by round (2)" in run.stdout
