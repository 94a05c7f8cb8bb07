"""Batch scoring (`predict`) against the in-process large-batch ceiling, in one run.

    python benchmarks/bench_predict.py [--rows 100000] [--chunk-rows 10000] [--rounds 3]

Everything happens in a temporary folder: a sample project (``tests/sample_project.py``: a small
champion, a registry, an entity store) and ``--rows`` generated records after its training
window, written as Parquet. Then, on the same records and model:

- the ceiling: features + model over every record at once (history attached beforehand), on
  one thread (BLAS's included, as in ``predict``): what any other figure is a share of;
- ``predict``: ``serving.batch.run`` from the file to the predictions file: the contract's
  checks, entity history, features, model, the prediction log, the output; its CPU per record
  by phase. Twice: with the log written by a second process beside the scoring (``process``,
  which ``auto`` takes on more than one core), whose CPU is counted too, and in turn with the
  scoring (``inline``): the rate a second core buys, beside its CPU.

The ceiling and both runs of ``predict`` repeat ``--rounds`` times, alternating: each round's
shares are taken against its own ceiling, and their spread shows the machine's noise (the
median is reported beside them). Results go to ``reports/bench_predict.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = "{{cookiecutter.package_name}}"
ROOT = Path(__file__).resolve().parents[1]


def _import(name: str):
    import importlib

    return importlib.import_module(f"{PACKAGE}.{name}")


class PhaseClock:
    """CPU seconds of this thread spent inside wrapped functions, by phase."""

    def __init__(self):
        self.cpu = collections.Counter()

    def wrap(self, phase: str, function):
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.cpu[phase] += time.thread_time() - started

        return timed


def records_after(cfg, sample, rows: int, path: Path) -> None:
    """``rows`` generated records after the sample's, as Parquet."""
    import pandas as pd

    synthetic = _import("data.synthetic")
    start = None
    if cfg.data.timestamp:
        start = sample.records[cfg.data.timestamp].max() + pd.Timedelta(minutes=1)
    frame = synthetic.generate(cfg, rows, 11, days=max(1, rows // 20_000), start=start)
    frame.to_parquet(path, index=False)


def store_copy(cfg, folder: Path, name: str) -> dict:
    """Server env with a fresh prediction log and a copy of the entity store."""
    store = cfg.path(cfg.serving.entity_store_url.removeprefix("sqlite:///"))
    env = {"PREDICTION_LOG_URL": f"sqlite:///{folder}/{name}-log.db"}
    if store.is_file():
        shutil.copyfile(store, folder / f"{name}-store.db")
        env["ENTITY_STORE_URL"] = f"sqlite:///{folder}/{name}-store.db"
    return env


def ceiling(cfg, path: Path, env: dict) -> dict:
    """Records/s of features + model over every record at once, history attached first."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    coerce = _import("data.coerce")
    loading = _import("serving.loading")
    routing = _import("serving.routing")
    heap = _import("serving.heap")
    store_mod = _import("features.store")

    rows, _ = coerce.coerce_to_contract(cfg, pd.read_parquet(path))
    if cfg.data.entity:
        store = store_mod.EntityStore.from_config(cfg, env["ENTITY_STORE_URL"])
        rows = store.lookup(cfg, rows, record=False)
        store.close()
    champion, _ = loading.load_models(cfg, routing.RoutingPlan("single"), {})
    bundle = champion.bundle
    bundle.score(rows.iloc[:100])  # warm
    with heap.frozen(), threadpool_limits(1, user_api="blas"):  # as predict's scoring loop runs
        wall, cpu = time.perf_counter(), time.thread_time()
        bundle.labels_for(bundle.score(rows))
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return {
        "records": len(rows),
        "seconds": round(wall, 3),
        "records_per_s": round(len(rows) / wall),
        "cpu_ms_per_record": round(cpu * 1000 / len(rows), 4),
    }


def warm_up(cfg, path: Path, folder: Path) -> None:
    """Score a few records once, in turn, on copies of the stores: the first validation and
    the first chunks in a process set up what later ones reuse (the contract's suite, compiled
    queries), which would count against whichever run came first."""
    import pandas as pd

    batch = _import("serving.batch")
    few = folder / "warm-up.parquet"
    pd.read_parquet(path).head(2_000).to_parquet(few, index=False)
    env = store_copy(cfg, folder, "warm-up")
    batch.run(
        cfg, few, folder / "warm-up-out.parquet", env=env, chunk_rows=500, log_writer="inline"
    )


def predict(cfg, path: Path, out: Path, env: dict, chunk_rows: int, log_writer: str) -> dict:
    """``serving.batch.run`` on the file, with the CPU of each scoring phase (the writer
    process's as one phase: it builds the log rows and commits them)."""
    batch = _import("serving.batch")
    clock = PhaseClock()
    scorer_init = batch._Scorer.__init__
    scorers = []

    def instrumented(scorer, *args, **kwargs):
        scorer_init(scorer, *args, **kwargs)
        scorers.append(scorer)
        if scorer.store is not None:
            scorer.store.lookup = clock.wrap("entity history", scorer.store.lookup)
        bundle = scorer.model.bundle
        bundle.transform = clock.wrap("features", bundle.transform)
        bundle.score_transformed = clock.wrap("model", bundle.score_transformed)
        bundle.labels_for = clock.wrap("model", bundle.labels_for)
        scorer.log_rows.features = clock.wrap("monitored values", scorer.log_rows.features)
        scorer.log_rows.context = clock.wrap("log rows", scorer.log_rows.context)
        scorer.log.record = clock.wrap("log commit", scorer.log.record)
        scorer.log.served_predictions = clock.wrap("log lookup", scorer.log.served_predictions)
        if log_writer == "process":
            scorer.writer.submit = clock.wrap("log hand-off", scorer.writer.submit)

    batch._Scorer.__init__ = instrumented
    try:
        cpu = time.thread_time()
        result = batch.run(
            cfg, path, out, env=env, chunk_rows=chunk_rows, progress=True, log_writer=log_writer
        )
        cpu = time.thread_time() - cpu
    finally:
        batch._Scorer.__init__ = scorer_init
    assert result.log_writer == log_writer, result.log_writer
    writer_cpu = sum(s.writer.cpu_s for s in scorers)
    if writer_cpu:
        clock.cpu["log writer process"] = writer_cpu
    scored = max(result.scored, 1)
    phases = {k: round(v * 1000 / scored, 4) for k, v in clock.cpu.most_common()}
    return {
        **result.to_dict(),
        "cpu_ms_per_record": round((cpu + writer_cpu) * 1000 / max(result.rows, 1), 4),
        "writer_cpu_ms_per_record": round(writer_cpu * 1000 / max(result.rows, 1), 4),
        "phases_cpu_ms_per_record": phases,
    }


WRITERS = {"process": "log beside", "inline": "log in turn"}


def table(results: dict) -> list[str]:
    """Rates as shares of the ceiling's, and CPU per record as multiples of the ceiling's."""
    top = results["ceiling"]
    rate, cpu = max(top["records_per_s"], 1), top["cpu_ms_per_record"]
    lines = [
        f"{'':40s} {'records/s':>10s} {'share':>7s} {'CPU ms/rec':>11s} {'x ceiling':>10s}",
        f"{'ceiling: features + model, at once':40s} {top['records_per_s']:>10,} {1:>7.0%} "
        f"{cpu:>11.4f} {1:>10.2f}",
    ]
    for writer, name in WRITERS.items():
        run = results["predict"][writer]
        lines += [
            f"{f'predict, {name}: scoring':40s} {run['records_per_s']:>10,} "
            f"{run['records_per_s'] / rate:>7.0%}",
            f"{f'predict, {name}: file to file':40s} {run['overall_records_per_s']:>10,} "
            f"{run['overall_records_per_s'] / rate:>7.0%} {run['cpu_ms_per_record']:>11.4f} "
            f"{run['cpu_ms_per_record'] / max(cpu, 1e-9):>10.2f}",
        ]
    for writer, name in WRITERS.items():
        run = results["predict"][writer]
        lines += [
            "",
            f"predict, {name}: CPU ms per record by phase (validation {run['validation_s']:.1f} s):",
        ]
        for phase, ms in run["phases_cpu_ms_per_record"].items():
            lines.append(f"  {phase:20s} {ms:8.4f}")
    lines += ["", f"share of the ceiling while scoring, by round ({len(results['rounds'])}):"]
    for writer, name in WRITERS.items():
        shares = [r["share_of_ceiling"][writer] for r in results["rounds"]]
        each = ", ".join(f"{share:.0%}" for share in shares)
        median = results["median_share_of_ceiling"][writer]
        lines.append(f"  predict, {name}: {each} (median {median:.0%})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="ceiling and predict, alternating")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_predict.json")
    args = parser.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, str(ROOT / "tests"))  # the sample project is a test fixture
    import sample_project as sample

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = Path(tmp)
        project = sample.sample_project(
            ROOT / "configs" / "system.yaml", root, rows=3000, challenger=False
        )
        cfg = project.cfg
        os.environ["MLFLOW_TRACKING_URI"] = cfg.tracking_uri
        source = root / "records.parquet"
        records_after(cfg, project, args.rows, source)
        warm_up(cfg, source, root)
        rounds = []
        for r in range(max(1, args.rounds)):
            rounds.append(
                {
                    "ceiling": ceiling(cfg, source, store_copy(cfg, root, f"ceiling-{r}")),
                    "predict": {
                        writer: predict(
                            cfg,
                            source,
                            root / f"predictions-{writer}-{r}.parquet",
                            store_copy(cfg, root, f"predict-{writer}-{r}"),
                            args.chunk_rows,
                            writer,
                        )
                        for writer in WRITERS
                    },
                }
            )
    for result in rounds:
        rate = max(result["ceiling"]["records_per_s"], 1)
        for run in result["predict"].values():
            run.pop("output", None)
            run["share_of_ceiling"] = round(run["records_per_s"] / rate, 3)
    results = {
        **rounds[-1],  # the last round in full
        "rounds": [
            {
                "ceiling_records_per_s": result["ceiling"]["records_per_s"],
                "share_of_ceiling": {
                    w: run["share_of_ceiling"] for w, run in result["predict"].items()
                },
            }
            for result in rounds
        ],
    }
    results["median_share_of_ceiling"] = {
        writer: statistics.median(r["share_of_ceiling"][writer] for r in results["rounds"])
        for writer in WRITERS
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n".join(table(results)))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
