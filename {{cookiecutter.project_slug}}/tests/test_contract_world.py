"""The world made from the contract alone (``data/contract_world.py``): records for any schema.

It backs ``data generate`` when the domain pack has no world (``data.domain: none``), so its
records must pass the contract's own validation whatever columns the contract holds, carry a
signal, and come out the same for a seed.
"""

import numpy as np
import pandas as pd
import pytest
from contract_labels import NEG, POS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_contract import columns as reference_columns
from reference_contract import reference_config

from {{cookiecutter.package_name}}.config import SystemConfig
from {{cookiecutter.package_name}}.data import split, synthetic
from {{cookiecutter.package_name}}.data.contract_world import ContractWorld
from {{cookiecutter.package_name}}.data.validate import validate_records


def _world_frame(cfg, n=3000, seed=1, drift=0.0, days=30) -> pd.DataFrame:
    world = ContractWorld(cfg)
    frames = list(world.frames(n, seed, days, synthetic.DEFAULT_START, drift, (POS, NEG)))
    return pd.concat(frames, ignore_index=True) if frames else world.empty()


@pytest.fixture(scope="module")
def reference(cfg):
    return reference_config(cfg)


@pytest.mark.parametrize("contract", ["reference", "project"])
def test_its_records_pass_the_contracts_validation(cfg, reference, contract):
    """Every row passes, on the reference schema (every role) and on this project's own."""
    chosen = reference if contract == "reference" else cfg
    frame = _world_frame(chosen, n=2500)
    report = validate_records(chosen, frame, docs=False)
    assert not report.failures and not report.remainder_failures, report.summary()
    assert len(report.valid) == 2500


def test_a_seed_gives_the_same_records_and_another_seed_others(reference):
    first, again = _world_frame(reference, seed=3), _world_frame(reference, seed=3)
    pd.testing.assert_frame_equal(first, again)
    other = _world_frame(reference, seed=4)
    assert not first["body"].equals(other["body"])
    assert first.columns.tolist() == [c.name for c in reference.data.columns]
    assert first.dtypes.to_dict() == ContractWorld(reference).empty().dtypes.to_dict()


def test_rows_are_in_time_order_and_the_label_carries_a_signal(reference):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    frame = _world_frame(reference, n=6000)
    assert frame["received_at"].is_monotonic_increasing
    assert frame["message_id"].is_unique
    y = (frame["label"] == POS).to_numpy()
    assert 0.05 < y.mean() < 0.8
    numbers = frame[["recipient_count", "attachment_count", "inline_image_count"]].to_numpy(float)
    scores = LogisticRegression(max_iter=500).fit(numbers, y).predict_proba(numbers)[:, 1]
    assert roc_auc_score(y, scores) > 0.6
    # An entity's creation time is the same on every one of its rows, and before them.
    created = frame.dropna(subset=["account_created_at"]).groupby("account")["account_created_at"]
    assert (created.nunique() == 1).all()
    assert (frame["account_created_at"].dropna() <= frame["received_at"].min()).all()


def test_drift_moves_the_world(reference):
    calm, drifted = _world_frame(reference, n=4000), _world_frame(reference, n=4000, drift=1.0)
    assert (drifted["label"] == POS).mean() > (calm["label"] == POS).mean()
    assert "reply_to_new" in set(drifted["reply_to"].dropna())
    assert "reply_to_new" not in set(calm["reply_to"].dropna())


# --------------------------------------------------------------------------- any contract

NAMES = st.sampled_from([f"col_{i}" for i in range(12)])


@st.composite
def contracts(draw) -> list[dict]:
    """A contract's columns: an id, a label, maybe a time (and then maybe an entity with a
    creation time), and a few columns of any role, dtype, bounds and nullability."""
    columns = [
        {"name": "rid", "dtype": draw(st.sampled_from(["string", "int"])), "role": "id"},
        {"name": "y", "dtype": "string", "role": "label", "allowed": [POS, NEG]},
    ]
    if draw(st.booleans()):
        columns.append({"name": "t", "dtype": "datetime", "role": "timestamp"})
        if draw(st.booleans()):
            columns.append({"name": "who", "dtype": "string", "role": "entity_key"})
            columns.append(
                {
                    "name": "who_created_at",
                    "dtype": "datetime",
                    "role": "datetime",
                    "nullable": True,
                    "mostly": 0.5,
                    "min": "2000-01-01",
                }
            )
    names = draw(st.lists(NAMES, max_size=6, unique=True))
    for name in names:
        kind = draw(st.sampled_from(["int", "float", "bool", "category", "text", "flags"]))
        column = {"name": name, "nullable": draw(st.booleans())}
        if column["nullable"]:
            column["mostly"] = draw(st.sampled_from([0.0, 0.5, 0.95]))
        if kind in ("int", "float"):
            low = draw(st.one_of(st.none(), st.integers(-1000, 1000)))
            span = draw(st.one_of(st.none(), st.integers(0, 10**6)))
            column.update(dtype=kind, role="numeric", min=low)
            if span is not None:
                column["max"] = (low or 0) + span
                if low is None and column["max"] < 0:
                    column["max"] = None
        elif kind == "bool":
            column.update(dtype="bool", role="categorical")
        elif kind == "category":
            allowed = draw(
                st.one_of(
                    st.none(),
                    st.lists(st.text("abc", min_size=1), min_size=1, max_size=5, unique=True),
                )
            )
            column.update(dtype="string", role="categorical", allowed=allowed)
        elif kind == "text":
            column.update(dtype="string", role="text")
        else:
            column.update(dtype="string", role="flags")
        columns.append({k: v for k, v in column.items() if v is not None})
    return columns


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns=contracts(), n=st.integers(0, 700), seed=st.integers(0, 2**16))
def test_any_contract_gets_rows_its_row_checks_accept(cfg, columns, n, seed):
    """The class of contracts, checked without GX: dtypes as declared, ids unique, no null in a
    non-nullable column and no more than ``mostly`` allows, bounds and allowed values kept."""
    raw = cfg.model_dump(exclude={"root"})
    raw["data"].update(domain="none", columns=columns, column_mapping={}, label_folders={})
    contract = SystemConfig.model_validate({**raw, "root": cfg.root})
    world = ContractWorld(contract)
    frame = _world_frame(contract, n=n, seed=seed)
    assert len(frame) == n
    assert frame.dtypes.to_dict() == world.empty().dtypes.to_dict()
    assert frame["rid"].is_unique
    for column in contract.data.columns:
        values = frame[column.name]
        present = values.dropna()
        if not column.nullable:
            assert len(present) == n, column.name
        elif n >= 200:
            assert len(present) >= column.mostly * n - 3 * np.sqrt(n), column.name
        if column.allowed:
            assert set(present) <= set(column.allowed), column.name
        if column.dtype in ("int", "float") and len(present):
            if column.min is not None:
                assert present.min() >= column.min, column.name
            if column.max is not None:
                assert present.max() <= column.max, column.name
    if n:
        assert set(frame["y"]) <= {POS, NEG}


def test_records_without_a_time_are_split_at_random_within_each_label(cfg):
    """No timestamp: the split is seeded and stratified; the same seed draws the same parts."""
    kept = [c for c in reference_columns(POS, NEG) if c["role"] not in ("entity_key", "datetime")]
    kept = [c for c in kept if c["role"] != "timestamp"]
    raw = cfg.model_dump(exclude={"root"})
    raw["data"].update(domain="none", columns=kept, column_mapping={}, label_folders={})
    contract = SystemConfig.model_validate({**raw, "root": cfg.root})
    assert contract.data.timestamp is None
    frame = _world_frame(contract, n=4000)
    parts = split.split_stratified(contract, frame)
    again = split.split_stratified(contract, frame)
    sizes = {name: len(part) for name, part in parts.items()}
    assert sum(sizes.values()) == 4000 and abs(sizes["train"] - 2800) <= 2
    rates = [(part["label"] == POS).mean() for part in parts.values()]
    assert max(rates) - min(rates) < 0.01
    assert set().union(*(set(p.index) for p in parts.values())) == set(frame.index)
    for name in parts:
        assert parts[name].index.equals(again[name].index)
