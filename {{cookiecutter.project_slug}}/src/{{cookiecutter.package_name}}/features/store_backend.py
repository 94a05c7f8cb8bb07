"""Storage backends of the entity store (SQL through SQLAlchemy; the seam for Redis and others).

A backend stores three things: per-entity aggregates, send times and snapshot metadata, and
offers four operations: ``read_meta``, ``load`` (states of some entities), ``append_sends`` and
``replace`` (swap in a new snapshot atomically). ``EntityStore`` holds the cache and the
point-in-time arithmetic; a Redis or feature-store backend only implements these four methods
and is selected by URL scheme in ``backend_for``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..sqlite_wal import use_wal

_IN_CHUNK = 500  # entities per IN (...) query
_SQLITE_APPEND_SENDS = "INSERT INTO entity_sends (entity, t_ns) VALUES (?, ?)"
_SQLITE_STATS = (
    "SELECT entity, base_count, past_labeled, past_positive, last_seen_ns, created_ns "
    "FROM entity_stats"
)
_SQLITE_SENDS = "SELECT entity, t_ns FROM entity_sends"
_SQLITE_FOLDED = "SELECT entity, count(*), max(t_ns) FROM entity_sends"


@dataclass
class EntityState:
    """What the store knows about one entity (``times``: sorted recent send times, ns)."""

    base_count: int = 0
    past_labeled: int = 0
    past_positive: int = 0
    last_seen_ns: int | None = None
    created_ns: float = math.nan
    times: list[int] = field(default_factory=list)
    loaded_at: float = 0.0


@dataclass(frozen=True)
class StoreMeta:
    """The snapshot's instant and the prior of its smoothed rates."""

    as_of_ns: int | None
    prior_rate: float
    prior_strength: float


class SqlBackend:
    """Storage of the entity store in a SQL database through SQLAlchemy Core."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        kwargs: dict = {}
        if url.startswith("sqlite"):
            database = sa.engine.make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            else:  # one shared in-memory database for every connection
                kwargs = {"poolclass": sa.pool.StaticPool}
                kwargs["connect_args"] = {"check_same_thread": False}
        self.engine = sa.create_engine(url, **kwargs)
        self._checkpointer = None
        self._sqlite = url.startswith("sqlite")
        if self._sqlite:
            # WAL: serving processes read while a training run materializes; NORMAL is durable
            # in WAL. Live sends are written on the request path: no checkpoint there.
            self._checkpointer = use_wal(self.engine, database, synchronous="NORMAL")
        meta = sa.MetaData()
        self.stats = sa.Table(
            "entity_stats",
            meta,
            sa.Column("entity", sa.String, primary_key=True),
            sa.Column("base_count", sa.BigInteger, nullable=False),
            sa.Column("past_labeled", sa.BigInteger, nullable=False),
            sa.Column("past_positive", sa.BigInteger, nullable=False),
            sa.Column("last_seen_ns", sa.BigInteger),
            sa.Column("created_ns", sa.Float),
        )
        self.sends = sa.Table(
            "entity_sends",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("entity", sa.String, nullable=False),
            sa.Column("t_ns", sa.BigInteger, nullable=False),
            sa.Index("ix_entity_sends_entity_t", "entity", "t_ns"),
        )
        self.meta = sa.Table(
            "entity_meta",
            meta,
            sa.Column("key", sa.String, primary_key=True),
            sa.Column("value", sa.String, nullable=False),
        )
        meta.create_all(self.engine)

    def read_meta(self) -> dict[str, str]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(self.meta.c.key, self.meta.c.value)).all())

    def load(self, entities: list[str], since_ns: int | None = None) -> dict[str, EntityState]:
        """States of ``entities`` known to the store (absent entities are left out).

        ``since_ns``: sends before it come folded into ``base_count`` and ``last_seen_ns``,
        counted by the database, as ``store._fold`` folds sends out of a cached state: an
        entity's sends since the snapshot are only deleted by the next one, so a busy entity
        would otherwise load every one of them (hundreds of thousands over a week of traffic)
        where the windows need a day's."""
        out: dict[str, EntityState] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(entities), _IN_CHUNK):
                stats, folded, sends = self._states_of(conn, entities[i : i + _IN_CHUNK], since_ns)
                for entity, base, labeled, positive, last_seen, created in stats:
                    out[entity] = EntityState(
                        base_count=int(base),
                        past_labeled=int(labeled),
                        past_positive=int(positive),
                        last_seen_ns=None if last_seen is None else int(last_seen),
                        created_ns=math.nan if created is None else float(created),
                    )
                for entity, count, newest in folded:
                    state = out.setdefault(entity, EntityState())
                    state.base_count += int(count)
                    if state.last_seen_ns is None or state.last_seen_ns < int(newest):
                        state.last_seen_ns = int(newest)
                for entity, t_ns in sends:
                    out.setdefault(entity, EntityState()).times.append(int(t_ns))
        return out

    def _states_of(self, conn, chunk: list[str], since_ns: int | None):
        """The stats rows, the (entity, count, newest) of the sends before ``since_ns`` and the
        later sends (in entity and time order) of ``chunk``'s entities. On SQLite as its own
        SQL: SQLAlchemy's rendering of an IN of hundreds of values cost more than SQLite's
        lookups."""
        since = -(2**63) if since_ns is None else int(since_ns)
        if self._sqlite:
            marks = ", ".join("?" * len(chunk))
            keys = tuple(chunk)
            return (
                conn.exec_driver_sql(f"{_SQLITE_STATS} WHERE entity IN ({marks})", keys),
                conn.exec_driver_sql(
                    f"{_SQLITE_FOLDED} WHERE entity IN ({marks}) AND t_ns < ? GROUP BY entity",
                    (*keys, since),
                ),
                conn.exec_driver_sql(
                    f"{_SQLITE_SENDS} WHERE entity IN ({marks}) AND t_ns >= ? ORDER BY entity, t_ns",
                    (*keys, since),
                ),
            )
        import sqlalchemy as sa

        s, c = self.stats.c, self.sends.c
        stats = sa.select(
            s.entity, s.base_count, s.past_labeled, s.past_positive, s.last_seen_ns, s.created_ns
        ).where(s.entity.in_(chunk))
        folded = (
            sa.select(c.entity, sa.func.count(), sa.func.max(c.t_ns))
            .where(c.entity.in_(chunk), c.t_ns < since)
            .group_by(c.entity)
        )
        sends = (
            sa.select(c.entity, c.t_ns)
            .where(c.entity.in_(chunk), c.t_ns >= since)
            .order_by(c.entity, c.t_ns)
        )
        return conn.execute(stats), conn.execute(folded), conn.execute(sends)

    def append_sends(self, sends: list[tuple[str, int]]) -> None:
        if not sends:
            return
        with self.engine.begin() as conn:
            if self._sqlite:  # the driver takes the tuples as they are, where SQLAlchemy's
                # per-row parameter processing costs more than SQLite's insert
                conn.exec_driver_sql(_SQLITE_APPEND_SENDS, sends)
            else:
                conn.execute(self.sends.insert(), [{"entity": s, "t_ns": t} for s, t in sends])

    def replace(self, stats: list[dict], sends: list[dict], meta: dict[str, str], as_of_ns: int):
        """Swap in a new snapshot in one transaction; live sends at or after as_of are kept."""
        with self.engine.begin() as conn:
            conn.execute(self.stats.delete())
            conn.execute(self.sends.delete().where(self.sends.c.t_ns < as_of_ns))
            conn.execute(self.meta.delete())
            for table, rows in ((self.stats, stats), (self.sends, sends)):
                for i in range(0, len(rows), 50_000):
                    conn.execute(table.insert(), rows[i : i + 50_000])
            conn.execute(self.meta.insert(), [{"key": k, "value": v} for k, v in meta.items()])

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()


def backend_for(url: str) -> SqlBackend:
    if url.startswith(("redis://", "rediss://")):
        raise NotImplementedError(
            f"{url}: no Redis backend yet; implement SqlBackend's read_meta/load/append_sends/"
            "replace for it and select it in features/store_backend.py:backend_for"
        )
    return SqlBackend(url)
