"""What every command shares: the consoles, the contract option and loading it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..config import ConfigError, SystemConfig, load_config

# soft_wrap: paths and summaries stay on one line when output is piped or logged.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

# Exit code of `promote --strict` when the gate rejects the candidate: distinct from 1 (a check
# or a run failed) and 2 (bad input), so `make train` and schedulers can tell "the model is not
# good enough" from "something broke".
GATE_REJECTED = 5
# Going on past a rejected model (without --strict, ALLOW_REJECTED=1) keeps the current champion;
# with none there is nothing to serve, which later steps would only find out one by one.
NO_CHAMPION = (
    "no model is the champion yet, so nothing can be served: a model must pass the gate first "
    "(see the checks above, and configs/system.yaml's metrics.offline targets)"
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Contract file [default: $SYSTEM_CONFIG or configs/system.yaml]"
    ),
]

LogUrl = Annotated[
    str | None,
    typer.Option(help="Prediction log URL [default: $PREDICTION_LOG_URL or the contract's]"),
]


def existing_log(cfg: SystemConfig, url: str | None) -> str | None:
    """``url`` (a --log-url, else $PREDICTION_LOG_URL) when it names a prediction log that
    exists: a command that only reads the log must not create one under a mistyped path, or
    inside another SQLite database, and report on nothing. The contract's own log may not
    exist yet (no traffic): that is a report of no data."""
    import os
    import sqlite3

    import sqlalchemy as sa

    from ..stores import PREDICTION_LOG_ENV

    given, where = (
        (url, "--log-url") if url else (os.environ.get(PREDICTION_LOG_ENV), PREDICTION_LOG_ENV)
    )
    parsed = sa.engine.make_url(cfg.sqlite_url(given)) if given else None
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            return url
        if not Path(database).is_file():
            raise fail(f"{where} {given}: no prediction log there")
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("select name from sqlite_master")}
        except sqlite3.DatabaseError as exc:
            raise fail(f"{where} {given}: not a SQLite database ({exc})") from exc
        finally:
            conn.close()
        if tables and "predictions" not in tables:
            raise fail(f"{where} {given}: a database without a predictions table, not a log")
    return url


def load(config: Path | None) -> SystemConfig:
    """Load the contract or exit 2 with the problems, one per line."""
    try:
        return load_config(config)
    except ConfigError as exc:
        errors.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from exc


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` on stderr and return the Exit to raise (2: bad input, 1: check failed)."""
    errors.print(f"[red]{message}[/red]", highlight=False)
    return typer.Exit(code)
