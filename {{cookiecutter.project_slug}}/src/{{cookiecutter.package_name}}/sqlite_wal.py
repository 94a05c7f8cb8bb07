"""SQLite databases written on the request path: WAL mode, checkpoints off the request path.

Every request writes the prediction log and the entity store. In WAL mode a commit only appends
to the log file (no fsync at ``synchronous=NORMAL``); copying the log back into the database (a
"checkpoint", which fsyncs) is done by SQLite inside whichever commit takes the log past 1,000
pages, so every few hundred requests one waits for the disk. On the machine the benchmarks ran
on an fsync usually took 1-3 ms and one in ten over 100 ms. Here no commit checkpoints
(``wal_autocheckpoint=0``): a daemon thread per database does it every second in PASSIVE mode,
which never blocks a reader or a writer (what it cannot copy waits for the next round).

A PASSIVE checkpoint alone never lets the log start over under steady traffic: SQLite rewinds
the log only when a write begins after every frame was copied, and a commit always lands while
the copy runs. The log would grow by every byte ever written (gigabytes an hour at the serving
targets), and every commit would extend the file. So once the log holds ``restart_frames``
frames, the thread follows its PASSIVE round with a RESTART checkpoint that does not wait
(busy timeout 0): it holds writers back only while it copies the frames committed since the
round began and syncs, and when a commit or a reader is in the way it gives up until the next
round. After a restart the next commit writes from the top of the file, which SQLite cuts back
to ``journal_size_limit`` bytes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0
# A log past this many frames (pages, 4 KiB by default) is restarted after the PASSIVE round.
# A restart holds writers back for its last copy and sync (and the busy handler's sleeps):
# rare enough at this size to stay out of the p99.
RESTART_FRAMES = 65_536
# What a restarted log file is cut back to (SQLite's default keeps the largest it ever reached):
# twice the restart size, so a steady log is not cut and grown again every round.
JOURNAL_SIZE_LIMIT = 2 * RESTART_FRAMES * 4096


def use_wal(
    engine,
    database: str | None,
    *,
    synchronous: str = "NORMAL",
    interval_s: float = CHECKPOINT_INTERVAL_S,
    restart_frames: int = RESTART_FRAMES,
) -> Checkpointer | None:
    """Open every connection of ``engine`` in WAL mode without automatic checkpoints.

    ``database``: the file behind ``engine`` (``None`` or ``":memory:"`` for an in-memory
    database, which has no log to checkpoint). Returns the started :class:`Checkpointer` (the
    caller closes it before disposing of the engine), or ``None``.
    """
    import sqlalchemy as sa

    on_file = bool(database) and database != ":memory:"
    checkpointer = Checkpointer(database, interval_s, restart_frames) if on_file else None

    def pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        if on_file:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        cursor.close()

    sa.event.listen(engine, "connect", pragmas)
    return checkpointer


class Checkpointer:
    """Checkpoints one SQLite database every ``interval_s`` seconds, on a daemon thread."""

    def __init__(
        self,
        database: str,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        restart_frames: int = RESTART_FRAMES,
    ):
        self.database = database
        self.interval_s = interval_s
        self.restart_frames = restart_frames
        self.checkpoints = 0
        self.restarts = 0
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint now: (busy, frames in the log, frames copied to the file)."""
        with self._lock:
            busy, frames, copied = self._execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.checkpoints += 1
            return busy, frames, copied

    def restart(self) -> bool:
        """Copy what is left and rewind the log, without waiting for a writer or a reader;
        False when one was in the way (the log then goes on growing until the next try)."""
        with self._lock:
            busy, _, _ = self._execute("PRAGMA wal_checkpoint(RESTART)")
            self.restarts += not busy
            return not busy

    def _execute(self, sql: str) -> tuple[int, int, int]:
        if self._connection is None:
            # mode=rw: never create the file (its owner creates the schema). Timeout 0: a
            # RESTART must give up at once rather than hold writers back while it waits.
            uri = f"{Path(self.database).resolve().as_uri()}?mode=rw"
            self._connection = sqlite3.connect(uri, uri=True, timeout=0, check_same_thread=False)
        return self._connection.execute(sql).fetchone()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                _, frames, _ = self.checkpoint()
                if frames >= self.restart_frames:
                    self.restart()
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
