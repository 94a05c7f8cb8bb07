"""Card-fraud feature families: where, how much, when and how fast a card is used.

Families follow the project's protocol (see ``domain/pack.py``): ``consumes`` (the contract
columns read), ``fit(cols, y)``, ``transform(cols)`` on a ``Columns`` (or a frame), and
``get_feature_names_out()``; every output is a finite float, one row per input row.

- ``CountryFeatures`` (``country_``): merchant country differs from the card's, card present
  or not, card present abroad, magstripe (a cloned card cannot do chip);
- ``AmountFeatures`` (``amount_``): log amount, the amount against its merchant category's
  typical amount (median and spread of log amounts per category, fitted on training), tiny,
  whole and .99 amounts;
- ``ClockFeatures`` (``clock_``): hour at the card's home and at the merchant's country (UTC
  plus a country's standard offset), night at home;
- ``VelocityFeatures`` (``velocity_``): from the point-in-time entity history: transactions of
  the card in the last hour and day, time since its previous one, its past count, first use,
  age of the card.

None reads a label, so none needs out-of-fold fitting. The entity's past positive rate is not
used on purpose: offline, a row sees the labels of its card's earlier rows at once, so the
second row of a card-testing burst would learn from the first one's label, while in serving a
fraud label arrives days or weeks later (a chargeback), see the "Not yet" notes below.

``fraud_families(cfg)`` wires them to the contract. A family that reads a categorical column
claims it (``consumes``), so the core would no longer encode it; ``fraud_families`` therefore
adds one core ``CategoricalFeatures`` over the categorical columns it reads, which keeps their
frequency and out-of-fold target rate. Every other contract column (``merchant_id`` ...) still
goes to the core family of its role.

Not yet (what the core's history cannot give; each needs the entity store to keep more than
counts, see RESULTS.md): the amount against the card's own past amounts (a running mean and
spread of log amount per card), first purchase at this merchant / category / country for the
card (a per-card set, or a bloom filter, of merchants seen), distinct merchants and tiny amounts
in the last hour, spend in the last 24 h, the time since the card was last used in person at
home (impossible travel), velocity per merchant (many cards tested at one merchant: a second
entity key), and a fraud label rate that respects label delay (a label-known-at time per row).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ...features.categorical import CategoricalFeatures
from ...features.columns import Columns, as_columns
from ...features.history import PREFIX

DAY = 86_400.0
HOUR = 3_600.0
# Standard-time UTC offsets (hours) of the countries card networks see most; a country not
# listed reads as UTC. One offset per country: good enough for "night".
COUNTRY_UTC_OFFSET = {
    "US": -5, "CA": -5, "MX": -6, "BR": -3, "AR": -3, "CO": -5, "CL": -4, "PE": -5,
    "GB": 0, "IE": 0, "PT": 0, "DE": 1, "FR": 1, "ES": 1, "IT": 1, "NL": 1, "BE": 1, "AT": 1,
    "CH": 1, "PL": 1, "SE": 1, "NO": 1, "DK": 1, "CZ": 1, "NG": 1, "FI": 2, "RO": 2, "GR": 2,
    "UA": 2, "ZA": 2, "EG": 2, "TR": 3, "RU": 3, "AE": 4, "IN": 5, "PK": 5, "TH": 7, "VN": 7,
    "ID": 7, "CN": 8, "SG": 8, "PH": 8, "HK": 8, "MY": 8, "JP": 9, "KR": 9, "AU": 10, "NZ": 12,
}  # fmt: skip
CARD_PRESENT = frozenset({"chip", "contactless", "magstripe", "pos", "swipe"})
TINY_AMOUNT = 5.0
NIGHT = (0.0, 6.0)  # local hours [start, end)
# A category needs this many training rows for its own typical amount (else the overall one).
MIN_CATEGORY_ROWS = 20


def _names(*names: str) -> np.ndarray:
    return np.array(names, dtype=object)


def _offsets(values: list) -> np.ndarray:
    return np.array([COUNTRY_UTC_OFFSET.get(v, np.nan) for v in values], dtype=np.float64)


class CountryFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Country mismatch and how the card was used (4 columns)."""

    def __init__(
        self,
        card_country: str = "card_country",
        merchant_country: str = "merchant_country",
        channel: str | None = "channel",
    ):
        self.card_country = card_country
        self.merchant_country = merchant_country
        self.channel = channel

    @property
    def consumes(self) -> tuple[str, ...]:
        return tuple(c for c in (self.card_country, self.merchant_country, self.channel) if c)

    def fit(self, df, y=None, **_):
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return _names(
            "country_mismatch", "country_card_present", "country_present_abroad",
            "country_magstripe",
        )  # fmt: skip

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        card, shop = cols.categories(self.card_country), cols.categories(self.merchant_country)
        # Unknown on either side is not a mismatch: absence is no evidence of being abroad.
        mismatch = np.array(
            [a is not None and b is not None and a != b for a, b in zip(card, shop, strict=True)]
        )
        channel = [(v or "").lower() for v in cols.categories(self.channel)]
        present = np.array([v in CARD_PRESENT for v in channel])
        magstripe = np.array([v in ("magstripe", "swipe") for v in channel])
        return np.column_stack([mismatch, present, mismatch & present, magstripe]).astype(
            np.float64
        )


class AmountFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """The amount, and the amount against its merchant category's typical one (6 columns)."""

    def __init__(self, amount: str = "amount", category: str | None = "merchant_category"):
        self.amount = amount
        self.category = category

    @property
    def consumes(self) -> tuple[str, ...]:
        return tuple(c for c in (self.amount, self.category) if c)

    def _logs(self, cols: Columns) -> np.ndarray:
        values = cols.numbers(self.amount)
        with np.errstate(invalid="ignore", divide="ignore"):
            logs = np.log1p(np.clip(values, 0.0, 1e12))
        return np.where(np.isfinite(logs), logs, np.nan)

    def fit(self, df, y=None, **_):
        """Learn the median and spread (MAD) of log amounts, overall and per category."""
        cols = as_columns(df)
        logs = self._logs(cols)
        present = ~np.isnan(logs)
        self.median_, self.spread_ = _median_spread(logs[present])
        self.by_category_ = {}
        frame = pd.DataFrame({"c": cols.categories(self.category), "v": logs})[present]
        for category, values in frame.dropna(subset=["c"]).groupby("c")["v"]:
            if len(values) >= MIN_CATEGORY_ROWS:
                self.by_category_[category] = _median_spread(values.to_numpy())
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return _names(
            "amount_log", "amount_vs_category", "amount_category_z", "amount_tiny",
            "amount_whole", "amount_99",
        )  # fmt: skip

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        logs = self._logs(cols)
        logs = np.where(np.isnan(logs), self.median_, logs)
        overall = (self.median_, self.spread_)
        pairs = [self.by_category_.get(c, overall) for c in cols.categories(self.category)]
        typical = np.array(pairs, dtype=np.float64).reshape(len(cols), 2)
        amount = np.expm1(logs)
        cents = np.round(amount * 100) % 100
        return np.column_stack(
            [
                logs,
                logs - typical[:, 0],
                (logs - typical[:, 0]) / typical[:, 1],
                amount < TINY_AMOUNT,
                cents == 0,
                cents == 99,
            ]
        ).astype(np.float64)


def _median_spread(values: np.ndarray) -> tuple[float, float]:
    """Median and median absolute deviation (at least 0.1) of ``values``; (0, 1) when empty."""
    if values.size == 0:
        return 0.0, 1.0
    median = float(np.median(values))
    return median, max(0.1, float(np.median(np.abs(values - median))))


class ClockFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Local hour at the card's home and at the merchant's country, night at home (3 columns).

    A country without a known offset reads as UTC; a missing time gives hour -1, not night.
    """

    def __init__(
        self,
        timestamp: str = "occurred_at",
        card_country: str | None = "card_country",
        merchant_country: str | None = "merchant_country",
    ):
        self.timestamp = timestamp
        self.card_country = card_country
        self.merchant_country = merchant_country

    @property
    def consumes(self) -> tuple[str, ...]:
        return tuple(c for c in (self.timestamp, self.card_country, self.merchant_country) if c)

    def fit(self, df, y=None, **_):
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return _names("clock_home_hour", "clock_home_night", "clock_merchant_hour")

    def cycle_hours(self) -> dict[str, float]:
        """All three follow the clock's day (``features.clock``: monitoring judges them then)."""
        return dict.fromkeys(self.get_feature_names_out().tolist(), 24.0)

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        seconds = cols.seconds(self.timestamp)
        utc_hour = (seconds % DAY) / HOUR

        def local(country: str | None) -> np.ndarray:
            offset = np.nan_to_num(_offsets(cols.categories(country)), nan=0.0)
            hour = np.floor((utc_hour + offset) % 24)
            return np.where(np.isnan(seconds), -1.0, hour)

        home, shop = local(self.card_country), local(self.merchant_country)
        night = (home >= NIGHT[0]) & (home < NIGHT[1])
        return np.column_stack([home, night, shop]).astype(np.float64)


# History column -> value for a card without that history (first use: no previous row).
_VELOCITY = {
    "count_1h": 0.0,
    "count_24h": 0.0,
    "seconds_since_prev": -1.0,
    "past_count": 0.0,
}


class VelocityFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """The card's recent activity from the entity history columns (6 columns).

    Counts and gaps are log1p'd; a first use has gap -1. The card's age comes from the history
    (``account_age_days``, from the contract's creation-time column): unknown gives -1 and a
    flag.
    """

    @property
    def consumes(self) -> tuple[str, ...]:
        return ()  # only the history columns (attached offline, looked up in serving)

    def fit(self, df, y=None, **_):
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return _names(
            "velocity_count_1h_log", "velocity_count_24h_log", "velocity_since_prev_log",
            "velocity_past_count_log", "velocity_card_age_days", "velocity_card_age_missing",
        )  # fmt: skip

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        out = []
        for name, missing in _VELOCITY.items():
            values = cols.numbers(PREFIX + name)
            with np.errstate(invalid="ignore"):
                logs = np.log1p(np.maximum(values, 0.0))
            out.append(np.where(np.isfinite(values), logs, missing))
        age = cols.numbers(PREFIX + "account_age_days")
        unknown = ~np.isfinite(age)
        out += [np.where(unknown, -1.0, np.clip(age, -1.0, 36_500.0)), unknown]
        return np.column_stack(out).astype(np.float64)


def fraud_families(cfg) -> list:
    """The fraud instance's families, wired to the contract's column names.

    Columns are found by their default names (``amount``, ``merchant_category``,
    ``card_country``, ``merchant_country``, ``channel``); a family whose columns the contract
    lacks is left out. Velocity needs an entity key (the card). The categorical columns the
    families read keep the core encoding (frequency, out-of-fold target rate).
    """
    names = {c.name for c in cfg.data.columns}

    def have(name: str) -> str | None:
        return name if name in names else None

    timestamp = cfg.data.timestamp
    card, shop = have("card_country"), have("merchant_country")
    families: list = []
    if card and shop:
        families.append(CountryFeatures(card, shop, have("channel")))
    if have("amount"):
        families.append(AmountFeatures("amount", have("merchant_category")))
    families.append(ClockFeatures(timestamp, card, shop))
    if cfg.data.entity is not None:
        families.append(VelocityFeatures())
    categorical = {c.name for c in cfg.data.columns_with("categorical")}
    read = [
        name
        for name in dict.fromkeys(n for f in families for n in f.consumes)
        if name in categorical
    ]
    if read:
        families.append(CategoricalFeatures(tuple(read)))
    return families
