"""Features from the contract's column roles: a column added to the contract is used without code.

The role families (numeric, categorical, timestamp, datetime, flags) get every contract column
of their role that the domain families do not read; hostile values give finite output, a row
alone the same as in a batch; target encoding is out of fold; a contract without text trains.
"""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_contract import reference_config
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from {{cookiecutter.package_name}}.config import SystemConfig, load_config
from {{cookiecutter.package_name}}.features.categorical import CategoricalFeatures
from {{cookiecutter.package_name}}.features.clock import DatetimeFeatures, TimestampFeatures
from {{cookiecutter.package_name}}.features.flags import FlagFeatures
from {{cookiecutter.package_name}}.features.history import attach_history
from {{cookiecutter.package_name}}.features.numeric import NumericFeatures
from {{cookiecutter.package_name}}.features.pipeline import build_features
from {{cookiecutter.package_name}}.features.roles import role_families
from {{cookiecutter.package_name}}.features.text import time_folds
from {{cookiecutter.package_name}}.models import baseline

T0 = pd.Timestamp("2025-03-03", tz="UTC")
# Column names no code has ever seen: only the contract names them.
NEW_NUMERIC, NEW_CATEGORY = "zq_ratio", "zq_tier"
ROLE_FAMILIES = (
    NumericFeatures,
    CategoricalFeatures,
    TimestampFeatures,
    DatetimeFeatures,
    FlagFeatures,
)


@pytest.fixture(scope="module")
def cfg(cfg):
    """The reference contract: this module's frames are built by hand in its schema."""
    return reference_config(cfg)


def contract(project_root, tmp_path, columns=None, extra=()) -> SystemConfig:
    """The reference contract with ``data.columns`` replaced by ``columns`` and/or extended."""
    project = load_config(project_root / "configs" / "system.yaml")
    raw = reference_config(project).model_dump(mode="json", exclude={"root"})
    raw["data"]["columns"] = [*(columns or raw["data"]["columns"]), *extra]
    raw["root"] = str(tmp_path)
    return SystemConfig.model_validate(raw)


def extended(project_root, tmp_path) -> SystemConfig:
    return contract(
        project_root,
        tmp_path,
        extra=[
            {"name": NEW_NUMERIC, "dtype": "float", "role": "numeric", "nullable": True},
            {"name": NEW_CATEGORY, "dtype": "string", "role": "categorical", "nullable": True},
        ],
    )


def plain_records(cfg, n=600, seed=0) -> pd.DataFrame:
    """Records alike in every column (same words, accounts at random): no signal but the
    new columns. The label is drawn at random; tests overwrite it from a new column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(n)],
            "received_at": T0 + pd.to_timedelta(np.sort(rng.integers(0, 3 * 86400, n)), "s"),
            "account": [f"user{k}@host.example" for k in rng.integers(0, 300, n)],
            "account_domain": "host.example",
            "account_created_at": pd.NaT,
            "reply_to": None,
            "recipient_count": 1,
            "subject": "hello",
            "body": "see you at the usual place",
            "content_type": "text/plain",
            "urls": "",
            "attachment_count": 0,
            "attachment_types": "",
            "inline_image_count": 0,
            "quality_flags": "",
            NEW_NUMERIC: rng.normal(size=n),
            NEW_CATEGORY: rng.choice(["north", "south", "east", "west"], n),
        }
    )
    return frame.assign(label=labels(cfg, rng.random(n) < 0.5))


def labels(cfg, positive: np.ndarray) -> np.ndarray:
    return np.where(positive, cfg.problem.positive_class, cfg.problem.negative_class)


def targets(cfg, frame) -> np.ndarray:
    return (frame["label"] == cfg.problem.positive_class).to_numpy().astype(int)


def held_out_auc(cfg, frame) -> tuple[float, list[str]]:
    """ROC-AUC on the last 30% of a small tree fitted on the first 70% of the features."""
    rows = attach_history(cfg, frame)
    y = targets(cfg, rows)
    cut = int(len(rows) * 0.7)
    features = build_features(cfg)
    x_train = features.fit_transform(rows.iloc[:cut], y[:cut])
    x_test = features.transform(rows.iloc[cut:])
    tree = DecisionTreeClassifier(max_depth=3, min_samples_leaf=20, random_state=0)
    tree.fit(x_train, y[:cut])
    auc = roc_auc_score(y[cut:], tree.predict_proba(x_test)[:, 1])
    return auc, list(features.get_feature_names_out())


# --- (a) a column added to the contract is used without code --------------------------------


def test_new_numeric_column_is_a_feature_and_carries_the_label(cfg, project_root, tmp_path):
    wide = extended(project_root, tmp_path)
    frame = plain_records(wide)
    frame["label"] = labels(wide, frame[NEW_NUMERIC] + 0.3 * np.sin(np.arange(len(frame))) > 0)

    auc, names = held_out_auc(wide, frame)
    assert f"num_{NEW_NUMERIC}" in names and f"num_{NEW_NUMERIC}_missing" in names
    assert auc > 0.9
    # Without the column in the contract, nothing else separates the classes.
    without, names = held_out_auc(cfg, frame)
    assert not any(NEW_NUMERIC in n for n in names) and without < 0.7


def test_new_categorical_column_is_a_feature_and_carries_the_label(cfg, project_root, tmp_path):
    wide = extended(project_root, tmp_path)
    frame = plain_records(wide, seed=1)
    rng = np.random.default_rng(1)
    risky = frame[NEW_CATEGORY].isin(["north", "east"]).to_numpy()
    frame["label"] = labels(wide, np.where(risky, rng.random(len(frame)) < 0.9, False))

    auc, names = held_out_auc(wide, frame)
    assert {f"cat_{NEW_CATEGORY}_freq", f"cat_{NEW_CATEGORY}_target"} <= set(names)
    assert auc > 0.9
    without, _ = held_out_auc(cfg, frame)
    assert without < 0.7


def test_baseline_uses_the_new_columns(project_root, tmp_path):
    wide = extended(project_root, tmp_path)
    frame = plain_records(wide, seed=2)
    signal = frame[NEW_NUMERIC] + frame[NEW_CATEGORY].map({"north": 2, "south": -2}).fillna(0)
    frame["label"] = labels(wide, signal > 0)
    train, test = frame.iloc[:400], frame.iloc[400:]

    bundle = baseline.train_baseline(wide, train)

    params = bundle.metadata["params"]
    assert NEW_NUMERIC in params["numeric_columns"]
    assert NEW_CATEGORY in params["categorical_columns"]
    assert roc_auc_score(targets(wide, test), bundle.score(test)) > 0.9


def test_feature_names_from_two_columns_are_refused(project_root, tmp_path):
    clash = contract(
        project_root,
        tmp_path,
        extra=[
            {"name": "zq", "dtype": "float", "role": "numeric", "nullable": True},
            {"name": "zq_missing", "dtype": "float", "role": "numeric"},
        ],
    )
    rows = attach_history(clash, plain_records(clash).assign(zq=1.0, zq_missing=0.0))
    with pytest.raises(ValueError, match="num_zq_missing come from two columns"):
        build_features(clash).fit_transform(rows, targets(clash, rows))


# --- (b) hostile values: finite float32 output, a row alone equals the row in a batch ----------

ANYTHING = st.one_of(
    st.none(),
    st.just(np.nan),
    st.just(pd.NA),
    st.just(pd.NaT),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.text(max_size=6),
    st.sampled_from(["", " ", "a", "b", "é", "\x00", "1e400", "-0", "a,b", "2024-05-01T12:00"]),
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    ),
)
TIMES = st.one_of(
    st.none(),
    st.just(pd.NaT),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01", "now", "tomorrow", "", "12"]),
    st.floats(),
)
FLAGS = st.one_of(
    st.none(),
    st.lists(st.sampled_from(["missing:x", "mime:defect", "a:b", "a-b", "count", " ", ""])).map(
        ",".join
    ),
    st.text(max_size=8),
)


def frame_of(values: dict[str, list], as_object: bool) -> pd.DataFrame:
    frame = pd.DataFrame(values)
    return frame.astype(object) if as_object else frame


def family_for(kind: str):
    return {
        "numeric": NumericFeatures(("v", "w"), nullable=("w",)),
        "categorical": CategoricalFeatures(("v", "w"), smoothing=2.0),
        "timestamp": TimestampFeatures("t"),
        "datetime": DatetimeFeatures(("v", "w"), timestamp="t", nullable=("v",)),
        "flags": FlagFeatures(("v",), max_flags=3),
    }[kind]


def check_batch_and_rows(family, frame: pd.DataFrame) -> None:
    batch = family.transform(frame)
    names = family.get_feature_names_out()
    assert batch.shape == (len(frame), len(names))
    assert np.isfinite(batch.astype(np.float32)).all()
    for i in range(len(frame)):
        np.testing.assert_array_equal(family.transform(frame.iloc[[i]])[0], batch[i])


HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", ["numeric", "categorical", "flags"])
@HYPOTHESIS
@given(data=st.data(), as_object=st.booleans())
def test_value_families_on_any_values(kind, data, as_object):
    cells = FLAGS if kind == "flags" else ANYTHING
    n_fit = data.draw(st.integers(1, 12), label="fit rows")
    fit = frame_of(
        {
            "v": data.draw(st.lists(cells, min_size=n_fit, max_size=n_fit)),
            "w": data.draw(st.lists(cells, min_size=n_fit, max_size=n_fit)),
        },
        as_object,
    )
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n_fit, max_size=n_fit)))
    family = family_for(kind).fit(fit, y)
    n = data.draw(st.integers(5, 9), label="rows")  # more than a serving frame: the batch path
    rows = frame_of(
        {
            "v": data.draw(st.lists(cells, min_size=n, max_size=n)),
            "w": data.draw(st.lists(cells, min_size=n, max_size=n)),
        },
        as_object,
    )
    check_batch_and_rows(family, rows)


@pytest.mark.parametrize("kind", ["timestamp", "datetime"])
@HYPOTHESIS
@given(data=st.data(), as_object=st.booleans())
def test_time_families_on_any_times(kind, data, as_object):
    def draw_frame(n):
        return frame_of(
            {c: data.draw(st.lists(TIMES, min_size=n, max_size=n)) for c in ("t", "v", "w")},
            as_object,
        )

    family = family_for(kind).fit(draw_frame(data.draw(st.integers(1, 8))), None)
    check_batch_and_rows(family, draw_frame(data.draw(st.integers(5, 9))))


def test_time_values_are_read_in_utc():
    frame = pd.DataFrame(
        {
            "t": [pd.Timestamp("2025-03-03 23:30", tz="UTC"), "2025-03-04T01:30:00+02:00"],
            "v": [pd.Timestamp("2025-03-01 23:30"), None],
        }
    )
    clock = TimestampFeatures("t").fit(frame).transform(frame)
    # Monday 23:30 UTC; Tuesday 01:30 at +02:00 is Monday 23:30 UTC.
    assert clock.tolist() == [[23.0, 0.0], [23.0, 0.0]]
    ages = DatetimeFeatures(("v",), timestamp="t", nullable=("v",)).fit(frame).transform(frame)
    assert ages.tolist() == [[2.0, 0.0], [2.0, 1.0]]  # missing: the training median, flagged
    # Only ISO 8601 text is a time: pandas would read "now" as the clock's time.
    words = pd.DataFrame({"t": ["now", "today", "12", "2025-03-03T23:30Z"]})
    assert TimestampFeatures("t").transform(words)[:, 0].tolist() == [-1, -1, -1, 23]


# --- (c) out-of-fold target encoding does not leak ---------------------------------------------


def test_a_category_of_one_row_learns_nothing_from_its_own_label():
    rng = np.random.default_rng(0)
    n = 200
    values = rng.choice(["a", "b", "c"], n).astype(object)
    values[57] = "only-here"
    cols = pd.DataFrame({"v": values})
    y = (rng.random(n) < 0.4).astype(int)
    folds = time_folds(n, 5)

    def target_of_row(labels, out_of_fold=True):
        family = CategoricalFeatures(("v",))
        if out_of_fold:
            return family.fit_transform(cols, labels, folds=folds)[57, 1]
        return family.fit(cols, labels).transform(cols)[57, 1]

    flipped = y.copy()
    flipped[57] = 1 - y[57]
    assert target_of_row(y) == target_of_row(flipped)
    others = folds != folds[57]
    assert target_of_row(y) == pytest.approx(y[others].mean())  # the other folds' prior
    # In-sample encoding would leak: the same row's value follows its own label.
    assert target_of_row(y, out_of_fold=False) != target_of_row(flipped, out_of_fold=False)


def test_flags_seen_in_training_become_indicators_and_a_flagless_column_nothing():
    train = pd.DataFrame({"f": ["b:x,a", "a", "", None], "g": ["", None, "", ""]})
    family = FlagFeatures(("f", "g"), max_flags=1).fit(train)
    assert family.get_feature_names_out().tolist() == ["flags_f_count", "flags_f_is_a"]
    rows = pd.DataFrame({"f": ["a, c ,a", "b:x", None], "g": ["new", "", ""]})
    assert family.transform(rows).tolist() == [[2, 1], [1, 0], [0, 0]]


def test_unseen_and_missing_categories_get_defined_values():
    cols = pd.DataFrame({"v": ["a", "a", None, "b"]})
    family = CategoricalFeatures(("v",), smoothing=0.0).fit(cols, np.array([1, 1, 0, 0]))
    out = family.transform(pd.DataFrame({"v": ["zzz", None, "", "a"]}))
    assert out.tolist() == [[0.0, 0.5], [0.25, 0.0], [0.25, 0.0], [0.5, 1.0]]


# --- (d) a contract without text ---------------------------------------------------------------

NO_TEXT = [
    {"name": "txn_id", "dtype": "string", "role": "id", "nullable": False, "unique": True},
    {"name": "paid_at", "dtype": "datetime", "role": "timestamp", "nullable": False},
    {"name": "card", "dtype": "string", "role": "entity_key", "nullable": False},
    {"name": "amount", "dtype": "float", "role": "numeric", "nullable": True},
    {"name": "merchant", "dtype": "string", "role": "categorical", "nullable": False},
    {"name": "card_issued_at", "dtype": "datetime", "role": "datetime", "nullable": True},
    {"name": "risk_flags", "dtype": "string", "role": "flags", "nullable": True},
    {"name": "label", "dtype": "string", "role": "label", "nullable": False},
]


def test_every_free_column_goes_to_its_role_family_unless_the_role_is_skipped(
    project_root, tmp_path
):
    card = contract(project_root, tmp_path, columns=NO_TEXT)
    assert {type(f): f.consumes for f in role_families(card)} == {
        NumericFeatures: ("amount",),
        CategoricalFeatures: ("merchant",),
        TimestampFeatures: ("paid_at",),
        DatetimeFeatures: ("card_issued_at",),
        FlagFeatures: ("risk_flags",),
    }
    skipped = role_families(card, skip_roles=frozenset({"timestamp", "flags"}))
    assert {type(f) for f in skipped} == {NumericFeatures, CategoricalFeatures, DatetimeFeatures}
    read = {"amount", "merchant", "paid_at", "card_issued_at", "risk_flags"}
    assert role_families(card, consumed=read) == []  # nothing left: no family, no cost


def payments(cfg, n=500, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    merchant = rng.choice(["grocer", "fuel", "casino", "games"], n)
    amount = rng.lognormal(3, 1, n)
    risky = np.isin(merchant, ["casino", "games"]) & (amount > 5)
    paid = T0 + pd.to_timedelta(np.sort(rng.integers(0, 7 * 86400, n)), "s")
    return pd.DataFrame(
        {
            "txn_id": [f"t{i}" for i in range(n)],
            "paid_at": paid,
            "card": [f"card{k}" for k in rng.integers(0, 60, n)],
            "amount": np.where(rng.random(n) < 0.1, np.nan, amount),
            "merchant": merchant,
            "card_issued_at": paid - pd.to_timedelta(rng.integers(1, 900, n), "D"),
            "risk_flags": np.where(rng.random(n) < 0.2, "geo:mismatch", ""),
            "label": labels(cfg, risky | (rng.random(n) < 0.03)),
        }
    )


def test_contract_without_text_builds_features_and_trains_the_baseline(project_root, tmp_path):
    card = contract(project_root, tmp_path, columns=NO_TEXT)
    frame = payments(card)
    train, test = frame.iloc[:350], frame.iloc[350:]
    rows = attach_history(card, train)

    features = build_features(card)
    matrix = features.fit_transform(rows, targets(card, rows))
    names = list(features.get_feature_names_out())
    assert not any(n.startswith(("text_", "structure_")) for n in names)
    assert {"num_amount", "num_amount_missing", "cat_merchant_target"} <= set(names)
    assert {"dt_card_issued_at_age_days", "flags_risk_flags_is_geo_mismatch"} <= set(names)
    assert matrix.shape == (len(rows), len(names)) and np.isfinite(matrix).all()
    one = attach_history(card, test.iloc[[0]], earlier=train)
    assert features.transform(one).shape == (1, len(names))

    bundle = baseline.train_baseline(card, train)
    params = bundle.metadata["params"]
    assert params["text_columns"] == [] and "vocabulary" not in params
    assert params["numeric_columns"] == ["amount"] and params["categorical_columns"] == ["merchant"]
    assert roc_auc_score(targets(card, test), bundle.score(test)) > 0.9
    assert np.isfinite(bundle.score(test.iloc[[0]].drop(columns=["amount"]))).all()
