"""The fraud pack: its world of cards and merchants (synthetic.py) and its families (features.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from {{ cookiecutter.package_name }}.domain.fraud import features as ff
from {{ cookiecutter.package_name }}.domain.fraud import synthetic as fs
from {{ cookiecutter.package_name }}.entity_history import point_in_time_history
from {{ cookiecutter.package_name }}.features.history import PREFIX
from {{ cookiecutter.package_name }}.features.pipeline import FeatureTransformer

SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _frame(n=4000, seed=3, **kw) -> pd.DataFrame:
    return fs.generate(n, seed, **kw)


# --- the world --------------------------------------------------------------------------------


def test_same_seed_same_rows_other_seed_other_rows():
    a, b = _frame(3000, 11), _frame(3000, 11)
    pd.testing.assert_frame_equal(a, b)
    c = _frame(3000, 12)
    assert not a["amount"].equals(c["amount"])


@SLOW
@given(
    n=st.integers(1, 6000),
    block=st.integers(1, 7000),
    seed=st.integers(0, 2**31),
    days=st.integers(1, 40),
)
def test_content_does_not_depend_on_block_rows(n, block, seed, days):
    whole = fs.generate(n, seed, days=days)
    parts = list(fs.frames(n, seed, days, fs.DEFAULT_START, 0.0, ("fraud", "legit"), block))
    assert len(parts) >= 1
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)


def test_schema_dtypes_and_basic_invariants():
    df = _frame(20_000, 1)
    assert tuple(df.columns) == fs.COLUMNS
    assert len(df) == 20_000
    assert str(df["occurred_at"].dtype) == "datetime64[ns, UTC]"
    assert str(df["card_created_at"].dtype) == "datetime64[ns, UTC]"
    assert df["amount"].dtype == np.float64
    for c in ("transaction_id", "card_id", "merchant_id", "merchant_category", "channel", "label"):
        assert pd.api.types.is_string_dtype(df[c].dtype), c
    assert df["transaction_id"].is_unique
    assert df["occurred_at"].is_monotonic_increasing
    assert (df["amount"] > 0).all() and np.isfinite(df["amount"]).all()
    assert set(df["channel"]) <= {"chip", "contactless", "magstripe", "online"}
    assert set(df["label"]) == {"fraud", "legit"}
    assert df.drop(columns="card_created_at").notna().all().all()
    assert df["card_created_at"].notna().mean() > 0.95  # the contract's `mostly`
    start = pd.Timestamp(fs.DEFAULT_START)
    assert df["occurred_at"].min() >= start
    assert df["occurred_at"].max() < start + pd.Timedelta(days=30)
    # A card is used only after it was issued.
    issued = df["card_created_at"].notna()
    assert (df.loc[issued, "occurred_at"] >= df.loc[issued, "card_created_at"]).mean() > 0.999


def test_labels_follow_the_given_class_names_and_empty_has_the_schema():
    df = fs.generate(500, 2, positive="yes", negative="no")
    assert set(df["label"]) <= {"yes", "no"}
    empty = fs.generate(0, 2)
    assert tuple(empty.columns) == fs.COLUMNS and len(empty) == 0
    assert str(empty["occurred_at"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_fraud_rate_in_band(seed):
    rate = (_frame(20_000, seed)["label"] == "fraud").mean()
    assert 0.015 <= rate <= 0.025


def test_drift_moves_the_world():
    base, moved = _frame(30_000, 9), _frame(30_000, 9, drift=1.0)
    new_cats = {"crypto_exchange", "ev_charging", "marketplace"}
    new_countries = {"NG", "VN", "AE", "PH", "RO"}
    assert not set(base["merchant_category"]) & new_cats
    assert not set(base["merchant_country"]) & new_countries
    assert moved["merchant_category"].isin(new_cats).mean() > 0.02
    assert moved["merchant_country"].isin(new_countries).mean() > 0.02
    assert moved["amount"].median() > 1.15 * base["amount"].median()
    assert (moved["label"] == "fraud").mean() > (base["label"] == "fraud").mean() + 0.005


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": -1, "seed": 1},
        {"n": 10, "seed": 1, "days": 0},
        {"n": 10, "seed": 1, "drift": 1.5},
        {"n": 10, "seed": 1, "start": datetime(2025, 1, 1)},
    ],
)
def test_bad_arguments_are_refused(kwargs):
    n, seed = kwargs.pop("n"), kwargs.pop("seed")
    with pytest.raises(ValueError):
        fs.generate(n, seed, **kwargs)


def test_every_fraud_kind_occurs_and_no_raw_column_gives_it_away():
    from sklearn.metrics import average_precision_score

    df = fs.generate(40_000, 4, with_kind=True)
    kinds = set(df["fraud_kind"]) - {""}
    assert set(fs.FRAUD_KINDS) <= kinds
    y = (df["label"] == "fraud").to_numpy()
    local = (df["occurred_at"].dt.hour + df["card_country"].map(ff.COUNTRY_UTC_OFFSET)) % 24
    candidates = {
        "amount": df["amount"],
        "-amount": -df["amount"],
        "mismatch": df["merchant_country"] != df["card_country"],
        "online": df["channel"] == "online",
        "magstripe": df["channel"] == "magstripe",
        "night": local < 6,
    }
    for name, values in candidates.items():
        assert average_precision_score(y, values.astype(float)) < 0.3, name


def _with_history(df: pd.DataFrame) -> pd.DataFrame:
    hist = point_in_time_history(
        df,
        entity="card_id",
        timestamp="occurred_at",
        label="label",
        positive="fraud",
        prior_rate=0.03,
        prior_strength=5.0,
        created_at="card_created_at",
    )
    return pd.concat([df, hist.rename(columns=lambda c: PREFIX + c)], axis=1)


def _cfg():
    """The parts of the contract ``fraud_families`` reads."""
    roles = {
        "transaction_id": "id",
        "occurred_at": "timestamp",
        "card_id": "entity_key",
        "card_created_at": "datetime",
        "merchant_id": "categorical",
        "merchant_category": "categorical",
        "merchant_country": "categorical",
        "card_country": "categorical",
        "channel": "categorical",
        "amount": "numeric",
        "label": "label",
    }
    columns = [SimpleNamespace(name=n, role=r) for n, r in roles.items()]
    data = SimpleNamespace(
        columns=columns,
        entity="card_id",
        timestamp="occurred_at",
        column=lambda role: next(c for c in columns if c.role == role),
        columns_with=lambda role: [c for c in columns if c.role == role],
    )
    return SimpleNamespace(data=data)


FAMILIES = [
    ff.CountryFeatures(),
    ff.AmountFeatures(),
    ff.ClockFeatures(),
    ff.VelocityFeatures(),
]


@pytest.fixture(scope="module")
def rows():
    df = _with_history(_frame(6000, 21))
    return df, (df["label"] == "fraud").to_numpy().astype(int)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: type(f).__name__)
def test_family_shape_names_and_finite(family, rows):
    df, y = rows
    out = family.fit(df, y).transform(df)
    names = family.get_feature_names_out()
    assert out.shape == (len(df), len(names))
    assert np.isfinite(out).all()
    assert len(set(names)) == len(names)
    assert set(family.consumes) <= set(fs.COLUMNS)
    # A served request of one row gets the same values as in a batch.
    for i in (0, len(df) // 2, len(df) - 1):
        np.testing.assert_allclose(family.transform(df.iloc[[i]]), out[[i]])


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: type(f).__name__)
def test_family_on_unseen_and_missing_values(family, rows):
    df, y = rows
    family.fit(df, y)
    odd = df.iloc[:4].copy()
    odd["merchant_category"] = ["space_tourism", None, "", "grocery"]
    odd["card_country"] = ["ZZ", None, "US", "US"]
    odd["merchant_country"] = ["US", "US", None, "XX"]
    odd["channel"] = ["telepathy", None, "online", "chip"]
    odd["amount"] = [np.nan, 0.0, 1e15, 3.0]
    odd["occurred_at"] = [pd.NaT, *odd["occurred_at"].iloc[1:]]
    for c in ("entity_count_1h", "entity_seconds_since_prev", "entity_account_age_days"):
        odd[c] = [np.nan, np.inf, -5.0, 2.0]
    out = family.transform(odd)
    assert out.shape == (4, len(family.get_feature_names_out()))
    assert np.isfinite(out).all()


def test_country_and_amount_semantics():
    df = pd.DataFrame(
        {
            "card_country": ["US", "US", None],
            "merchant_country": ["US", "GB", "GB"],
            "channel": ["chip", "magstripe", "online"],
            "amount": [1.0, 100.0, 19.99],
            "merchant_category": ["grocery"] * 3,
        }
    )
    country = ff.CountryFeatures().transform(df)
    np.testing.assert_array_equal(country[:, 0], [0, 1, 0])  # unknown is no mismatch
    np.testing.assert_array_equal(country[:, 2], [0, 1, 0])  # present abroad
    np.testing.assert_array_equal(country[:, 3], [0, 1, 0])  # magstripe
    train = pd.DataFrame({"amount": [40.0] * 30, "merchant_category": ["grocery"] * 30})
    amount = ff.AmountFeatures().fit(train).transform(df)
    assert amount[1, 1] > 0 > amount[0, 1]  # above / below the category's typical amount
    np.testing.assert_array_equal(amount[:, 3], [1, 0, 0])  # tiny
    np.testing.assert_array_equal(amount[:, 4], [1, 1, 0])  # whole
    np.testing.assert_array_equal(amount[:, 5], [0, 0, 1])  # .99


def test_clock_reads_the_card_home_time():
    t = pd.Series(pd.to_datetime(["2025-03-03T07:30:00Z", "2025-03-03T07:30:00Z"]))
    df = pd.DataFrame(
        {"occurred_at": t, "card_country": ["US", "JP"], "merchant_country": ["JP", "JP"]}
    )
    out = ff.ClockFeatures().transform(df)
    np.testing.assert_array_equal(out[:, 0], [2, 16])  # 02:00 in New York, 16:00 in Tokyo
    np.testing.assert_array_equal(out[:, 1], [1, 0])
    np.testing.assert_array_equal(out[:, 2], [16, 16])


def test_fraud_families_compose_into_the_project_transformer(rows):
    df, y = rows
    families = ff.fraud_families(_cfg())
    kinds = [type(f).__name__ for f in families]
    assert kinds == [
        "CountryFeatures",
        "AmountFeatures",
        "ClockFeatures",
        "VelocityFeatures",
        "CategoricalFeatures",
    ]
    # The categoricals the families read keep the core encoding; merchant_id is left to the core.
    assert set(families[-1].consumes) == {
        "card_country",
        "merchant_country",
        "channel",
        "merchant_category",
    }
    transformer = FeatureTransformer(families, timestamp="occurred_at", required=("card_id",))
    x = transformer.fit_transform(df, y)
    names = transformer.get_feature_names_out()
    assert x.shape == (len(df), len(names)) and np.isfinite(x).all()
    assert "cat_merchant_category_target" in names
    np.testing.assert_allclose(transformer.transform(df.iloc[:3]), transformer.transform(df)[:3])


def test_families_read_no_label():
    df = _with_history(_frame(3000, 8))
    flipped = df.assign(label="legit")
    for family in FAMILIES:
        a = family.fit(df, np.zeros(len(df))).transform(df)
        b = family.fit(flipped, np.ones(len(df))).transform(flipped)
        np.testing.assert_array_equal(a, b)


@SLOW
@given(
    amounts=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()), min_size=1, max_size=8
    ),
    countries=st.lists(st.sampled_from(["US", "GB", "ZZ", "", None]), min_size=8, max_size=8),
)
def test_amount_and_country_never_emit_nan(amounts, countries):
    n = len(amounts)
    df = pd.DataFrame(
        {
            "amount": pd.array(amounts, dtype="object"),
            "merchant_category": ["grocery"] * n,
            "card_country": countries[:n],
            "merchant_country": list(reversed(countries))[:n],
            "channel": ["online"] * n,
            "occurred_at": pd.Timestamp("2025-03-03T00:00:00Z"),
        }
    )
    train = pd.DataFrame({"amount": np.linspace(1, 100, 40), "merchant_category": ["grocery"] * 40})
    amount = ff.AmountFeatures().fit(train)
    for family in (amount, ff.CountryFeatures(), ff.ClockFeatures()):
        out = family.transform(df)
        assert out.shape[0] == n and np.isfinite(out).all()


def test_daily_rhythm_follows_local_time_whatever_the_start_hour():
    def night_share(start):
        df = fs.generate(20_000, 5, start=start)
        legit = df[df["label"] == "legit"]
        hour = (
            legit["occurred_at"].dt.hour + legit["card_country"].map(ff.COUNTRY_UTC_OFFSET)
        ) % 24
        return (hour < 6).mean()

    midnight = night_share(datetime(2025, 3, 3, tzinfo=UTC))
    afternoon = night_share(datetime(2025, 3, 5, 13, 30, tzinfo=UTC))
    assert midnight < 0.12 and abs(midnight - afternoon) < 0.02


def test_start_must_be_aware_and_other_start_shifts_times():
    later = datetime(2025, 6, 2, tzinfo=UTC)
    a, b = fs.generate(1000, 3), fs.generate(1000, 3, start=later)
    shift = b["occurred_at"].iloc[0] - a["occurred_at"].iloc[0]
    assert shift == pd.Timestamp(later) - pd.Timestamp(fs.DEFAULT_START)
