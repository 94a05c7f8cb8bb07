"""A private PostgreSQL server for the tests: the distribution's server binaries, a data folder
in a temporary directory, trust authentication on 127.0.0.1 and a free port.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user (which the
distribution's package creates). Without server binaries the tests that need one FAIL with a
message saying how to install them, unless ``POSTGRES_TESTS=skip``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SKIP_ENV = "POSTGRES_TESTS"
BIN_ENV = "POSTGRES_BIN"  # a folder holding initdb and pg_ctl, when not the distribution's
SUPERUSER = "postgres"
INSTALL_HINT = (
    "no PostgreSQL server binaries (initdb, pg_ctl): install them with "
    "`apt-get install -y postgresql` (Debian/Ubuntu), or point POSTGRES_BIN at their folder, "
    "or set POSTGRES_TESTS=skip to skip the PostgreSQL tests"
)


class PostgresUnavailable(RuntimeError):
    pass


def server_bin() -> Path | None:
    """The folder with initdb and pg_ctl: $POSTGRES_BIN, the newest distribution one, or PATH."""
    candidates = [os.environ.get(BIN_ENV, "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    found = shutil.which("initdb")
    candidates.append(str(Path(found).parent) if found else "")
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``start()``, then ``database(name)`` gives a ``postgresql://`` URL; ``stop()`` at the end."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-test-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.as_user: list[str] = []
        self.started = False
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SUPERUSER)
            except KeyError as exc:
                raise PostgresUnavailable(
                    "running as root and no `postgres` user to run the server as "
                    "(`apt-get install -y postgresql` creates it)"
                ) from exc
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", SUPERUSER, "--"]

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self.as_user, *command], capture_output=True, text=True, timeout=120
        )
        if done.returncode:
            log = self.log.read_text() if self.log.is_file() else ""
            raise PostgresUnavailable(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()} {log}"
            )

    def start(self) -> PostgresServer:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        """A plain ``postgresql://`` URL, as a user writes it in the Secret."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def database(self, name: str) -> str:
        """Create the database ``name`` (dropping an earlier one); its URL."""
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


def start_server() -> PostgresServer:
    """A started server; raises :class:`PostgresUnavailable` saying how to get one."""
    bin_dir = server_bin()
    if bin_dir is None:
        raise PostgresUnavailable(INSTALL_HINT)
    server = PostgresServer(bin_dir)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise
