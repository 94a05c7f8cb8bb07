"""The entity store: per-entity aggregates that serving reads instead of the training data.

A training run ``materialize``s, as of an instant, each entity's history (counts, labels known,
last send, account creation time) and its send times of the last 24 hours. At request time
``lookup`` answers ``HISTORY_COLUMNS`` for each row exactly as ``attach_history`` computes them
offline over the same records, then records the row as a send, so velocity keeps moving.

Layout (SQLAlchemy, SQLite by default; any SQL database works):

``entity_stats``  entity, base_count, past_labeled, past_positive, last_seen_ns, created_ns
``entity_sends``  entity, t_ns: recent sends (materialized) and sends seen since (live)
``entity_meta``   as_of, prior_rate, prior_strength, rows, entities

An entity's past count at time t is ``base_count`` plus its sends before t. An in-process cache
keeps each entity's state for ``serving.entity_cache_ttl_s``; live sends are written in batches
(on a miss, every ``flush_every`` sends, and on ``flush``/``close``), so a cache hit costs no
database round trip; states past their TTL leave the cache as it grows (``_forget_expired``).
Several serving processes share the database; each sees the others' sends once its cache entry
expires. Another backend (Redis, a feature store) implements the four methods of
``store_backend.SqlBackend`` and is chosen by URL scheme in ``backend_for``.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left, insort
from itertools import chain

import numpy as np
import pandas as pd

from ..entity_history import (
    _NS_PER_DAY,
    _NS_PER_SECOND,
    VELOCITY_WINDOWS,
    TimeLike,
    _instant_ns,
    _ns,
    _ns_optional,
    snapshot_entity_stats,
)
from ..tables import SMALL_FRAME, RecordTable, cells
from .history import HISTORY_COLUMNS, HistorySpec, history_spec
from .store_backend import EntityState, StoreMeta, backend_for

_WINDOWS_NS = {name: seconds * _NS_PER_SECOND for name, seconds in VELOCITY_WINDOWS.items()}
_KEEP_NS = max(_WINDOWS_NS.values())  # send times older than this never count in a window
_HISTORY_INDEX = pd.Index(HISTORY_COLUMNS)  # built once: an Index costs ~60 us per request
# From this many rows a lookup runs as array operations (batch scoring's chunks); a request or
# a server batch goes row by row, which costs less up to a few hundred rows.
_BLOCK_ROWS = 1024
# The cache is swept of expired states when it reaches this size, then each time it doubles.
_SWEEP_MIN = 4096


class EntityStore:
    """Entity aggregates for serving: ``materialize`` after training, ``lookup`` per request.

    ``url``: a SQLAlchemy URL (``cfg.sqlite_url(cfg.serving.entity_store_url)`` by default).
    ``cache_ttl_s``: overrides ``cfg.serving.entity_cache_ttl_s``. ``hits`` / ``misses``
    count cache lookups per row. Safe to share between threads.
    """

    def __init__(self, url: str, *, cache_ttl_s: float | None = None, flush_every: int = 256):
        self.url = url
        self.cache_ttl_s = cache_ttl_s
        self.flush_every = flush_every
        self.hits = 0
        self.misses = 0
        self._backend = backend_for(url)
        self._cache: dict[str, EntityState] = {}
        self._sweep_at = _SWEEP_MIN
        self._pending: list[tuple[str, int]] = []
        self._meta: StoreMeta | None = None
        self._meta_at = 0.0
        self._lock = threading.RLock()
        self._spec: tuple = (None, None)  # (contract, its history definition)

    @classmethod
    def from_config(cls, cfg, url: str | None = None, **kwargs) -> EntityStore:
        """The store the contract names (relative SQLite paths resolve under the project)."""
        return cls(cfg.sqlite_url(url or cfg.serving.entity_store_url), **kwargs)

    # -- writing -------------------------------------------------------------------------------

    def materialize(self, cfg, frame: pd.DataFrame, *, as_of: TimeLike) -> int:
        """Write every entity's history as of ``as_of`` from ``frame``; return the entity count.

        Records at or after ``as_of`` are ignored, labels count when their record is before
        it. Replaces the previous snapshot (so running it twice changes nothing); live sends
        at or after ``as_of`` are kept. Clears the cache.
        """
        spec = history_spec(cfg)
        at = _instant_ns(as_of)
        kwargs = spec.kwargs(frame)
        snapshot = snapshot_entity_stats(frame, **kwargs, as_of=as_of)
        times = _ns(frame[spec.timestamp], spec.timestamp)
        entities = frame[spec.entity]
        recent = (times >= at - _KEEP_NS) & (times < at) & entities.notna().to_numpy()
        recent_sends = pd.DataFrame({"entity": entities.to_numpy()[recent], "t_ns": times[recent]})
        recent_count = recent_sends.groupby("entity").size()

        stats = snapshot.rename(columns={spec.entity: "entity"})
        base = stats["past_count"].to_numpy() - recent_count.reindex(stats["entity"]).fillna(0)
        last_seen = stats["last_seen"].dt.tz_localize(None).astype("datetime64[ns]")
        if kwargs["created_at"] is not None:
            created = stats["created_at"].dt.tz_localize(None).astype("datetime64[ns]")
            created_ns = created.to_numpy().view("int64").astype("float64")
            created_ns[created.isna().to_numpy()] = np.nan
        else:
            created_ns = np.full(len(stats), np.nan)
        rows = [
            {
                "entity": str(entity),
                "base_count": int(b),
                "past_labeled": int(labeled),
                "past_positive": int(positive),
                "last_seen_ns": int(seen),
                "created_ns": None if math.isnan(c) else float(c),
            }
            for entity, b, labeled, positive, seen, c in zip(
                stats["entity"],
                base.to_numpy(),
                stats["past_labeled"],
                stats["past_positive"],
                last_seen.to_numpy().view("int64"),
                created_ns,
                strict=True,
            )
        ]
        sends = [
            {"entity": str(s), "t_ns": int(t)}
            for s, t in zip(recent_sends["entity"], recent_sends["t_ns"], strict=True)
        ]
        meta = {
            "as_of_ns": str(at),
            "as_of": pd.Timestamp(at, tz="UTC").isoformat(),
            "prior_rate": repr(spec.prior_rate),
            "prior_strength": repr(spec.prior_strength),
            "rows": str(int((times < at).sum())),
            "entities": str(len(rows)),
        }
        with self._lock:
            self.flush()  # our live sends at or after as_of survive the swap
            self._backend.replace(rows, sends, meta, at)
            self._cache.clear()
            self._meta = None
        return len(rows)

    def flush(self) -> None:
        """Write buffered live sends to the database."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._backend.append_sends(pending)

    def close(self) -> None:
        """Flush and release the database connections."""
        self.flush()
        self._backend.close()

    # -- reading -------------------------------------------------------------------------------

    def meta(self, spec: HistorySpec, ttl: float = math.inf) -> StoreMeta:
        """The snapshot's instant and prior (the contract's prior when never materialized).

        Re-read after ``ttl`` seconds, so a snapshot another process materialized is seen.
        """
        now = time.monotonic()
        if self._meta is None or now - self._meta_at >= ttl:
            self._meta_at = now
            raw = self._backend.read_meta()
            self._meta = StoreMeta(
                as_of_ns=int(raw["as_of_ns"]) if "as_of_ns" in raw else None,
                prior_rate=float(raw.get("prior_rate", spec.prior_rate)),
                prior_strength=float(raw.get("prior_strength", spec.prior_strength)),
            )
        return self._meta

    def _states(self, entities: list[str], ttl: float, t_ns: np.ndarray) -> set[str]:
        """Make every entity's state current in the cache; return the entities (re)loaded.

        Unknown entities get an empty (new entity) state, cached like any other. ``t_ns``: the
        rows' times. Sends before the earliest less the longest window are outside every window
        of every row and before each, so they load folded (``SqlBackend.load``).
        """
        now = time.monotonic()
        cache = self._cache
        stale = {s for s in entities if s not in cache or now - cache[s].loaded_at >= ttl}
        if stale:
            self.flush()  # the database must hold our own sends before we reload them
            since = int(t_ns.min()) - _KEEP_NS if len(t_ns) else None
            loaded = self._backend.load(sorted(stale), since)
            for entity in stale:
                state = loaded.get(entity) or EntityState()
                state.loaded_at = now
                cache[entity] = state
            if len(cache) >= self._sweep_at:
                self._forget_expired(now, ttl, stale)
        return stale

    def _forget_expired(self, now: float, ttl: float, keep: set[str]) -> None:
        """Drop the states past their TTL but those of ``keep`` (the rows being looked up): a
        later row of one reloads it, after a flush, as it would reload an expired state. So a
        long-running server holds the entities of the last TTL, not every entity it ever saw.
        A sweep runs each time the cache has doubled since the last: O(1) per state loaded."""
        cache = self._cache
        expired = [e for e, s in cache.items() if now - s.loaded_at >= ttl and e not in keep]
        for entity in expired:
            del cache[entity]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(cache))

    def lookup(self, cfg, rows: pd.DataFrame | RecordTable, *, record: bool = True):
        """``rows`` (same index and order) plus ``HISTORY_COLUMNS`` as of each row's time.

        Rows are taken in time order; each sees the store's snapshot plus the sends recorded
        before it (strictly earlier times). An entity the store never saw is a new entity.
        With ``record`` (the default) each row is then recorded as a send of its entity, so
        call it once per request (not once per model when shadowing). Rows are expected at
        or after the snapshot's ``as_of``: an older row would see the snapshot's later sends.
        A ``RecordTable`` (a request's rows) gives a ``RecordTable``, a frame a frame.
        """
        contract, spec = self._spec
        if contract is not cfg:  # derived once per contract, not once per request
            spec = history_spec(cfg)
            self._spec = (cfg, spec)
        absent = [c for c in (spec.entity, spec.timestamp) if c not in rows.columns]
        if absent:
            raise ValueError(f"lookup: rows lack column(s) {', '.join(absent)}")
        n = len(rows)
        t_ns = _times_ns(rows, spec.timestamp)
        entities = [s if isinstance(s, str) else None for s in cells(rows, spec.entity)]
        created = None
        if spec.created_at and spec.created_at in rows.columns:
            created = _times_ns(rows, spec.created_at, optional=True)
        ttl = float(
            cfg.serving.entity_cache_ttl_s if self.cache_ttl_s is None else self.cache_ttl_s
        )
        with self._lock:
            meta = self.meta(spec, ttl)
            loaded = self._states([s for s in entities if s is not None], ttl, t_ns)
            values = None
            if n >= _BLOCK_ROWS:
                values = self._lookup_block(entities, t_ns, created, meta, loaded, record)
            if values is None:
                values = self._lookup_rows(entities, t_ns, created, meta, loaded, record)
            if len(self._pending) >= self.flush_every:
                self.flush()
        if isinstance(rows, RecordTable):
            return rows.with_columns({c: values[:, k] for k, c in enumerate(HISTORY_COLUMNS)})
        stale = [c for c in HISTORY_COLUMNS if c in rows.columns]
        out = rows.drop(columns=stale) if stale else rows
        history = pd.DataFrame(values, columns=_HISTORY_INDEX, index=rows.index)
        return pd.concat([out, history], axis=1)  # the cheapest way to add columns (~0.2 ms)

    def _lookup_rows(self, entities, t_ns, created, meta, loaded, record) -> np.ndarray:
        """HISTORY_COLUMNS row by row in time order, each row recorded before later ones."""
        values = np.full((len(entities), len(HISTORY_COLUMNS)), np.nan)
        for i in np.argsort(t_ns, kind="stable").tolist():
            entity, t = entities[i], int(t_ns[i])
            if entity is None:  # no entity: no history, like offline
                values[i, :] = _history(EntityState(), t, meta, math.nan)
                continue
            if entity in loaded:
                self.misses += 1
                loaded.discard(entity)  # later rows of this entity find it cached
            else:
                self.hits += 1
            state = self._cache[entity]
            row_created = state.created_ns if created is None else float(created[i])
            values[i, :] = _history(state, t, meta, row_created)
            if record:
                _record(state, t)
                self._pending.append((entity, t))
        return values

    def _lookup_block(self, entities, t_ns, created, meta, loaded, record) -> np.ndarray | None:
        """``_lookup_rows``'s values and recorded sends as array operations over every row.

        A row's history is its entity's state plus, when rows are recorded, the rows of the
        block strictly before it, so counts are binary searches in one pool of (entity, time):
        the known sends and the block's rows. None (the caller goes row by row) when rows are
        recorded and an entity knows a send later than its first row here: the row loop then
        folds old sends in an order this cannot follow.
        """
        entity_array = np.asarray(entities, dtype=object)
        codes, uniques = pd.factorize(entity_array)  # no entity: -1
        states = [self._cache[entity] for entity in uniques]
        has = codes >= 0
        q, qc = t_ns[has], codes[has]
        first = np.full(len(states), np.iinfo(np.int64).max)
        np.minimum.at(first, qc, q)
        for state, t0 in zip(states, first.tolist(), strict=True):
            if record and (
                (state.times and state.times[-1] > t0)
                or (state.last_seen_ns is not None and state.last_seen_ns > t0)
            ):
                return None

        def per_state(attribute: str, dtype) -> np.ndarray:
            return np.array([getattr(s, attribute) for s in states], dtype=dtype)

        lengths = [len(s.times) for s in states]
        known = np.fromiter(chain.from_iterable(s.times for s in states), np.int64, sum(lengths))
        pool_codes = np.repeat(np.arange(len(states)), lengths)
        pool_times = known
        if record:  # a row sees the rows recorded before it
            pool_codes, pool_times = np.concatenate([pool_codes, qc]), np.concatenate([known, q])
        order = np.lexsort((pool_times, pool_codes))
        pool_codes, pool_times = pool_codes[order], pool_times[order]
        # Ranks of every time searched for make (entity, time) one sorted int64 key (as in
        # ``entity_history.point_in_time_history``).
        starts = [q - w for w in _WINDOWS_NS.values()]
        ranked = np.sort(np.concatenate([pool_times, q, *starts]))
        span = len(ranked)
        keys = pool_codes * span + np.searchsorted(ranked, pool_times)

        def sends_before(times: np.ndarray) -> np.ndarray:
            return np.searchsorted(keys, qc * span + np.searchsorted(ranked, times), side="left")

        entity_start = np.searchsorted(keys, qc * span, side="left")
        before = sends_before(q)
        last_seen = [s.last_seen_ns for s in states]
        seen_known = np.array([v is not None for v in last_seen], dtype=bool)[qc]
        seen = np.array([0 if v is None else v for v in last_seen], dtype=np.int64)[qc]
        seen_known &= seen < q
        sent = before > entity_start
        previous = seen.copy()
        latest = pool_times[before[sent] - 1]
        previous[sent] = np.where(seen_known[sent], np.maximum(latest, seen[sent]), latest)
        gap = np.full(len(q), np.nan)
        has_previous = sent | seen_known
        gap[has_previous] = (q - previous)[has_previous].astype(np.float64) / _NS_PER_SECOND
        row_created = per_state("created_ns", np.float64)[qc] if created is None else created[has]
        labeled = per_state("past_labeled", np.int64)[qc]
        positive = per_state("past_positive", np.int64)[qc]
        strength = meta.prior_strength
        columns = [
            (per_state("base_count", np.int64)[qc] + before - entity_start).astype(np.float64),
            labeled.astype(np.float64),
            positive.astype(np.float64),
            (positive + meta.prior_rate * strength) / (labeled + strength),
            *[(before - sends_before(start)).astype(np.float64) for start in starts],
            gap,
            (q.astype(np.float64) - row_created) / _NS_PER_DAY,
        ]
        values = np.empty((len(entities), len(HISTORY_COLUMNS)))
        values[has] = np.column_stack(columns)
        values[~has] = _history(EntityState(), 0, meta, math.nan)  # no entity: no history
        self.misses += len(loaded)
        self.hits += len(q) - len(loaded)
        if record:
            by_entity = np.lexsort((q, qc))
            bounds = np.searchsorted(qc[by_entity], np.arange(len(states) + 1)).tolist()
            block_times = q[by_entity].tolist()
            for j, state in enumerate(states):
                state.times.extend(block_times[bounds[j] : bounds[j + 1]])  # none are earlier
                _fold(state)
            in_time_order = np.argsort(t_ns, kind="stable")
            in_time_order = in_time_order[has[in_time_order]]
            self._pending.extend(
                zip(
                    entity_array[in_time_order].tolist(),
                    t_ns[in_time_order].tolist(),
                    strict=True,
                )
            )
        return values


def _times_ns(rows: pd.DataFrame | RecordTable, name: str, *, optional: bool = False):
    """Like ``entity_history._ns`` / ``_ns_optional`` on ``rows[name]``, with fast paths.

    The general path parses through ``pd.to_datetime`` (~0.25 ms for one row). Timestamps
    of a small frame or a table are read cell by cell, a datetime column converts directly to
    UTC nanoseconds; both give the same values as the general path.
    """
    table = isinstance(rows, RecordTable)
    if table or len(rows) <= SMALL_FRAME:
        stamps = cells(rows, name)
        if all(isinstance(v, pd.Timestamp) or v is pd.NaT for v in stamps):
            missing = [v is pd.NaT for v in stamps]
            if optional:
                return np.array([math.nan if v is pd.NaT else float(v.value) for v in stamps])
            if any(missing):
                raise ValueError(f"{sum(missing)} rows have no {name}")
            return np.array([v.value for v in stamps], dtype=np.int64)
    values = pd.Series(cells(rows, name), dtype=object) if table else rows[name]
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or dtype.kind == "M":
        stamps = values.to_numpy(dtype="datetime64[ns]")
        missing = np.isnat(stamps)
        ns = stamps.view("int64")
        if not optional:
            if missing.any():
                raise ValueError(f"{int(missing.sum())} rows have no {name}")
            return ns
        out = ns.astype("float64")
        out[missing] = np.nan
        return out
    return _ns_optional(values) if optional else _ns(values, name)


def _history(state: EntityState, t: int, meta: StoreMeta, created_ns: float) -> list[float]:
    """HISTORY_COLUMNS of a send at ``t`` (same arithmetic as ``point_in_time_history``)."""
    times = state.times
    before = bisect_left(times, t)
    previous = [times[before - 1]] if before else []
    if state.last_seen_ns is not None and state.last_seen_ns < t:
        previous.append(state.last_seen_ns)
    # ``_smoothed``'s arithmetic on this row's numbers, without its np.errstate (which costs
    # more than the arithmetic): the prior's strength is positive, the divisor never 0.
    rate = (state.past_positive + meta.prior_rate * meta.prior_strength) / (
        state.past_labeled + meta.prior_strength
    )
    return [
        float(state.base_count + before),
        float(state.past_labeled),
        float(state.past_positive),
        float(rate),
        *[float(before - bisect_left(times, t - w)) for w in _WINDOWS_NS.values()],
        float(t - max(previous)) / _NS_PER_SECOND if previous else math.nan,
        (float(t) - created_ns) / _NS_PER_DAY,
    ]


def _record(state: EntityState, t: int) -> None:
    """Add a send; times older than the longest window fold into ``base_count``."""
    insort(state.times, t)
    _fold(state)


def _fold(state: EntityState) -> None:
    """Fold send times older than the longest window before the newest into ``base_count``
    (``state.times`` holds at least the send just recorded)."""
    old = bisect_left(state.times, state.times[-1] - _KEEP_NS)
    if old:
        newest_folded = state.times[old - 1]
        if state.last_seen_ns is None or state.last_seen_ns < newest_folded:
            state.last_seen_ns = newest_folded
        state.base_count += old
        del state.times[:old]
