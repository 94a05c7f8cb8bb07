"""SQLite databases written on the request path: commits never checkpoint, a thread does."""

import sqlite3
import threading
import time

import sqlalchemy as sa

from {{cookiecutter.package_name}}.features.store_backend import SqlBackend
from {{cookiecutter.package_name}}.predlog.store import PredictionLog
from {{cookiecutter.package_name}}.sqlite_wal import JOURNAL_SIZE_LIMIT, use_wal

PAGE = 4096
AUTO_CHECKPOINT_PAGES = 1000  # SQLite's default, which use_wal turns off


def blob_table(path, *, interval_s, **options):
    engine = sa.create_engine(f"sqlite:///{path}")
    checkpointer = use_wal(engine, str(path), interval_s=interval_s, **options)
    table = sa.Table("t", sa.MetaData(), sa.Column("v", sa.LargeBinary))
    table.metadata.create_all(engine)
    return engine, checkpointer, table


def write_pages(engine, table, pages: int) -> None:
    """One commit per page-sized row, as the prediction log commits once per request."""
    for _ in range(pages):
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"v": b"x" * PAGE}])


def test_commits_leave_checkpoints_to_the_thread(tmp_path):
    path = tmp_path / "db.sqlite"
    # The thread's first round is an hour away: only commits could checkpoint here.
    engine, checkpointer, table = blob_table(path, interval_s=3600)
    try:
        write_pages(engine, table, int(AUTO_CHECKPOINT_PAGES * 1.5))
        wal = path.with_name(path.name + "-wal")
        # With automatic checkpoints the log would restart at 1,000 pages; here it kept growing
        # and the rows are still only in the log.
        assert wal.stat().st_size > AUTO_CHECKPOINT_PAGES * 1.4 * PAGE
        assert path.stat().st_size < 100 * PAGE

        busy, frames, copied = checkpointer.checkpoint()
        assert busy == 0 and frames > AUTO_CHECKPOINT_PAGES and copied == frames
        assert path.stat().st_size > AUTO_CHECKPOINT_PAGES * PAGE
    finally:
        checkpointer.close()
        engine.dispose()


def test_the_thread_checkpoints_on_its_own(tmp_path):
    path = tmp_path / "db.sqlite"
    engine, checkpointer, table = blob_table(path, interval_s=0.05)
    try:
        write_pages(engine, table, 300)
        deadline = time.monotonic() + 10

        def copied() -> bool:
            # The file grows while a checkpoint runs; the count moves when it has returned.
            return path.stat().st_size >= 300 * PAGE and checkpointer.checkpoints >= 1

        while not copied() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert copied()
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 300
    finally:
        checkpointer.close()
        engine.dispose()
    assert not checkpointer._thread.is_alive()


def test_the_log_starts_over_under_steady_commits(tmp_path):
    """Commits that never pause leave a PASSIVE checkpoint no moment where every frame is
    copied, so without the RESTART the log file would hold every page ever written."""
    path = tmp_path / "db.sqlite"
    wal = path.with_name(path.name + "-wal")
    engine, checkpointer, table = blob_table(path, interval_s=0.02, restart_frames=200)
    stop, commits, largest = threading.Event(), [0], [0]

    def commit_without_pause():
        with engine.connect() as conn:
            while not stop.is_set():
                with conn.begin():
                    conn.execute(table.insert(), [{"v": b"x" * PAGE}])
                commits[0] += 1
                largest[0] = max(largest[0], wal.stat().st_size)

    def rewound() -> bool:
        # A page-sized row takes two pages (the row's own and an overflow page) a commit.
        return checkpointer.restarts >= 3 and largest[0] * 4 < commits[0] * 2 * PAGE

    writer = threading.Thread(target=commit_without_pause)
    try:
        writer.start()
        deadline = time.monotonic() + 20
        while not rewound() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        writer.join()
        assert rewound(), (checkpointer.restarts, largest[0], commits[0])
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == commits[0]
    finally:
        stop.set()
        checkpointer.close()
        engine.dispose()


def test_prediction_log_and_entity_store_use_it(tmp_path):
    log = PredictionLog(f"sqlite:///{tmp_path}/log.db")
    store = SqlBackend(f"sqlite:///{tmp_path}/store.db")
    try:
        for engine in (log.engine, store.engine):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
                limit = conn.exec_driver_sql("PRAGMA journal_size_limit").scalar()
                assert limit == JOURNAL_SIZE_LIMIT
        threads = [log._checkpointer._thread, store._checkpointer._thread]
        assert all(thread.is_alive() for thread in threads)
    finally:
        log.close()
        store.close()
    assert not any(thread.is_alive() for thread in threads)


def test_in_memory_databases_keep_sqlite_defaults():
    log = PredictionLog("sqlite://")
    try:
        assert log._checkpointer is None
        with log.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    finally:
        log.close()
