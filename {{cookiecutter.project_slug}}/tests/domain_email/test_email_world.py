"""The synthetic corpus: deterministic, in the contract's schema, realistic where it matters."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from contract_labels import NEG, POS

from {{cookiecutter.package_name}}.data import synthetic
from {{cookiecutter.package_name}}.domain.email import synthetic as mail_world
from {{cookiecutter.package_name}}.domain.email.synthetic_world import SPAM_TLDS_NEW

ROWS = 3000


@pytest.fixture(scope="module")
def contract(cfg):
    return cfg


@pytest.fixture(scope="module")
def emails(contract):
    return synthetic.generate(contract, ROWS, 11)


def _tld(domains: pd.Series) -> pd.Series:
    return domains.str.rsplit(".", n=1).str[-1]


def test_same_seed_gives_the_same_frame(cfg):
    pd.testing.assert_frame_equal(synthetic.generate(cfg, 800, 5), synthetic.generate(cfg, 800, 5))


def test_another_seed_gives_other_emails(cfg):
    a, b = synthetic.generate(cfg, 800, 5), synthetic.generate(cfg, 800, 6)
    assert len(a) == len(b) == 800
    assert not set(a.message_id) & set(b.message_id)
    assert (a.body != b.body).mean() > 0.9


def test_columns_and_dtypes_follow_the_contract(emails, contract):
    assert list(emails.columns) == [c.name for c in contract.data.columns]
    for column in contract.data.columns:
        series = emails[column.name]
        if column.dtype == "string":
            assert pd.api.types.is_string_dtype(series), column.name
        elif column.dtype == "datetime":
            assert isinstance(series.dtype, pd.DatetimeTZDtype), column.name
            assert str(series.dtype.tz) == "UTC", column.name
        elif column.dtype == "int":
            assert series.dtype == "int64", column.name
        if not column.nullable:
            assert series.notna().all(), column.name
        if column.allowed is not None:
            assert set(series.unique()) <= set(column.allowed), column.name
        if column.min is not None:
            assert series.min() >= column.min, column.name
        if column.max is not None:
            assert series.max() <= column.max, column.name


def test_nullable_fields_hold_both_values_and_nulls(emails):
    assert 0.0 < emails.reply_to.isna().mean() < 1.0
    assert 0.0 < emails.sender_created_at.isna().mean() < 0.1
    assert emails.subject.isna().mean() < 0.02
    assert (emails.quality_flags == "").all()


def test_labels_come_from_the_contract(emails, contract):
    labels = {contract.problem.positive_class, contract.problem.negative_class}
    assert set(emails.label.unique()) == labels
    problem = contract.problem.model_copy(
        update={"positive_class": "junk", "negative_class": "inbox"}
    )
    custom = synthetic.generate(contract.model_copy(update={"problem": problem}), 300, 1)
    assert set(custom.label.unique()) == {"junk", "inbox"}


def test_positive_rate_is_in_a_sane_band(emails, contract):
    rate = (emails.label == contract.problem.positive_class).mean()
    assert 0.2 < rate < 0.4
    assert contract.data.positive_rate.min <= rate <= contract.data.positive_rate.max


def test_emails_are_time_ordered_within_the_window(cfg):
    start = datetime(2025, 6, 1, tzinfo=UTC)
    df = synthetic.generate(cfg, 1500, 3, days=7, start=start)
    assert df.received_at.is_monotonic_increasing
    assert df.received_at.min() >= pd.Timestamp(start)
    assert df.received_at.max() < pd.Timestamp(start + timedelta(days=7))
    # Every day of the window has mail.
    assert df.received_at.dt.floor("D").nunique() == 7


def test_start_defaults_to_a_fixed_date_not_now(emails):
    assert emails.received_at.min() >= pd.Timestamp(synthetic.DEFAULT_START)
    assert emails.received_at.max() < pd.Timestamp(synthetic.DEFAULT_START + timedelta(days=30))


def test_message_ids_are_unique(emails):
    assert emails.message_id.is_unique


def test_urls_appear_in_the_body(emails):
    with_links = emails[emails.urls != ""]
    assert 0.3 < len(with_links) / len(emails) < 1.0
    for urls, body in zip(with_links.urls, with_links.body, strict=True):
        for url in urls.split(" "):
            assert url.startswith("http") and url in body


def test_attachments_and_images_are_consistent(emails):
    types = emails.attachment_types.str.split(",")
    counts = types.map(lambda t: len([x for x in t if x]))
    assert (counts == emails.attachment_count).all()
    assert (emails[emails.content_type == "text/plain"].inline_image_count == 0).all()
    assert (emails.sender_domain == emails.sender.str.split("@").str[1]).all()


def test_signal_lives_in_behaviour_not_in_any_single_field(emails, contract):
    pos = emails.label == contract.problem.positive_class
    age_days = (emails.received_at - emails.sender_created_at).dt.days
    # Positives from old (compromised or aged) accounts, negatives from brand-new accounts.
    assert (pos & (age_days > 365)).sum() > 0
    assert (~pos & (age_days < 30)).sum() > 0
    assert age_days[pos].median() < 30 < age_days[~pos].median()
    # Positive senders burst: many emails within an hour from one account.
    hourly = emails[pos].groupby([emails.sender, emails.received_at.dt.floor("h")]).size()
    assert hourly.max() >= 5
    # Reply-to pointing elsewhere: more common in positives, yet present in negatives.
    reply_domain = emails.reply_to.str.split("@").str[1]
    other = emails.reply_to.notna() & (reply_domain != emails.sender_domain)
    assert other[pos].mean() > other[~pos].mean() > 0.02
    # Negatives talk about offers and links too.
    assert emails[~pos].body.str.contains("offer|free|% off", case=False).mean() > 0.05
    assert (emails[~pos].urls != "").mean() > 0.3


def _drift_markers(df: pd.DataFrame) -> dict[str, float]:
    pos = df[df.label == POS]
    return {
        "positive_rate": (df.label == POS).mean(),
        "new_tld": _tld(pos.sender_domain).isin(SPAM_TLDS_NEW).mean(),
        "new_words": pos.body.str.contains(
            "airdrop|toll|two-factor|AI trading|wallet", case=False
        ).mean(),
    }


def test_drift_moves_vocabulary_domains_and_positive_rate(cfg):
    reference = _drift_markers(synthetic.generate(cfg, ROWS, 21))
    same_world = _drift_markers(synthetic.generate(cfg, ROWS, 22))
    drifted = _drift_markers(synthetic.generate(cfg, ROWS, 22, drift=0.8))
    assert reference["new_tld"] == same_world["new_tld"] == 0.0
    assert reference["new_words"] < 0.01 and same_world["new_words"] < 0.01
    assert abs(reference["positive_rate"] - same_world["positive_rate"]) < 0.01
    assert drifted["new_tld"] > 0.1
    assert drifted["new_words"] > 0.1
    assert drifted["positive_rate"] - reference["positive_rate"] > 0.08


def test_drift_zero_with_another_seed_is_the_same_world(cfg):
    a = synthetic.generate(cfg, ROWS, 31)
    b = synthetic.generate(cfg, ROWS, 32)
    assert abs((a.label == POS).mean() - (b.label == POS).mean()) < 0.01
    # Negative shares vary little between samples (positive ones move with the campaigns drawn).
    neg_a, neg_b = a[a.label == NEG], b[b.label == NEG]
    for share in (
        lambda d: (d.content_type == "text/html").mean(),
        lambda d: (d.attachment_count > 0).mean(),
        lambda d: (d.urls != "").mean(),
        lambda d: d.reply_to.notna().mean(),
    ):
        assert abs(share(neg_a) - share(neg_b)) < 0.03


def test_write_emails_round_trips_through_parquet_in_chunks(tmp_path, cfg):
    path = tmp_path / "raw" / "emails.parquet"
    summary = synthetic.write(cfg, path, 2500, 9, chunk_rows=600)
    assert summary.rows == 2500 and summary.path == path
    assert pq.ParquetFile(path).metadata.num_row_groups >= 2
    written = pd.read_parquet(path)
    assert summary.positives == (written.label == POS).sum()
    # The chunk size changes how the file is written, not what is in it.
    pd.testing.assert_frame_equal(written, synthetic.generate(cfg, 2500, 9))


def test_run_writes_with_the_contract_labels(tmp_path, contract):
    summary = synthetic.run(contract, tmp_path / "emails.parquet", rows=1200, seed=2, days=10)
    df = pd.read_parquet(summary.path)
    assert len(df) == summary.rows == 1200
    assert set(df.label) == {contract.problem.positive_class, contract.problem.negative_class}
    assert df.received_at.max() < pd.Timestamp(synthetic.DEFAULT_START + timedelta(days=10))


@pytest.mark.parametrize(
    "kwargs",
    [{"drift": 1.5}, {"drift": -0.1}, {"days": 0}, {"start": datetime(2026, 1, 1)}],
)
def test_invalid_arguments_are_refused(kwargs, cfg):
    with pytest.raises(ValueError):
        synthetic.generate(cfg, 100, 1, **kwargs)


def test_zero_rows_gives_an_empty_frame_with_the_schema(cfg):
    df = synthetic.generate(cfg, 0, 1)
    assert df.empty and list(df.columns) == list(mail_world.COLUMNS)


def test_a_failed_write_leaves_no_file(tmp_path, cfg):
    path = tmp_path / "emails.parquet"
    with pytest.raises(ValueError):
        synthetic.write(cfg, path, 500, 1, drift=2.0)
    assert list(tmp_path.iterdir()) == []
