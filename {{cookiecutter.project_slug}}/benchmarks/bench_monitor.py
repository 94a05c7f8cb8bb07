"""Time `monitor` on a large window of the prediction log.

    python benchmarks/bench_monitor.py [--rows 1000000] [--seed-rows 4000]

Everything happens in a temporary folder: a sample project (``tests/sample_project.py``: a small
champion with its reference, a registry, an entity store), ``--seed-rows`` generated records
classified through the serving engine (so every logged row carries real features and input
signals), then those rows copied with fresh request ids until the log holds ``--rows``
predictions over the last 23 hours, with feedback on 3 % of them. Then ``monitor.run`` reads
the window and judges it, timed by phase. Results go to ``reports/bench_monitor.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

PACKAGE = "{{ cookiecutter.package_name }}"
ROOT = Path(__file__).resolve().parents[1]


def _import(name: str):
    import importlib

    return importlib.import_module(f"{PACKAGE}.{name}")


def seed_rows(cfg, n: int) -> list[dict]:
    """``n`` real log rows: generated records classified by the engine."""
    synthetic = _import("data.synthetic")
    engine_mod = _import("serving.engine")
    replay = _import("serving.replay")
    items = synthetic.generate(cfg, n, 11, days=2, start=datetime.now(UTC) - timedelta(days=2))
    engine = engine_mod.Engine.from_config(cfg, {})
    try:
        replay.replay(cfg, items, engine=engine, progress=True)
        return engine.log.rows()
    finally:
        engine.close()


def fill_log(cfg, seeds: list[dict], rows: int) -> float:
    """Copy ``seeds`` into the log until it holds ``rows`` predictions; returns seconds."""
    from rich.progress import Progress

    predlog = _import("predlog.store")
    log = predlog.PredictionLog(predlog.log_url(cfg))
    now = datetime.now(UTC).replace(tzinfo=None)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    chunk = 50_000
    with Progress(transient=True) as bar:
        task = bar.add_task("Filling the prediction log", total=rows)
        for start in range(len(seeds), rows, chunk):
            batch = []
            offsets = rng.uniform(0, 23 * 3600, size=min(chunk, rows - start))
            for k, offset in enumerate(offsets):
                row = dict(seeds[(start + k) % len(seeds)])
                row.pop("id", None)
                row["request_id"] = f"bench-{start + k}"
                row["created_at"] = now - timedelta(seconds=float(offset))
                batch.append(row)
            log.record(batch)
            bar.advance(task, len(batch))
        positive, negative = cfg.problem.positive_class, cfg.problem.negative_class
        feedback = [
            {
                "request_id": f"bench-{i}",
                "message_id": None,
                "label": negative if i % 7 else positive,
                "source": "bench",
                "reported_at": now,
                "ingested_at": now,
                "key": f"bench-{i}",
            }
            for i in range(len(seeds), rows, 33)
        ]
        log.add_feedback(feedback)
    log.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed-rows", type=int, default=4000)
    args = parser.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, str(ROOT / "tests"))  # the sample project is a test fixture
    import sample_project as sample

    monitor = _import("monitoring.monitor")
    window_mod = _import("monitoring.window")
    predlog = _import("predlog.store")
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        root = Path(tmp)
        project = sample.sample_project(ROOT / "configs" / "system.yaml", root, rows=3000)
        cfg = project.cfg
        seeds = seed_rows(cfg, args.seed_rows)
        fill_s = fill_log(cfg, seeds, args.rows)
        db = Path(predlog.log_url(cfg).removeprefix("sqlite:///"))
        size_mb = db.stat().st_size / 1e6

        reference, version, precision = monitor.champion_reference(cfg)
        since, until = monitor.window_bounds(cfg)
        log = predlog.PredictionLog(predlog.log_url(cfg))
        t0 = time.perf_counter()
        window = window_mod.read_window(log, since, until, reference=reference, progress=True)
        read_s = time.perf_counter() - t0
        log.close()
        t0 = time.perf_counter()
        summary = monitor.evaluate_window(cfg, window, reference, version, precision)
        judge_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = monitor.run(cfg, out_dir=root / "reports", progress=False)
        total_s = time.perf_counter() - t0
    results = {
        "rows": len(window.predictions),
        "features_per_row": len(window.features.columns),
        "log_mb": round(size_mb, 1),
        "fill_s": round(fill_s, 1),
        "read_window_s": round(read_s, 2),
        "statistics_s": round(judge_s, 2),
        "monitor_run_s": round(total_s, 2),
        "status": result.status,
        "checks": {c["name"]: c["status"] for c in summary["checks"]},
    }
    out = ROOT / "reports" / "bench_monitor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
