"""SQLite databases written on the request path: WAL mode, checkpoints off the request path.

Every request writes the prediction log and the entity store. In WAL mode a commit only appends
to the log file (no fsync at ``synchronous=NORMAL``); copying the log back into the database (a
"checkpoint", which fsyncs) is done by SQLite inside whichever commit takes the log past 1,000
pages, so every few hundred requests one waits for the disk. On the machine the benchmarks ran
on an fsync usually took 1-3 ms and one in ten over 100 ms. Here no commit checkpoints
(``wal_autocheckpoint=0``): a daemon thread per database does it every second in PASSIVE mode,
which never blocks a reader or a writer (what it cannot copy waits for the next round).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0


def use_wal(
    engine,
    database: str | None,
    *,
    synchronous: str = "NORMAL",
    interval_s: float = CHECKPOINT_INTERVAL_S,
) -> Checkpointer | None:
    """Open every connection of ``engine`` in WAL mode without automatic checkpoints.

    ``database``: the file behind ``engine`` (``None`` or ``":memory:"`` for an in-memory
    database, which has no log to checkpoint). Returns the started :class:`Checkpointer` (the
    caller closes it before disposing of the engine), or ``None``.
    """
    import sqlalchemy as sa

    on_file = bool(database) and database != ":memory:"
    checkpointer = Checkpointer(database, interval_s) if on_file else None

    def pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        if on_file:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    sa.event.listen(engine, "connect", pragmas)
    return checkpointer


class Checkpointer:
    """Checkpoints one SQLite database every ``interval_s`` seconds, on a daemon thread."""

    def __init__(self, database: str, interval_s: float = CHECKPOINT_INTERVAL_S):
        self.database = database
        self.interval_s = interval_s
        self.checkpoints = 0
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint now: (busy, frames in the log, frames copied to the file)."""
        with self._lock:
            if self._connection is None:
                # mode=rw: never create the file (its owner creates the schema).
                uri = f"{Path(self.database).resolve().as_uri()}?mode=rw"
                self._connection = sqlite3.connect(
                    uri, uri=True, timeout=5, check_same_thread=False
                )
            busy, frames, copied = self._connection.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
            self.checkpoints += 1
            return busy, frames, copied

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.checkpoint()
            except sqlite3.Error as exc:  # busy, or not created yet: next round
                logger.debug("checkpoint of %s skipped: %s", self.database, exc)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (the last connection to close checkpoints what is left)."""
        self._stop.set()
        self._thread.join(timeout)
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
