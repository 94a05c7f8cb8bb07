"""Time split and point-in-time entity history: nothing from the future leaks into the past."""

import json

import numpy as np
import pandas as pd
import pytest
from contract_labels import NEG, POS
from reference_contract import reference_config

from {{cookiecutter.package_name}}.data import split
from {{cookiecutter.package_name}}.entity_history import (
    point_in_time_history,
    snapshot_entity_stats,
)

T0 = pd.Timestamp("2024-05-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)
HISTORY = dict(
    entity="account",
    timestamp="received_at",
    label="label",
    positive=POS,
    prior_rate=0.2,
    prior_strength=4.0,
)


@pytest.fixture(scope="module")
def cfg(cfg):
    """The reference contract: this module's frames are built by hand in its schema."""
    return reference_config(cfg)


COUNTS = ["past_count", "past_labeled", "past_positive", "count_1h", "count_24h"]


def records(n: int, *, accounts: int = 6, seed: int = 0, minutes: int = 3 * 24 * 60):
    """``n`` records of a few accounts at random whole minutes (so some share a timestamp)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(n)],
            "account": [f"s{k}" for k in rng.integers(0, accounts, n)],
            "received_at": T0 + pd.to_timedelta(rng.integers(0, minutes, n), unit="min"),
            "label": rng.choice([POS, NEG], n, p=[0.3, 0.7]),
            "account_created_at": T0 - pd.to_timedelta(rng.integers(1, 400, n), unit="D"),
        }
    )


# --- time split ------------------------------------------------------------------------------


def test_parts_follow_time_without_overlap_and_match_the_fractions(cfg):
    df = records(1000, minutes=10**6).sample(frac=1, random_state=3)

    parts = split.split_by_time(cfg, df)

    assert list(parts) == ["train", "validation", "test"]
    sizes = {name: len(part) for name, part in parts.items()}
    fractions = cfg.training.split.model_dump()
    for name, size in sizes.items():
        assert abs(size - 1000 * fractions[name]) <= 5, sizes  # ties may move a boundary a bit
    assert sum(sizes.values()) == 1000
    assert sorted(np.concatenate([p.index for p in parts.values()])) == sorted(df.index)
    train, validation, test = (p["received_at"] for p in parts.values())
    assert train.max() < validation.min() and validation.max() < test.min()
    assert all(p["received_at"].is_monotonic_increasing for p in parts.values())


def test_rows_sharing_a_timestamp_never_straddle_a_boundary(cfg):
    times = [T0 + i * HOUR for i in range(100)]
    times[64:76] = [T0 + 64 * HOUR] * 12  # a burst across the 70 % boundary
    df = records(100).assign(received_at=times)

    parts = split.split_by_time(cfg, df)

    owners = {}
    for name, part in parts.items():
        for t in part["received_at"]:
            owners.setdefault(t, set()).add(name)
    assert all(len(o) == 1 for o in owners.values())
    assert len(parts["train"]) in (64, 76)  # the burst moved to the nearer side as a whole


def test_split_refuses_to_leave_a_part_empty(cfg):
    df = records(50).assign(received_at=T0)

    with pytest.raises(ValueError, match="empty"):
        split.split_by_time(cfg, df)


def test_run_writes_parts_and_a_summary(cfg, tmp_path):
    df = records(400, minutes=10**5)
    source = tmp_path / "validated.parquet"
    df.to_parquet(source, index=False)

    result = split.run(cfg, source, tmp_path / "split")

    summary = json.loads(result.summary_path.read_text())
    assert set(summary["parts"]) == {"train", "validation", "test"}
    for name, info in summary["parts"].items():
        part = pd.read_parquet(result.paths[name])
        assert info["rows"] == len(part)
        assert info["positive_rate"] == pytest.approx(
            (part["label"] == cfg.problem.positive_class).mean()
        )
        assert pd.Timestamp(info["start"]) == part["received_at"].min()
        assert pd.Timestamp(info["end"]) == part["received_at"].max()
    assert summary["parts"]["train"]["end"] < summary["parts"]["validation"]["start"]
    assert sum(p["rows"] for p in summary["parts"].values()) == len(df)
    assert "train" in result.summary()


# --- point-in-time entity history ------------------------------------------------------------


def brute_force(df, cutoff=None):
    """The definition, one record at a time."""
    out = []
    for _, row in df.iterrows():
        mine = df[(df["account"] == row["account"]) & (df["received_at"] < row["received_at"])]
        known_until = row["received_at"] if cutoff is None else min(row["received_at"], cutoff)
        known = mine[mine["received_at"] < known_until]
        out.append(
            [
                len(mine),
                len(known),
                int((known["label"] == POS).sum()),
                int((mine["received_at"] >= row["received_at"] - HOUR).sum()),
                int((mine["received_at"] >= row["received_at"] - 24 * HOUR).sum()),
            ]
        )
    return pd.DataFrame(out, columns=COUNTS, index=df.index)


@pytest.mark.parametrize("cutoff", [None, T0 + 36 * HOUR])
def test_history_matches_the_definition(cutoff):
    df = records(300, minutes=4 * 24 * 60).sample(frac=1, random_state=1)

    history = point_in_time_history(df, **HISTORY, label_cutoff=cutoff)

    assert history.index.equals(df.index)
    pd.testing.assert_frame_equal(
        history[COUNTS].astype("int64"), brute_force(df, cutoff), check_dtype=False
    )
    expected_rate = (history["past_positive"] + 0.2 * 4.0) / (history["past_labeled"] + 4.0)
    assert np.allclose(history["past_positive_rate"], expected_rate)


def test_changing_or_deleting_future_records_leaves_the_past_unchanged():
    df = records(400)
    cut = T0 + 30 * HOUR
    past = df["received_at"] <= cut
    before = point_in_time_history(df, **HISTORY, created_at="account_created_at")

    future = df[~past]
    kept = future.index[::2]  # every other future record is deleted, the rest relabelled
    changed = pd.concat(
        [
            df[past],
            future.loc[kept].assign(label=np.where(future.loc[kept, "label"] == POS, NEG, POS)),
            # New messages of the same accounts, later than everything else.
            records(20, seed=9).assign(received_at=T0 + 100 * HOUR).set_axis(range(10_000, 10_020)),
        ]
    ).sample(frac=1, random_state=2)  # input order must not matter either
    after = point_in_time_history(changed, **HISTORY, created_at="account_created_at")

    pd.testing.assert_frame_equal(after.loc[df.index[past]], before.loc[past])
    assert not after.loc[kept].equals(before.loc[kept])  # the future itself did change


def test_a_record_never_sees_its_own_label_or_records_at_the_same_instant():
    df = pd.DataFrame(
        {
            "account": ["a", "a", "a", "a"],
            "received_at": [T0, T0, T0, T0 + HOUR],
            "label": [POS, POS, NEG, POS],
        }
    )

    history = point_in_time_history(df, **HISTORY)
    flipped = point_in_time_history(df.assign(label=[NEG, NEG, POS, NEG]), **HISTORY)

    assert history["past_count"].tolist() == [0, 0, 0, 3]
    assert history["past_positive"].tolist() == [0, 0, 0, 2]
    assert history["past_positive_rate"].iloc[0] == pytest.approx(0.2)  # the prior alone
    assert history["seconds_since_prev"].iloc[:3].isna().all()
    assert history["seconds_since_prev"].iloc[3] == 3600
    # A record's own label (and labels at its instant) never reach its own features.
    pd.testing.assert_frame_equal(history.iloc[:3], flipped.iloc[:3])


def test_label_cutoff_hides_labels_that_arrived_later():
    df = pd.DataFrame(
        {
            "account": ["a"] * 4,
            "received_at": [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR],
            "label": [POS, POS, POS, None],
        }
    )

    history = point_in_time_history(df, **HISTORY, label_cutoff=T0 + 90 * pd.Timedelta("1min"))

    assert history["past_count"].tolist() == [0, 1, 2, 3]
    assert history["past_labeled"].tolist() == [0, 1, 2, 2]  # labels before 01:30 only
    assert history["past_positive"].tolist() == [0, 1, 2, 2]


def test_velocity_windows_and_account_age_on_a_hand_made_example():
    minutes = [0, 30, 59, 60, 61, 180, 24 * 60 + 1, 24 * 60 + 60]
    df = pd.DataFrame(
        {
            "account": ["a"] * len(minutes) + ["b"],
            "received_at": [T0 + pd.Timedelta(minutes=m) for m in minutes] + [T0 + HOUR],
            "label": [NEG] * (len(minutes) + 1),
            "created": [T0 - pd.Timedelta(days=10)] * len(minutes) + [None],
        }
    )

    history = point_in_time_history(df, **HISTORY, created_at="created")

    # Window [t - 1 h, t): a record exactly one hour older still counts.
    assert history["count_1h"].tolist() == [0, 1, 2, 3, 3, 0, 0, 1, 0]
    assert history["count_24h"].tolist() == [0, 1, 2, 3, 4, 5, 5, 4, 0]
    assert history["seconds_since_prev"].tolist()[1:6] == [1800, 1740, 60, 60, 7140]
    assert history["account_age_days"].iloc[0] == pytest.approx(10.0)
    assert history["account_age_days"].iloc[3] == pytest.approx(10 + 1 / 24)
    assert np.isnan(history["account_age_days"].iloc[-1])


def test_snapshot_equals_the_history_of_a_new_record_at_as_of():
    df = records(500)
    as_of = T0 + 40 * HOUR
    cutoff = T0 + 30 * HOUR

    snapshot = snapshot_entity_stats(
        df, **HISTORY, as_of=as_of, label_cutoff=cutoff, created_at="account_created_at"
    ).set_index("account")
    # One hypothetical, unlabelled record per account at as_of, carrying the latest created_at.
    seen = df[df["received_at"] < as_of].sort_values("received_at")
    probes = pd.DataFrame(
        {
            "account": snapshot.index,
            "received_at": as_of,
            "label": None,
            "account_created_at": seen.groupby("account")["account_created_at"]
            .last()
            .reindex(snapshot.index)
            .to_list(),
        },
        index=[f"probe-{s}" for s in snapshot.index],
    )
    history = point_in_time_history(
        pd.concat([df, probes]),
        **HISTORY,
        label_cutoff=cutoff,
        created_at="account_created_at",
    ).loc[probes.index]
    history.index = snapshot.index

    assert len(snapshot) == df.loc[df["received_at"] < as_of, "account"].nunique()
    assert (snapshot["past_count"] > 0).all()
    assert (snapshot["last_seen"] < as_of).all()
    for column in history.columns:
        assert np.allclose(snapshot[column], history[column], equal_nan=True), column
