"""The entity store: new accounts, the TTL cache, idempotent materialization, shared sends."""

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_contract import reference_config

from {{cookiecutter.package_name}}.features import store as store_module
from {{cookiecutter.package_name}}.features.history import (
    HISTORY_COLUMNS,
    attach_history,
    history_spec,
)
from {{cookiecutter.package_name}}.features.store import EntityStore


@pytest.fixture(scope="module")
def cfg(cfg):
    """The reference contract: this module's frames are built by hand in its schema."""
    return reference_config(cfg)


T0 = pd.Timestamp("2025-03-03 12:00", tz="UTC")
MINUTE = pd.Timedelta(minutes=1)


def rows(cfg, items):
    """Raw rows from (account, minutes after T0, positive?) triples."""
    return pd.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(len(items))],
            "account": [s for s, _, _ in items],
            "received_at": [T0 + m * MINUTE for _, m, _ in items],
            "account_created_at": T0 - pd.Timedelta(days=30),
            "label": [
                cfg.problem.positive_class if positive else cfg.problem.negative_class
                for _, _, positive in items
            ],
        }
    )


@pytest.fixture
def history(cfg):
    return rows(cfg, [("a@x.example", m, m % 2 == 0) for m in range(0, 100, 10)])


@pytest.fixture
def store(tmp_path):
    store = EntityStore(f"sqlite:///{tmp_path / 'accounts.db'}", cache_ttl_s=300)
    yield store
    store.close()


def test_an_entity_the_store_never_saw_is_a_new_entity(cfg, history, store):
    store.materialize(cfg, history, as_of=T0 + 100 * MINUTE)
    request = rows(cfg, [("stranger@y.example", 200, False)])

    served = store.lookup(cfg, request).iloc[0]

    assert served["entity_past_count"] == 0 and served["entity_past_labeled"] == 0
    assert served["entity_count_1h"] == 0 and served["entity_count_24h"] == 0
    assert np.isnan(served["entity_seconds_since_prev"])
    assert served["entity_account_age_days"] == pytest.approx(30 + 200 / 1440)
    prior = history_spec(cfg).prior_rate  # the contract's prior, as offline
    assert served["entity_past_positive_rate"] == pytest.approx(prior)


def test_an_empty_store_answers_too(cfg, store):
    served = store.lookup(cfg, rows(cfg, [("a@x.example", 0, False)]))
    assert served["entity_past_count"].iloc[0] == 0


def test_cache_hits_are_counted_and_expire_with_the_ttl(cfg, history, tmp_path):
    url = f"sqlite:///{tmp_path / 'accounts.db'}"
    cached = EntityStore(url, cache_ttl_s=300)
    cached.materialize(cfg, history, as_of=T0 + 100 * MINUTE)
    request = rows(cfg, [("a@x.example", 120, False)])

    for _ in range(3):
        cached.lookup(cfg, request, record=False)
    assert (cached.misses, cached.hits) == (1, 2)

    uncached = EntityStore(url, cache_ttl_s=0)
    for _ in range(3):
        uncached.lookup(cfg, request, record=False)
    assert (uncached.misses, uncached.hits) == (3, 0)


def test_lookups_record_sends_so_velocity_moves(cfg, history, store):
    store.materialize(cfg, history, as_of=T0 + 100 * MINUTE)
    requests = rows(cfg, [("a@x.example", 100 + m, False) for m in (1, 2, 2, 3)])

    served = [store.lookup(cfg, requests.iloc[[i]]).iloc[0] for i in range(4)]

    # Rows at the same instant do not see each other.
    assert [r["entity_past_count"] for r in served] == [10, 11, 11, 13]
    assert [r["entity_count_1h"] for r in served] == [5, 6, 6, 8]
    assert served[0]["entity_seconds_since_prev"] == 11 * 60
    assert served[3]["entity_seconds_since_prev"] == 60


def test_materializing_twice_changes_nothing(cfg, history, tmp_path):
    url = f"sqlite:///{tmp_path / 'accounts.db'}"
    request = rows(cfg, [("a@x.example", 130, False), ("b@y.example", 131, False)])

    def snapshot():
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            tables = {
                t: sorted(map(tuple, conn.execute(sa.text(f"select * from {t}")).all()))
                for t in ("entity_stats", "entity_meta")
            }
            tables["sends"] = sorted(
                conn.execute(sa.text("select entity, t_ns from entity_sends")).all()
            )
        engine.dispose()
        return tables

    first = EntityStore(url)
    assert first.materialize(cfg, history, as_of=T0 + 100 * MINUTE) == 1
    once = snapshot()
    answer_once = first.lookup(cfg, request, record=False)
    assert first.materialize(cfg, history, as_of=T0 + 100 * MINUTE) == 1
    twice = snapshot()
    answer_twice = first.lookup(cfg, request, record=False)

    assert once == twice
    pd.testing.assert_frame_equal(answer_once, answer_twice)


def test_sends_are_shared_between_processes_through_the_database(cfg, history, tmp_path):
    url = f"sqlite:///{tmp_path / 'accounts.db'}"
    one, two = EntityStore(url, cache_ttl_s=0), EntityStore(url, cache_ttl_s=0)
    one.materialize(cfg, history, as_of=T0 + 100 * MINUTE)

    one.lookup(cfg, rows(cfg, [("a@x.example", 101, False)]))
    one.flush()
    seen = two.lookup(cfg, rows(cfg, [("a@x.example", 102, False)])).iloc[0]

    assert seen["entity_past_count"] == 11 and seen["entity_seconds_since_prev"] == 60


def test_states_past_their_ttl_leave_the_cache_and_come_back_the_same(
    cfg, history, tmp_path, monkeypatch
):
    """A long-running server keeps the entities of the last TTL, not every entity it ever saw;
    one that left the cache answers as if it had stayed (its sends are flushed first)."""
    clock = [1000.0]
    monkeypatch.setattr(store_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(store_module, "_SWEEP_MIN", 8)
    stores = [
        EntityStore(f"sqlite:///{tmp_path / f'{ttl}.db'}", cache_ttl_s=ttl)
        for ttl in (10**9, 60, 0)  # kept, swept, and each state expired as soon as loaded
    ]
    try:
        for store in stores:
            store.materialize(cfg, history, as_of=T0 + 100 * MINUTE)
        for minute in range(101, 131):  # a new entity each step, and one that keeps coming
            request = rows(
                cfg, [(f"new{minute}@x.example", minute, False), ("a@x.example", minute, False)]
            )
            kept, *swept = (store.lookup(cfg, request) for store in stores)
            for answer in swept:
                pd.testing.assert_frame_equal(answer, kept)
            clock[0] += 30  # a state of the 60 s store expires two steps after it was loaded
        sizes = [len(store._cache) for store in stores]
        assert sizes[0] == 31 and max(sizes[1:]) <= 8  # swept each time it reaches 8
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("ttl", [300, 0])
def test_store_matches_offline_for_a_long_busy_account(cfg, tmp_path, ttl):
    # Minute-by-minute sends over three days: exercises folding old sends out of the cache
    # (TTL 300 s) and out of every reload, where the database folds them (TTL 0).
    items = [("busy@x.example", m, m % 3 == 0) for m in range(0, 3 * 24 * 60, 7)]
    df = rows(cfg, items)
    cut = T0 + 24 * 60 * MINUTE
    past, future = df[df["received_at"] < cut], df[df["received_at"] >= cut]
    store = EntityStore(f"sqlite:///{tmp_path / 'accounts.db'}", cache_ttl_s=ttl, flush_every=50)
    store.materialize(cfg, past, as_of=cut)

    served = pd.concat([store.lookup(cfg, future.iloc[[i]]) for i in range(len(future))])
    offline = attach_history(cfg, future, earlier=past, label_cutoff=cut)

    pd.testing.assert_frame_equal(
        served[list(HISTORY_COLUMNS)], offline[list(HISTORY_COLUMNS)].astype(float)
    )


def test_a_reload_reads_the_sends_of_the_windows_and_counts_the_older_ones(tmp_path):
    """A busy entity's sends since the snapshot stay in the database until the next one: a
    reload reads those its rows' windows can need, the database counts the rest."""
    from {{cookiecutter.package_name}}.features.store_backend import SqlBackend

    backend = SqlBackend(f"sqlite:///{tmp_path / 'accounts.db'}")
    day = 24 * 3600 * 10**9
    sends = [("busy", k * day // 1000) for k in range(7000)]  # a week, ~1,000 a day
    backend.append_sends([*sends, ("quiet", 3 * day)])
    try:
        [whole] = backend.load(["busy"]).values()
        since = 6 * day + 1
        bounded = backend.load(["busy", "quiet", "unknown"], since)
    finally:
        backend.close()
    assert whole.times == [t for _, t in sends] and whole.base_count == 0
    kept = [t for t in whole.times if t >= since]
    folded = [t for t in whole.times if t < since]
    assert bounded["busy"].times == kept and len(kept) < 1001
    assert bounded["busy"].base_count == len(folded)
    assert bounded["busy"].last_seen_ns == max(folded)
    assert (bounded["quiet"].times, bounded["quiet"].base_count) == ([], 1)
    assert bounded["quiet"].last_seen_ns == 3 * day
    assert "unknown" not in bounded


def test_text_timestamps_are_read_like_datetimes(cfg, history, store):
    store.materialize(cfg, history, as_of=T0 + 100 * MINUTE)
    request = rows(cfg, [("a@x.example", 130, False)])
    as_text = request.assign(
        received_at=request["received_at"].map(lambda t: t.isoformat()),
        account_created_at=[None],
    )

    served = store.lookup(cfg, request, record=False)
    from_text = store.lookup(cfg, as_text, record=False)

    columns = [c for c in HISTORY_COLUMNS if c != "entity_account_age_days"]
    pd.testing.assert_frame_equal(served[columns], from_text[columns])
    assert np.isnan(from_text["entity_account_age_days"].iloc[0])


def test_lookup_needs_the_account_and_time_columns(cfg, store):
    with pytest.raises(ValueError, match="received_at"):
        store.lookup(cfg, pd.DataFrame({"account": ["a@x.example"]}))


def test_redis_urls_are_refused_with_a_pointer(tmp_path):
    with pytest.raises(NotImplementedError, match="Redis"):
        EntityStore("redis://localhost:6379/0")


def test_a_large_lookup_answers_a_long_busy_account_as_offline(cfg, tmp_path):
    # The same day of sends as one frame: the array path, folding at the end.
    items = [("busy@x.example", m, m % 3 == 0) for m in range(0, 2 * 24 * 60, 7)]
    df = rows(cfg, items)
    cut = T0 + 24 * 60 * MINUTE
    past, future = df[df["received_at"] < cut], df[df["received_at"] >= cut]
    store = EntityStore(f"sqlite:///{tmp_path / 'accounts.db'}")
    store.materialize(cfg, past, as_of=cut)

    served = store.lookup(cfg, future.sample(frac=1.0, random_state=0)).loc[future.index]
    offline = attach_history(cfg, future, earlier=past, label_cutoff=cut)

    pd.testing.assert_frame_equal(
        served[list(HISTORY_COLUMNS)], offline[list(HISTORY_COLUMNS)].astype(float)
    )


ACCOUNTS = st.sampled_from(["a@x.example", "b@x.example", "c@y.example", None])
MINUTES = 3 * 24 * 60  # sends over three days: the 24 h window folds old ones


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    past=st.lists(st.tuples(ACCOUNTS.filter(bool), st.integers(0, MINUTES), st.booleans())),
    batches=st.lists(
        st.lists(st.tuples(ACCOUNTS, st.integers(MINUTES - 120, 2 * MINUTES), st.booleans())),
        min_size=1,
        max_size=3,
    ),
    created=st.booleans(),
    record=st.booleans(),
)
def test_a_large_lookup_answers_and_records_as_row_by_row(
    cfg, monkeypatch, past, batches, created, record
):
    """Large lookups run as array operations, small ones row by row: the same answers, sends
    and entity states, whatever the order, ties, missing entities, sends later than a row
    (those take the row path) and whether rows are recorded."""

    def served(block_rows: int):
        monkeypatch.setattr(store_module, "_BLOCK_ROWS", block_rows)
        store = EntityStore("sqlite://", cache_ttl_s=300, flush_every=10**9)
        store.materialize(cfg, rows(cfg, past), as_of=T0 + MINUTES * MINUTE)
        answers = []
        for items in batches:
            request = rows(cfg, items)
            if not created:
                request = request.drop(columns="account_created_at")
            answers.append(store.lookup(cfg, request, record=record)[list(HISTORY_COLUMNS)])
        states = {
            entity: (s.base_count, s.past_labeled, s.last_seen_ns, s.created_ns, s.times)
            for entity, s in store._cache.items()
        }
        seen = (store.hits, store.misses, sorted(store._pending), states)
        store.close()
        return answers, seen

    by_row, by_row_seen = served(10**9)
    by_block, by_block_seen = served(1)
    for row_answer, block_answer in zip(by_row, by_block, strict=True):
        pd.testing.assert_frame_equal(block_answer, row_answer, check_exact=True)
    assert repr(by_block_seen) == repr(by_row_seen)  # NaN == NaN in created_ns


def test_a_large_lookup_in_time_order_takes_the_array_path(cfg, history, store, monkeypatch):
    monkeypatch.setattr(store_module, "_BLOCK_ROWS", 200)
    store.materialize(cfg, history, as_of=T0 + 100 * MINUTE)
    request = rows(cfg, [("a@x.example", 100 + m // 2, False) for m in range(200)])

    def row_by_row(*args):
        raise AssertionError("went row by row")

    monkeypatch.setattr(store, "_lookup_rows", row_by_row)
    served = store.lookup(cfg, request)
    assert served["entity_past_count"].iloc[-1] == 10 + 198
