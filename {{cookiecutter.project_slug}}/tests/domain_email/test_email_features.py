"""Features: offline equals serving, point-in-time history, one picklable transformer."""

import io

import joblib
import numpy as np
import pandas as pd
import pytest
from test_role_features import ROLE_FAMILIES

from {{cookiecutter.package_name}}.domain.email import sender
from {{cookiecutter.package_name}}.features import build
from {{cookiecutter.package_name}}.features.flags import FlagFeatures
from {{cookiecutter.package_name}}.features.hashing import ngram_occurrences
from {{cookiecutter.package_name}}.features.history import HISTORY_COLUMNS, attach_history
from {{cookiecutter.package_name}}.features.pipeline import build_features
from {{cookiecutter.package_name}}.features.store import EntityStore

T0 = pd.Timestamp("2025-03-03", tz="UTC")
SPAM_LINES = [
    "FREE prize waiting, click here to claim",
    "You are a WINNER!!! verify your account now",
    "URGENT: your password expires, log in at once",
    "Fr33 c4sh for you, act now",
]
HAM_LINES = [
    "Minutes of the planning meeting are attached",
    "Can we move our call to Thursday afternoon?",
    "The quarterly report draft is ready for review",
    "Lunch on Friday? The new place near the office",
]


def make_emails(cfg, n=600, seed=0, senders=30, days=3):
    """Hand-made raw rows in the contract's schema: spammy senders burst and link elsewhere."""
    rng = np.random.default_rng(seed)
    spammy = rng.random(senders) < 0.35
    domains = [
        ("promo-win4u.biz" if s else "mail.corp.example") if k % 3 else "gmail.com"
        for k, s in enumerate(spammy)
    ]
    who = rng.integers(0, senders, n)
    minutes = rng.integers(0, days * 24 * 60, n)
    # The last three senders are new late in the window (first seen in the future part).
    late = who >= senders - 3
    minutes[late] = days * 24 * 60 - 1 - minutes[late] % (days * 24 * 60 // 6)
    # Bursts: a third of spammy senders' emails land on one of two minutes (early or late).
    burst = spammy[who] & (rng.random(n) < 0.33)
    late_burst = rng.random(n) < 0.5
    minutes[burst] = np.where(
        late_burst[burst],
        days * 24 * 60 - 1 - (who[burst] * 53) % 600,
        (who[burst] * 37) % (days * 24 * 60),
    )
    pos = np.where(spammy[who], rng.random(n) < 0.85, rng.random(n) < 0.05)
    created_days = rng.integers(1, 900, senders).astype(float)
    created_days[::7] = np.nan
    rows = []
    for i in range(n):
        s, is_spam = who[i], bool(pos[i])
        line = (SPAM_LINES if is_spam else HAM_LINES)[rng.integers(0, 4)]
        html = is_spam and rng.random() < 0.5
        host = "claim-now.example.net" if is_spam else domains[s]
        body = f"Hello,\n{line}\nhttps://{host}/x{i}\nRegards"
        rows.append(
            {
                "message_id": f"m{seed}-{i}",
                "received_at": T0 + pd.Timedelta(minutes=int(minutes[i])),
                "sender": f"user{s}{'77' if spammy[s] else ''}@{domains[s]}",
                "sender_domain": domains[s],
                "sender_created_at": T0 - pd.Timedelta(days=created_days[s])
                if not np.isnan(created_days[s])
                else pd.NaT,
                "reply_to": f"claims@other{s}.example" if is_spam and rng.random() < 0.5 else None,
                "recipient_count": int(rng.integers(1, 40 if is_spam else 5)),
                "subject": line[:30] if rng.random() < 0.97 else None,
                "body": f"<p>{body}</p><img src='cid:1'>" if html else body,
                "content_type": "text/html" if html else "text/plain",
                "urls": f"https://{host}/x{i}",
                "attachment_count": 1 if rng.random() < 0.2 else 0,
                "attachment_types": None,
                "inline_image_count": 1 if html else 0,
                "quality_flags": "",
                "label": cfg.problem.positive_class if is_spam else cfg.problem.negative_class,
            }
        )
    df = pd.DataFrame(rows)
    df["attachment_types"] = np.where(df["attachment_count"] > 0, np.where(pos, "zip", "pdf"), "")
    return df.sort_values("received_at", kind="stable").reset_index(drop=True)


def targets(cfg, df):
    return (df["label"] == cfg.problem.positive_class).to_numpy().astype(int)


@pytest.fixture(scope="module")
def data(cfg):
    df = make_emails(cfg)
    cutoff = df["received_at"].iloc[int(len(df) * 0.7)]
    past, future = df[df["received_at"] < cutoff], df[df["received_at"] >= cutoff]
    return df, past, future, cutoff


@pytest.fixture(scope="module")
def fitted(cfg, data):
    _, past, _, _ = data
    train = attach_history(cfg, past)
    transformer = build_features(cfg)
    matrix = transformer.fit_transform(train, targets(cfg, train))
    return transformer, train, matrix


# --- parity: offline == serving --------------------------------------------------------------


def test_offline_features_equal_serving_one_request_at_a_time(cfg, data, fitted, tmp_path):
    _, past, future, cutoff = data
    transformer, _, _ = fitted
    offline_rows = attach_history(cfg, future, earlier=past, label_cutoff=cutoff)
    offline = transformer.transform(offline_rows)

    store = EntityStore(f"sqlite:///{tmp_path / 'store.db'}")
    store.materialize(cfg, past, as_of=cutoff)
    served_rows = [store.lookup(cfg, future.iloc[[i]]) for i in range(len(future))]
    served = np.vstack([transformer.transform(row) for row in served_rows])

    history = pd.concat(served_rows)[list(HISTORY_COLUMNS)]
    expected = offline_rows[list(HISTORY_COLUMNS)].astype(float)
    assert np.allclose(history.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-6, equal_nan=True)
    assert np.allclose(served, offline, rtol=0, atol=1e-6)
    # The comparison is not vacuous: known and new senders, bursts, gaps, unknown ages.
    assert (expected["entity_past_count"] > 0).any() and (expected["entity_past_count"] == 0).any()
    assert (expected["entity_count_1h"] > 0).any()
    assert future.duplicated(["sender", "received_at"]).any()  # ties: same sender, same instant
    assert expected["entity_account_age_days"].isna().any()


def test_a_batch_lookup_in_any_order_equals_offline(cfg, data, tmp_path):
    _, past, future, cutoff = data
    offline = attach_history(cfg, future, earlier=past, label_cutoff=cutoff)
    store = EntityStore(f"sqlite:///{tmp_path / 'store.db'}")
    store.materialize(cfg, past, as_of=cutoff)

    shuffled = future.sample(frac=1, random_state=4)
    served = store.lookup(cfg, shuffled)

    assert served.index.equals(shuffled.index)
    pd.testing.assert_frame_equal(
        served.loc[future.index, list(HISTORY_COLUMNS)],
        offline[list(HISTORY_COLUMNS)].astype(float),
    )


# --- point in time ---------------------------------------------------------------------------


def test_future_records_never_change_earlier_features(cfg, data, fitted):
    df, _, _, cutoff = data
    transformer, _, _ = fitted
    early = df["received_at"] < cutoff
    before = transformer.transform(attach_history(cfg, df))[early.to_numpy()]

    future = df[~early]
    kept = future.iloc[::2]
    flipped = np.where(
        kept["label"] == cfg.problem.positive_class,
        cfg.problem.negative_class,
        cfg.problem.positive_class,
    )
    changed = pd.concat(
        [df[early], kept.assign(label=flipped, body="totally different", recipient_count=99)]
    ).sample(frac=1, random_state=1)
    after = transformer.transform_frame(attach_history(cfg, changed)).loc[df.index[early]]

    np.testing.assert_array_equal(after.to_numpy(), before)


def test_labels_after_the_cutoff_stay_unknown(cfg, data):
    _, past, future, cutoff = data
    late_cutoff = past["received_at"].iloc[len(past) // 2]
    base = attach_history(cfg, future, earlier=past, label_cutoff=late_cutoff)
    relabelled = past.assign(
        label=np.where(
            past["received_at"] >= late_cutoff, cfg.problem.positive_class, past["label"]
        )
    )
    again = attach_history(cfg, future, earlier=relabelled, label_cutoff=late_cutoff)

    pd.testing.assert_frame_equal(base, again)
    assert (base["entity_past_labeled"] < base["entity_past_count"]).any()


def test_a_training_row_never_sees_its_own_label(cfg, fitted):
    transformer, train, matrix = fitted
    y = targets(cfg, train)
    row = int(np.flatnonzero(y == 1)[0])
    flipped = y.copy()
    flipped[row] = 0

    again = build_features(cfg).fit_transform(train, flipped)

    names = list(transformer.get_feature_names_out())
    for name in ("text_model_score", "sender_tld_risk", "sender_spam_rate"):
        column = names.index(name)
        assert again[row, column] == matrix[row, column], name


# --- the transformer -------------------------------------------------------------------------


def test_missing_history_columns_is_a_clear_error(cfg, data, fitted):
    _, past, _, _ = data
    transformer, train, _ = fitted
    with pytest.raises(ValueError, match="entity_past_count.*attach_history"):
        transformer.transform(past)
    with pytest.raises(ValueError, match="entity_count_1h"):
        build_features(cfg).fit(train.drop(columns="entity_count_1h"), targets(cfg, train))


def test_transformer_pickles_and_scores_identically(cfg, fitted):
    transformer, train, _ = fitted
    buffer = io.BytesIO()
    joblib.dump(transformer, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)

    np.testing.assert_array_equal(loaded.transform(train), transformer.transform(train))
    assert list(loaded.get_feature_names_out()) == list(transformer.get_feature_names_out())


def test_output_is_float32_named_by_family_and_informative(cfg, data, fitted):
    _, past, future, cutoff = data
    transformer, _, matrix = fitted
    names = list(transformer.get_feature_names_out())
    assert matrix.dtype == np.float32 and matrix.shape[1] == len(names) >= 30
    assert len(set(names)) == len(names)
    assert {n.split("_")[0] for n in names} == {"text", "sender", "structure", "behavior"}
    assert np.isfinite(matrix).all()

    rows = attach_history(cfg, future, earlier=past, label_cutoff=cutoff)
    scores = transformer.transform_frame(rows)["text_model_score"]
    positive = targets(cfg, rows) == 1
    assert scores[positive].mean() > scores[~positive].mean() + 0.3


def test_hand_made_email_gets_the_expected_values(cfg, fitted):
    transformer, _, _ = fitted
    row = pd.DataFrame(
        [
            {
                "received_at": T0,
                "sender": "jo4821@mail.shop-2024.example",
                "sender_domain": "mail.shop-2024.example",
                "reply_to": "refunds@elsewhere.example",
                "recipient_count": 3,
                "subject": "URGENT: you are a WINNER",
                "body": "Claim your FR33 prize! Click here: verify your account!",
                "content_type": "text/plain",
                "urls": "https://shop-2024.example/a http://10.0.0.1/b https://bit.ly/c",
                "attachment_count": 2,
                "attachment_types": "pdf,EXE",
                "inline_image_count": 0,
                **{c: 0 for c in HISTORY_COLUMNS},
                "entity_seconds_since_prev": np.nan,
                "entity_account_age_days": np.nan,
            }
        ]
    )
    f = transformer.transform_frame(row).iloc[0]

    assert f["text_phrase_urgent"] == 1 and f["text_phrase_winner"] == 1
    assert f["text_phrase_free"] == 1  # "FR33" read as "free"
    assert f["text_phrase_click_here"] == 1 and f["text_phrase_verify_account"] == 1
    assert f["text_exclamations"] == 2 and f["text_obfuscation_ratio"] > 0
    assert f["structure_url_count"] == 3 and f["structure_url_ip_host"] == 1
    assert f["structure_link_host_mismatch_share"] == pytest.approx(2 / 3)
    assert f["structure_url_shorteners"] == 1
    assert f["structure_attachment_count"] == 2 and f["structure_risky_attachments"] == 1
    assert f["structure_reply_to_present"] == 1 and f["structure_reply_to_mismatch"] == 1
    assert f["sender_domain_digits"] == 4 and f["sender_local_digits"] == 4
    assert f["sender_is_new"] == 1 and f["sender_age_known"] == 0
    assert f["behavior_seconds_since_prev_log"] == -1
    assert f["behavior_recipient_count_log"] == pytest.approx(np.log1p(3))


def test_leaner_schemas_and_loose_dtypes_work_row_by_row_as_in_batch(cfg, data, fitted):
    _, past, future, cutoff = data
    transformer, _, _ = fitted
    rows = attach_history(cfg, future.head(12), earlier=past, label_cutoff=cutoff)
    loose = rows.drop(columns=["urls", "reply_to", "attachment_types", "content_type"]).astype(
        {"subject": object, "body": object, "recipient_count": "Int64"}
    )
    loose.loc[loose.index[0], "subject"] = None
    loose.loc[loose.index[1], "recipient_count"] = pd.NA

    batch = transformer.transform(loose)
    one_by_one = np.vstack([transformer.transform(loose.iloc[[i]]) for i in range(len(loose))])

    np.testing.assert_array_equal(one_by_one, batch)
    names = list(transformer.get_feature_names_out())
    assert (batch[:, names.index("structure_url_count")] == 0).all()


def test_a_host_longer_than_a_dns_name_stays_out_of_the_domain_cache():
    # Request fields run to a megabyte: caching such "hosts" would let clients fill memory.
    cached = sender._cached_base_domain.cache_info().currsize
    assert sender.base_domain("x." * 5000 + "Example.CO.uk") == "example.co.uk"
    assert sender._cached_base_domain.cache_info().currsize == cached
    assert sender.base_domain("mail.example.com") == "example.com"
    assert sender._cached_base_domain.cache_info().currsize <= cached + 1


def test_hashing_is_fixed_across_processes():
    # Pinned values: Python's str hash is salted per process; these hashes must not be.
    columns, documents = ngram_occurrences(
        ["abcd", "xy z"], bits=8, char_ngrams=(3,), char_window=10, word_window=10
    )
    assert documents.tolist() == [0, 0, 1, 1, 0, 1]
    assert columns.tolist() == COLUMNS_PINNED


COLUMNS_PINNED = [161, 250, 2, 170, 403, 482]


# --- the features stage ----------------------------------------------------------------------


def test_build_writes_parts_with_history_and_the_store(cfg, data, tmp_path):
    df, _, _, _ = data
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    n = len(df)
    bounds = {"train": (0, int(n * 0.7)), "validation": (int(n * 0.7), int(n * 0.85))}
    bounds["test"] = (int(n * 0.85), n)
    for name, (start, stop) in bounds.items():
        df.iloc[start:stop].to_parquet(split_dir / f"{name}.parquet", index=False)
    store_path = tmp_path / "store" / "senders.db"

    result = build.run(cfg, split_dir, tmp_path / "features", store_url=f"sqlite:///{store_path}")

    for name, (start, stop) in bounds.items():
        part = pd.read_parquet(result.paths[name])
        assert len(part) == stop - start == result.rows[name]
        assert set(HISTORY_COLUMNS) <= set(part.columns)
        assert part["message_id"].tolist() == df["message_id"].iloc[start:stop].tolist()
    test = pd.read_parquet(result.paths["test"])
    assert (test["entity_past_count"] > 0).mean() > 0.5  # test rows see train + validation
    assert store_path.is_file() and result.entities == df["sender"].nunique()
    assert "entities" in result.summary() and result.summary_path.is_file()


def test_email_contract_leaves_only_unread_columns_to_the_role_families(cfg):
    families = build_features(cfg).families
    roles = {type(f): f.consumes for f in families if isinstance(f, ROLE_FAMILIES)}
    # Every numeric / categorical / datetime column is read by the email families (the
    # account creation time through the entity history), which skip the clock: flags remain.
    assert roles == {FlagFeatures: ("quality_flags",)}
