"""Batch scoring's prediction log, written beside the scoring instead of in turn with it.

Logging a chunk (the per-row input signals, the entries, the commit) costs batch scoring as
much CPU as its features and model, or more: done in turn, it is half the scoring time or more. So
:class:`ProcessLogWriter` hands each scored chunk to a second process, which builds its entries
with the same :class:`~.logrows.LogRows` and commits them while the next chunk is scored (a
thread would not do: most of that work holds the interpreter lock). At most one chunk is in
flight: :meth:`submit` first waits until the previous one is committed, and :meth:`finish`
until the last one is, so a run that ends has every prediction in the log, and a failed commit
stops the run at the next chunk with its reason. :class:`InlineLogWriter` commits in turn: for
a single chunk or a single core.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pandas as pd

from ..predlog.store import PredictionLog
from .logrows import LogRows, ModelStamp


class LogWriterError(RuntimeError):
    """The process writing the prediction log failed; the chunks after the last committed one
    are not in the log."""


@dataclass
class LogChunk:
    """A scored chunk as its log entries need it (``rows``: the columns ``LogRows`` reads)."""

    request_ids: list[str]
    message_ids: list
    entities: list
    rows: pd.DataFrame
    features: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    now: datetime


def commit(log_rows: LogRows, log: PredictionLog, model: ModelStamp, chunk: LogChunk) -> set[str]:
    """Build the chunk's entries and commit them; returns the request ids the log left out."""
    context = log_rows.context(
        chunk.request_ids, chunk.message_ids, chunk.entities, chunk.rows, chunk.features, chunk.now
    )
    return log.record(context.entries(model, chunk.scores, chunk.labels, True, None))


class InlineLogWriter:
    """Commits each chunk when it is submitted."""

    def __init__(self, log: PredictionLog):
        self.log = log
        self.cpu_s = 0.0  # CPU spent elsewhere than the scoring thread: none
        self._setup: tuple[LogRows, ModelStamp] | None = None

    def start(self, log_rows: LogRows, model: ModelStamp, url: str, fsync: bool | None = None):
        self._setup = (log_rows, model)

    def submit(self, chunk: LogChunk) -> None:
        log_rows, model = self._setup
        commit(log_rows, self.log, model, chunk)

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class ProcessLogWriter:
    """Commits chunks in a second process, one chunk behind the scoring.

    The process starts at construction (its imports overlap the caller's validation);
    :meth:`start` gives it the log and what the entries need. It runs ``python -m`` this
    module, not a ``multiprocessing`` child, which would run the caller's script again (a script
    without a ``__main__`` guard would start a writer of its own), and in a session of its own:
    Ctrl-C is the scoring process's to handle, and the writer ends when its socket closes.
    ``cpu_s``: the CPU seconds its main thread has spent up to its last answer, its start-up
    included: what the second core costs (without the log's checkpoint thread).
    """

    def __init__(self):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            path = os.pathsep.join(p for p in sys.path if p)
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": path},
                start_new_session=True,
            )
            self._conn = Connection(ours.detach())
        self._pending = False
        self._started = False
        self._hand_off: threading.Thread | None = None
        self._send_error: OSError | None = None
        self.cpu_s = 0.0

    def start(
        self, log_rows: LogRows, model: ModelStamp, url: str, fsync: bool | None = None
    ) -> None:
        self._send(("start", (log_rows, model, url, fsync)))
        self._started = True

    def submit(self, chunk: LogChunk) -> None:
        """Hand ``chunk`` over once the previous one is committed. The chunk is pickled here,
        and a thread writes it to the socket: the write returns only once the writer process
        has read most of it (tens of ms for a chunk, in steps of the socket's buffer), time
        the scoring thread spends on the next chunk instead."""
        self._wait()
        payload = ForkingPickler.dumps(("chunk", chunk))
        self._hand_off = threading.Thread(
            target=self._send_payload, args=(payload,), name="log-hand-off", daemon=True
        )
        self._hand_off.start()
        self._pending = True

    def _send_payload(self, payload) -> None:
        try:
            self._conn.send_bytes(payload)
        except OSError as exc:
            self._send_error = exc

    def finish(self) -> None:
        """Wait for the last commit, then ask the process to stop (raises if that commit
        failed). The process ends on its own; :meth:`close` waits for it."""
        if self._conn.closed:
            return
        try:
            self._wait()
        finally:
            with suppress(OSError):  # it stopped already
                self._conn.send(("stop", None))
            self._conn.close()

    def close(self) -> None:
        """:meth:`finish`, then wait until the process has ended (stopped at once if it
        was never started: it has opened nothing)."""
        if not self._started:
            self._process.kill()
        try:
            self.finish()
        finally:
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _send(self, message) -> None:
        self._wait()
        try:
            self._conn.send(message)
        except OSError as exc:
            raise self._failure(f"could not hand it a chunk ({exc})") from exc
        self._pending = True

    def _wait(self) -> None:
        if not self._pending:
            return
        self._pending = False
        hand_off, self._hand_off = self._hand_off, None
        if hand_off is not None:
            hand_off.join()
            error, self._send_error = self._send_error, None
            if error is not None:
                raise self._failure(f"could not hand it a chunk ({error})") from error
        try:
            status, detail = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._failure("it stopped without an answer") from exc
        if status != "ok":
            raise self._failure(detail)
        self.cpu_s = detail

    def _failure(self, detail: str) -> LogWriterError:
        code = self._process.poll()
        exited = "" if code is None else f" (exit code {code})"
        return LogWriterError(f"the prediction log writer failed{exited}: {detail}")


def serve(conn: Connection) -> None:
    """The writer process: answers each message with ("ok", its main thread's CPU seconds so
    far) or ("error", why), after which it stops. "start" opens the log, once the scoring
    process has opened it (which creates the tables)."""
    log: PredictionLog | None = None
    setup: tuple[LogRows, ModelStamp] | None = None
    # A process's first log (SQLAlchemy's dialect, tables and statements) costs more than a
    # chunk's commit: an in-memory one pays for it while the scoring process reads and validates.
    PredictionLog("sqlite://").close()
    try:
        while True:
            try:
                kind, payload = conn.recv()
            except EOFError:  # the scoring process went away
                return
            if kind == "stop":
                return
            try:
                if kind == "start":
                    log_rows, model, url, fsync = payload
                    setup = log_rows, model
                    log = PredictionLog(url, fsync=fsync)
                else:
                    commit(setup[0], log, setup[1], payload)
            except Exception as exc:
                conn.send(("error", traceback.format_exception_only(exc)[-1].strip()))
                return
            conn.send(("ok", time.thread_time()))
    finally:
        if log is not None:
            log.close()
        conn.close()


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
