"""Synthetic card transactions: a small world of cards and merchants, and the fraud on it.

``generate(n, seed)`` returns ``n`` transactions in time order in the raw schema (``COLUMNS``);
``frames(...)`` yields the same rows as consecutive frames of about ``block_rows`` each (the
content does not depend on ``block_rows``). Deterministic for a seed, vectorised numpy.

The world (``build_world``) fixes everything small: cards (home country, issue time, activity,
spend level, a daily rhythm; some travel abroad for a while, some work nights), merchants
(country, category, popularity; a few are weak at checking cards), how many legitimate
transactions each group of cards makes in each hour, and every fraud row. Legitimate rows are
then drawn unit by unit (consecutive hours, each from its own random stream).

Fraud (``FRAUD_SHARES``, 2 % of rows in the reference world) is a set of events, each on one
card unless said otherwise:

- ``test``: card testing, a burst of tiny online amounts within minutes, often at a merchant
  that checks little, half the time followed by a cash-out;
- ``cashout``: a few large online purchases (electronics, gift cards, jewellery, travel) within
  hours, often at a foreign merchant and at night for the card's home;
- ``skim``: a cloned card used in person, mostly abroad, magstripe more often than not;
- ``newcard``: a card opened with a made-up identity, a warm-up purchase or two, then big ones;
- ``lost``: a stolen card tapped at home in daytime, moderate amounts (the hard case);
- ``mtest``: testing spread over many cards at one weak merchant, one tiny amount per card
  (invisible in a card's own history);
- breaches: a merchant is compromised for a few days; the cards used there in that window
  suffer a ``test`` or ``cashout`` event days later.

Benign look-alikes keep any single column from separating it: travellers pay in person abroad,
online shops abroad are common, some cards shop at night (night-shift workers), big spenders
and new cards make large purchases, fuel pumps pre-authorise 1.00, people buy several things
within an hour, gift cards come in round amounts, apps sell at .99 price points. Labels are a
little wrong: 2 % of fraud is never reported (labelled legit) and 0.02 % of legitimate rows are
disputed as fraud ("friendly fraud"), about 0.06 % of rows and 3 % of positives in all. (Flipping 0.5-1 % of all rows would make a quarter to
half of the positives noise, which no precision target survives.)

``drift`` (0..1) moves the world: more fraud (up to 3 %), new merchant categories
(crypto exchanges, EV charging, marketplaces) and countries, amounts 30 % higher, and the
fraud moves to the new categories and countries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from ...data.synthetic import DEFAULT_START, check_arguments

COLUMNS = (
    "transaction_id",
    "occurred_at",
    "card_id",
    "card_created_at",
    "merchant_id",
    "merchant_category",
    "merchant_country",
    "card_country",
    "channel",
    "amount",
    "label",
)
_STRING = ("transaction_id", "card_id", "merchant_id", "merchant_category")
_STRING += ("merchant_country", "card_country", "channel", "label")

DAY, HOUR = 86_400.0, 3_600.0
UNIT_ROWS = 8192
_NS = 1_000_000_000

# Country, share of cards, UTC offset (hours, standard time), share of cross-border online
# shops, weight as the place of a skimmed card's use. The last five appear only with drift.
COUNTRIES = (
    ("US", 0.32, -5, 0.28, 0.8),
    ("GB", 0.12, 0, 0.12, 0.5),
    ("DE", 0.09, 1, 0.05, 0.3),
    ("FR", 0.07, 1, 0.03, 0.3),
    ("ES", 0.05, 1, 0.02, 0.5),
    ("IT", 0.05, 1, 0.02, 0.4),
    ("NL", 0.04, 1, 0.10, 0.2),
    ("IE", 0.02, 0, 0.12, 0.1),
    ("CA", 0.05, -5, 0.02, 0.3),
    ("MX", 0.03, -6, 0.01, 1.5),
    ("BR", 0.03, -3, 0.01, 1.5),
    ("AU", 0.03, 10, 0.01, 0.3),
    ("JP", 0.02, 9, 0.02, 0.2),
    ("IN", 0.03, 5, 0.02, 1.0),
    ("SG", 0.02, 8, 0.05, 0.3),
    ("CN", 0.02, 8, 0.10, 0.6),
    ("PL", 0.02, 1, 0.01, 0.4),
    ("SE", 0.02, 1, 0.01, 0.2),
    ("NG", 0.0, 1, 0.0, 0.0),
    ("VN", 0.0, 7, 0.0, 0.0),
    ("AE", 0.0, 4, 0.0, 0.0),
    ("PH", 0.0, 8, 0.0, 0.0),
    ("RO", 0.0, 2, 0.0, 0.0),
)
COUNTRY = np.array([c[0] for c in COUNTRIES])
OFFSET = np.array([c[2] for c in COUNTRIES], dtype=np.float64)
N_NEW_COUNTRIES = 5
_NEW_C = np.arange(len(COUNTRIES)) >= len(COUNTRIES) - N_NEW_COUNTRIES

# Category, median amount, log-normal sigma, share paid online, share of legitimate rows.
# The last three appear only with drift.
CATEGORIES = (
    ("grocery", 42, 0.6, 0.05, 0.19),
    ("restaurant", 32, 0.6, 0.08, 0.13),
    ("coffee", 6, 0.35, 0.0, 0.07),
    ("fuel", 48, 0.4, 0.0, 0.07),
    ("transport", 11, 0.8, 0.35, 0.07),
    ("pharmacy", 22, 0.7, 0.10, 0.04),
    ("retail", 55, 0.8, 0.25, 0.10),
    ("online_retail", 48, 0.9, 1.0, 0.10),
    ("electronics", 210, 0.9, 0.55, 0.025),
    ("digital_goods", 12, 0.8, 1.0, 0.05),
    ("subscriptions", 13, 0.35, 1.0, 0.04),
    ("travel", 380, 0.7, 0.85, 0.02),
    ("hotel", 190, 0.6, 0.4, 0.02),
    ("entertainment", 35, 0.7, 0.5, 0.03),
    ("jewelry", 420, 0.9, 0.3, 0.006),
    ("gift_cards", 80, 0.6, 0.5, 0.009),
    ("crypto_exchange", 250, 1.0, 1.0, 0.0),
    ("ev_charging", 16, 0.5, 0.0, 0.0),
    ("marketplace", 60, 0.9, 1.0, 0.0),
)
CATEGORY = np.array([c[0] for c in CATEGORIES])
_CAT = {name: i for i, name in enumerate(CATEGORY)}
MEDIAN = np.array([c[1] for c in CATEGORIES], dtype=np.float64)
SIGMA = np.array([c[2] for c in CATEGORIES], dtype=np.float64)
ONLINE = np.array([c[3] for c in CATEGORIES], dtype=np.float64)
_LEGIT_SHARE = np.array([c[4] for c in CATEGORIES], dtype=np.float64)
_NEW_CATS = np.array([_CAT["crypto_exchange"], _CAT["ev_charging"], _CAT["marketplace"]])
# Where travellers abroad spend.
_ABROAD_SHARE = _LEGIT_SHARE * np.where(
    np.isin(CATEGORY, ["hotel", "restaurant", "transport", "retail", "coffee", "entertainment"]),
    3.0,
    np.isin(CATEGORY, ["grocery", "fuel", "pharmacy", "jewelry"]) * 0.8 + 0.3,
)
_WEAK_CATS = np.array([_CAT[c] for c in ("digital_goods", "online_retail", "subscriptions")])
# Shops of resellable goods that skip strong customer authentication: where cash-outs go.
_SOFT_CATS = np.array([_CAT[c] for c in ("electronics", "gift_cards", "jewelry", "online_retail")])

CHANNEL = np.array(["chip", "contactless", "magstripe", "online"])
CHIP, CONTACTLESS, MAGSTRIPE, ONLINE_CH = range(4)

# Fraud events by share of fraud rows (reference world): see the module docstring.
FRAUD_KINDS = ("test", "cashout", "skim", "newcard", "lost", "mtest")
TEST, CASHOUT, SKIM, NEWCARD, LOST, MTEST = range(6)
FRAUD_SHARES = np.array([0.37, 0.15, 0.14, 0.12, 0.06, 0.08])
# Mean rows per event of each kind (a test's cash-out rows count as cash-out), to turn row
# shares into event odds.
_EVENT_ROWS = np.array([6.8, 2.6, 4.5, 5.0, 3.5, 9.5])
# What cash-outs buy (a category's weight); drift adds crypto exchanges and marketplaces.
_CASHOUT_CATS = {
    "electronics": 0.36,
    "gift_cards": 0.25,
    "jewelry": 0.12,
    "travel": 0.12,
    "online_retail": 0.15,
}
_SKIM_CATS = {
    "electronics": 0.30,
    "jewelry": 0.15,
    "retail": 0.20,
    "grocery": 0.10,
    "fuel": 0.05,
    "gift_cards": 0.20,
}
_LOST_CATS = {
    "grocery": 0.25,
    "fuel": 0.15,
    "pharmacy": 0.10,
    "retail": 0.25,
    "electronics": 0.10,
    "restaurant": 0.15,
}
UNREPORTED = 0.02  # fraud rows labelled legit
FRIENDLY = 0.0002  # legitimate rows labelled fraud


def fraud_rate(drift: float) -> float:
    """Share of fraud rows: 2 % in the reference world, 3 % fully drifted."""
    return 0.02 + 0.01 * drift


def _weights(table: dict, drift: float = 0.0, extra: dict | None = None) -> np.ndarray:
    w = np.zeros(len(CATEGORIES))
    for name, value in table.items():
        w[_CAT[name]] = value
    for name, value in (extra or {}).items():
        w[_CAT[name]] += value * drift
    return w / w.sum()


def _profile(hours: np.ndarray, night: bool) -> np.ndarray:
    """Activity by local hour: a day with a lunch and an evening peak, or a night shift."""
    if night:
        d = np.minimum(np.abs(hours - 2.0), 24 - np.abs(hours - 2.0))
        return 0.08 + np.exp(-((d / 3.0) ** 2))
    return (
        0.04 + np.exp(-(((hours - 12.5) / 3.5) ** 2)) + 0.8 * np.exp(-(((hours - 19) / 2.5) ** 2))
    )


@dataclass
class World:
    """Cards, merchants, the hourly legitimate schedule and the fraud rows."""

    seed: int
    drift: float
    n_slots: int
    unit_slots: int
    # Cards: home country, issue time (s from start, NaN unknown), spend level, trip.
    card_country: np.ndarray
    card_created: np.ndarray
    card_spend: np.ndarray
    trip_country: np.ndarray
    trip_t0: np.ndarray
    trip_t1: np.ndarray
    card_name: np.ndarray
    # Pools of legitimate activity: per group, card ids sorted by issue, issue times, cum weights.
    pools: list
    schedule: np.ndarray  # legitimate rows per (slot, group)
    # Merchants sorted by (country, category); per pair, its slice and cumulative popularity.
    merchant_country: np.ndarray
    merchant_category: np.ndarray
    merchant_name: np.ndarray
    pair_start: np.ndarray
    merchant_cum: np.ndarray
    category_share: np.ndarray
    online_hub: np.ndarray
    # Fraud rows (and breach visits), sorted by time.
    ev_t: np.ndarray
    ev_card: np.ndarray
    ev_merchant: np.ndarray
    ev_amount: np.ndarray
    ev_channel: np.ndarray
    ev_fraud: np.ndarray  # the label (noise included)
    ev_kind: np.ndarray  # FRAUD_KINDS index, -1 for a breach visit


class _Builder:
    def __init__(self, n: int, seed: int, days: int, drift: float, hour: int, wday: int):
        self.rng = np.random.default_rng([seed, 0xCA4D])
        self.n, self.seed, self.drift, self.days = n, seed, drift, days
        self.hour, self.wday = hour, wday  # UTC hour and weekday (0 = Monday) of the start
        self.window, self.n_slots = days * DAY, days * 24
        self.n_fraud = round(n * fraud_rate(drift))

    # --- cards ----------------------------------------------------------------------------
    def cards(self) -> None:
        rng, d = self.rng, self.drift
        n_cards = max(100, self.n // 9)
        share = np.array([c[1] for c in COUNTRIES]) + _NEW_C * 0.01 * d
        country = rng.choice(len(COUNTRIES), n_cards, p=share / share.sum())
        old = -np.exp(rng.uniform(np.log(20), np.log(2500), n_cards)) * DAY
        new = rng.uniform(-15 * DAY, 0.9 * self.window, n_cards)
        created = np.where(rng.random(n_cards) < 0.06, new, old)
        created[rng.random(n_cards) < 0.015] = np.nan  # issued by a partner: unknown
        spend = np.exp(rng.normal(0.0, 0.35, n_cards)) * np.where(
            rng.random(n_cards) < 0.05, 3.0, 1.0
        )
        # Travellers: a trip of 3-14 days abroad somewhere in the window.
        travel = rng.random(n_cards) < 0.08
        hub = np.array([c[3] for c in COUNTRIES]) + np.array([c[1] for c in COUNTRIES])
        trip_country = rng.choice(len(COUNTRIES), n_cards, p=hub / hub.sum())
        trip_country = np.where(trip_country == country, (trip_country + 1) % 18, trip_country)
        t0 = rng.uniform(-5 * DAY, self.window, n_cards)
        self.trip_country = np.where(travel, trip_country, -1)
        self.trip_t0 = np.where(travel, t0, np.inf)
        self.trip_t1 = np.where(travel, t0 + rng.uniform(3, 14, n_cards) * DAY, -np.inf)
        self.card_country, self.card_created, self.card_spend = country, created, spend
        night = rng.random(n_cards) < 0.05
        activity = rng.lognormal(0.0, 0.9, n_cards)
        # Groups: (home country, night shift); each a pool of cards by issue time.
        group = country * 2 + night
        n_groups = len(COUNTRIES) * 2
        self.pools = []
        totals = np.zeros(n_groups)
        for g in range(n_groups):
            ids = np.flatnonzero(group == g)
            c = np.nan_to_num(created[ids], nan=-np.inf)
            order = np.argsort(c, kind="stable")
            self.pools.append((ids[order], c[order], np.cumsum(activity[ids][order])))
            totals[g] = activity[ids].sum()
        # Legitimate rows per (UTC hour, group): the group's activity by its local hour.
        hours = self.hour + np.arange(self.n_slots)  # UTC hours since the start's midnight
        weights = np.zeros((self.n_slots, n_groups))
        for g in range(n_groups):
            if totals[g] == 0:
                continue
            local = (hours + OFFSET[g // 2]) % 24
            weekend = ((hours + OFFSET[g // 2]) // 24 + self.wday) % 7 >= 5
            p = _profile(local, bool(g % 2)) * np.where(weekend, 1.15, 1.0)
            weights[:, g] = totals[g] * p / p.sum()
        self.weights = weights
        self.created_sorted = np.sort(np.nan_to_num(created, nan=-np.inf))
        self.card_by_created = np.argsort(np.nan_to_num(created, nan=-np.inf), kind="stable")

    # --- merchants --------------------------------------------------------------------------
    def merchants(self) -> None:
        rng, d = self.rng, self.drift
        n_c, n_k = len(COUNTRIES), len(CATEGORIES)
        cshare = np.array([c[1] for c in COUNTRIES]) + np.array([c[3] for c in COUNTRIES])
        cshare = cshare + _NEW_C * 0.05
        kshare = _LEGIT_SHARE.copy()
        kshare[_NEW_CATS] = 0.03
        target = max(400, min(40_000, self.n // 40))
        per_pair = np.maximum(1, np.round(target * np.outer(cshare / cshare.sum(), kshare)))
        per_pair = per_pair.astype(np.int64).ravel()
        pair = np.repeat(np.arange(n_c * n_k), per_pair)
        self.merchant_country, self.merchant_category = pair // n_k, pair % n_k
        popularity = rng.pareto(1.3, len(pair)) + 0.2
        self.merchant_cum = np.cumsum(popularity)
        self.pair_start = np.concatenate([[0], np.cumsum(per_pair)])
        # Weak merchants (little card checking), where testers go.
        candidates = np.flatnonzero(np.isin(self.merchant_category, _WEAK_CATS))
        p = cshare[self.merchant_country[candidates]]
        k = max(3, len(candidates) // 40)
        self.weak = np.sort(rng.choice(candidates, k, replace=False, p=p / p.sum()))
        candidates = np.flatnonzero(np.isin(self.merchant_category, _SOFT_CATS))
        p = cshare[self.merchant_country[candidates]]
        k = max(4, len(candidates) // 20)
        self.soft = np.sort(rng.choice(candidates, k, replace=False, p=p / p.sum()))
        share = _LEGIT_SHARE.copy()
        share[_NEW_CATS] = 0.02 * d
        self.category_share = share / share.sum()
        hub = np.array([c[3] for c in COUNTRIES]) + _NEW_C * 0.04 * d
        self.online_hub = hub / hub.sum()

    def merchant(self, country, category, rng) -> np.ndarray:
        """A merchant of each (country, category), by popularity."""
        pair = np.asarray(country) * len(CATEGORIES) + np.asarray(category)
        lo, hi = self.pair_start[pair], self.pair_start[pair + 1]
        base = np.where(lo > 0, self.merchant_cum[np.maximum(lo - 1, 0)], 0.0)
        u = base + rng.random(np.shape(pair)) * (self.merchant_cum[hi - 1] - base)
        return np.clip(np.searchsorted(self.merchant_cum, u, side="right"), lo, hi - 1)

    # --- fraud ------------------------------------------------------------------------------
    def victim(self, t: float) -> int:
        """A card issued before ``t`` (stolen numbers do not care how active a card is)."""
        k = max(1, int(np.searchsorted(self.created_sorted, t)))
        return int(self.card_by_created[self.rng.integers(k)])

    def at_local(self, hour: float, country: int) -> float:
        """Seconds from the start of a random day's ``hour`` (local time of ``country``)."""
        utc = hour - OFFSET[country] - self.hour
        return (self.rng.integers(self.days) * DAY + utc * HOUR) % self.window

    def start_time(self, country: int) -> float:
        """A fraud start: any day, mostly at night for the card's home."""
        rng = self.rng
        hour = rng.uniform(0, 24) if rng.random() < 0.35 else rng.normal(3.0, 2.0) % 24
        return self.at_local(hour, country)

    def foreign(self, home: int, weights: np.ndarray) -> int:
        w = weights.copy()
        w[home] = 0.0
        return int(self.rng.choice(len(w), p=w / w.sum()))

    def rows(self, t, card, merchant, amount, channel, kind) -> None:
        k = len(t)
        if kind >= 0:
            self.fraud_rows += int((np.asarray(t) < self.window).sum())
        self.out.append(
            (
                np.asarray(t, dtype=np.float64),
                np.full(k, card) if np.ndim(card) == 0 else np.asarray(card),
                np.asarray(merchant),
                np.asarray(amount, dtype=np.float64),
                np.broadcast_to(channel, (k,)).astype(np.int64),
                np.full(k, kind),
            )
        )

    def big_amounts(self, category: np.ndarray, k: int) -> np.ndarray:
        rng = self.rng
        amount = MEDIAN[category] * rng.lognormal(0.7, 0.6, k) * (1 + 0.3 * self.drift)
        gift = category == _CAT["gift_cards"]
        amount[gift] = rng.choice([100.0, 200.0, 250.0, 500.0], int(gift.sum()))
        ending = rng.random(k) < 0.35
        return np.where(ending, np.floor(amount) + 0.99, np.round(amount, 2))

    def online_merchant(self, home: int, category: np.ndarray, weak: float) -> np.ndarray:
        rng, k = self.rng, len(category)
        abroad = rng.random(k) < 0.6
        hubs = self.online_hub + _NEW_C * 0.25 * self.drift
        country = np.where(abroad, self.foreign(home, hubs), home)
        merchant = self.merchant(country, category, rng)
        use_weak = (rng.random(k) < weak) & np.isin(category, _WEAK_CATS)
        if use_weak.any():
            merchant[use_weak] = rng.choice(self.weak, int(use_weak.sum()))
        return merchant

    def test(self, card: int, t0: float) -> None:
        rng = self.rng
        k = int(min(10, 2 + rng.geometric(0.35)))
        t = t0 + np.cumsum(np.maximum(10.0, rng.exponential(100.0, k)))
        sites = rng.choice(self.weak, 2) if rng.random() < 0.7 else None
        if sites is None:
            category = np.full(2, _CAT["digital_goods"])
            sites = self.online_merchant(int(self.card_country[card]), category, 0.0)
        merchant = sites[(rng.random(k) < 0.3).astype(int)]
        amount = np.where(rng.random(k) < 0.35, 1.0, np.round(rng.uniform(0.5, 4.99, k), 2))
        self.rows(t, card, merchant, amount, ONLINE_CH, TEST)
        if rng.random() < 0.7:
            self.cashout(card, t[-1] + rng.uniform(60, 40 * 60))  # right after: automated

    def cashout(self, card: int, t0: float) -> None:
        rng, d = self.rng, self.drift
        k = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.35, 0.3, 0.2]))
        t = t0 + np.cumsum(rng.uniform(120, 90 * 60, k))
        p = _weights(_CASHOUT_CATS, d, {"crypto_exchange": 0.5, "marketplace": 0.2})
        category = rng.choice(len(CATEGORIES), k, p=p)
        merchant = self.online_merchant(int(self.card_country[card]), category, 0.0)
        soft = rng.random(k) < 0.6
        for j in np.flatnonzero(soft):
            options = self.soft[self.merchant_category[self.soft] == category[j]]
            if len(options):
                merchant[j] = rng.choice(options)
        self.rows(t, card, merchant, self.big_amounts(category, k), ONLINE_CH, CASHOUT)

    def skim(self, card: int, t0: float) -> None:
        rng, home = self.rng, int(self.card_country[card])
        k = int(rng.integers(2, 7))
        t = t0 + np.cumsum(rng.uniform(300, 2 * HOUR, k))
        skim_w = np.array([c[4] for c in COUNTRIES]) + _NEW_C * 1.5 * self.drift
        country = self.foreign(home, skim_w) if rng.random() < 0.85 else home
        category = rng.choice(len(CATEGORIES), k, p=_weights(_SKIM_CATS))
        merchant = self.merchant(np.full(k, country), category, rng)
        # A clone carries the magstripe only: swiped, or keyed in as a "chip fallback".
        channel = np.where(rng.random(k) < 0.85, MAGSTRIPE, CHIP)
        amount = MEDIAN[category] * rng.lognormal(0.4, 0.6, k) * (1 + 0.3 * self.drift)
        self.rows(t, card, merchant, np.round(amount, 2), channel, SKIM)

    def newcard(self, t0: float) -> None:
        """A card opened for fraud: its own new card, every row of it fraud."""
        rng = self.rng
        share = np.array([c[1] for c in COUNTRIES]) + _NEW_C * 0.01 * self.drift
        home = int(rng.choice(len(COUNTRIES), p=share / share.sum()))
        card = len(self.card_country) + len(self.new_cards)
        self.new_cards.append((home, t0 - rng.uniform(1, 25) * DAY))
        warm, big = int(1 + (rng.random() < 0.3)), int(rng.integers(2, 6))
        t = t0 + np.cumsum(rng.uniform(0.5 * HOUR, 20 * HOUR, warm + big))
        category = np.concatenate(
            [
                rng.choice([_CAT["online_retail"], _CAT["retail"], _CAT["grocery"]], warm),
                rng.choice(len(CATEGORIES), big, p=_weights(_CASHOUT_CATS)),
            ]
        )
        amount = np.concatenate(
            [
                np.round(MEDIAN[category[:warm]] * rng.lognormal(0, 0.5, warm), 2),
                self.big_amounts(category[warm:], big),
            ]
        )
        merchant = self.online_merchant(home, category, 0.2)
        channel = np.where(ONLINE[category] > rng.random(len(t)) * 2, ONLINE_CH, CHIP)
        self.rows(t, card, merchant, amount, channel, NEWCARD)

    def lost(self, card: int, t0: float) -> None:
        rng, home = self.rng, int(self.card_country[card])
        k = int(rng.integers(2, 6))
        t = t0 + np.cumsum(rng.uniform(300, 50 * 60, k))
        category = rng.choice(len(CATEGORIES), k, p=_weights(_LOST_CATS))
        merchant = self.merchant(np.full(k, home), category, rng)
        amount = MEDIAN[category] * rng.lognormal(0.3, 0.6, k)
        channel = np.where(amount < 100, CONTACTLESS, CHIP)
        self.rows(t, card, merchant, np.round(amount, 2), channel, LOST)

    def mtest(self, t0: float) -> None:
        """Testing across many cards at one weak merchant: one or two tiny amounts each."""
        rng = self.rng
        site = int(rng.choice(self.weak))
        m = int(rng.integers(4, 13))
        cards = np.array([self.victim(t0) for _ in range(m)])
        per = 1 + (rng.random(m) < 0.2)
        card = np.repeat(cards, per)
        t = t0 + np.sort(rng.uniform(0, rng.uniform(0.5, 2) * HOUR, len(card)))
        amount = np.round(rng.uniform(0.5, 2.99, len(card)), 2)
        self.rows(t, card, np.full(len(card), site), amount, ONLINE_CH, MTEST)

    def breaches(self) -> None:
        """Compromised merchants: the cards used there in the window are defrauded later."""
        rng = self.rng
        for _ in range(max(1, self.n_fraud // 500)):
            country = int(rng.choice(len(COUNTRIES), p=self.online_hub))
            cat = _CAT[str(rng.choice(["restaurant", "retail", "fuel", "hotel", "online_retail"]))]
            site = int(self.merchant(country, cat, rng))
            w0 = rng.uniform(0, 0.6 * self.window)
            w1 = w0 + rng.uniform(1, 4) * DAY
            pool = self.pools[country * 2][0]
            if len(pool) == 0:
                continue
            victims = rng.choice(pool, min(len(pool), int(rng.integers(8, 30))), replace=False)
            victims = victims[~(self.card_created[victims] > w0)]  # issued before the breach
            visit = rng.uniform(w0, w1, len(victims))
            channel = CHIP if ONLINE[cat] < 0.5 else ONLINE_CH
            amount = np.round(MEDIAN[cat] * rng.lognormal(0, SIGMA[cat], len(victims)), 2)
            self.rows(visit, victims, np.full(len(victims), site), amount, channel, -1)
            for card, seen in zip(victims.tolist(), visit.tolist(), strict=True):
                later = seen + rng.uniform(1, 12) * DAY
                (self.test if rng.random() < 0.5 else self.cashout)(card, later)

    def fraud(self) -> None:
        rng = self.rng
        self.out, self.new_cards, self.fraud_rows = [], [], 0
        self.breaches()
        shares = FRAUD_SHARES.copy()
        shares[CASHOUT] += 0.1 * self.drift  # drifted fraud cashes out more
        shares = shares / _EVENT_ROWS
        while self.fraud_rows < self.n_fraud:
            kind = int(rng.choice(len(shares), p=shares / shares.sum()))
            if kind == MTEST:
                self.mtest(rng.uniform(0, self.window))
            elif kind == NEWCARD:
                self.newcard(rng.uniform(0, 0.95 * self.window))
            else:
                card = self.victim(rng.uniform(0, self.window))
                home = int(self.card_country[card])
                if kind == LOST:  # in daytime at home
                    t0 = self.at_local(rng.uniform(9, 22), home)
                else:
                    t0 = self.start_time(home)
                issued = self.card_created[card]
                t0 = max(t0, issued + DAY) if issued == issued else t0
                {TEST: self.test, CASHOUT: self.cashout, SKIM: self.skim, LOST: self.lost}[kind](
                    card, t0
                )

    def world(self) -> World:
        t, card, merchant, amount, channel, kind = (
            np.concatenate([o[j] for o in self.out]) for j in range(6)
        )
        keep = t < self.window
        t, card, merchant, amount, channel, kind = (
            a[keep] for a in (t, card, merchant, amount, channel, kind)
        )
        t = np.floor(t)
        # Exactly n_fraud fraud rows: drop the latest-added extra ones.
        fraud_idx = np.flatnonzero(kind >= 0)
        drop = fraud_idx[self.n_fraud :]
        keep = np.ones(len(t), dtype=bool)
        keep[drop] = False
        t, card, merchant, amount, channel, kind = (
            a[keep] for a in (t, card, merchant, amount, channel, kind)
        )
        order = np.argsort(t, kind="stable")
        t, card, merchant, amount, channel, kind = (
            a[order] for a in (t, card, merchant, amount, channel, kind)
        )
        flip = (self.rng.random(len(t)) < UNREPORTED) & (kind >= 0)
        # New fraud cards join the card table (they make no legitimate rows).
        if self.new_cards:
            home, created = (np.array(v) for v in zip(*self.new_cards, strict=True))
            country = np.concatenate([self.card_country, home])
            created_all = np.concatenate([self.card_created, created])
            k = len(home)
            spend = np.concatenate([self.card_spend, np.ones(k)])
            trip = (
                np.concatenate([self.trip_country, np.full(k, -1)]),
                np.concatenate([self.trip_t0, np.full(k, np.inf)]),
                np.concatenate([self.trip_t1, np.full(k, -np.inf)]),
            )
        else:
            country, created_all, spend = self.card_country, self.card_created, self.card_spend
            trip = (self.trip_country, self.trip_t0, self.trip_t1)
        n_legit = self.n - len(t)
        flat = self.weights.ravel()
        schedule = self.rng.multinomial(max(n_legit, 0), flat / flat.sum()).reshape(
            self.weights.shape
        )
        ids = np.arange(len(country), dtype=np.uint64)
        card_name = np.char.add("C", _hex(ids, 0x9E3779B1))
        merchant_name = np.char.add("M", _hex(np.arange(len(self.merchant_country)), 0x85EBCA77))
        return World(
            seed=self.seed,
            drift=self.drift,
            n_slots=self.n_slots,
            unit_slots=int(np.clip(round(UNIT_ROWS * self.n_slots / max(self.n, 1)), 1, 24)),
            card_country=country,
            card_created=created_all,
            card_spend=spend,
            trip_country=trip[0],
            trip_t0=trip[1],
            trip_t1=trip[2],
            card_name=card_name,
            pools=self.pools,
            schedule=schedule,
            merchant_country=self.merchant_country,
            merchant_category=self.merchant_category,
            merchant_name=merchant_name,
            pair_start=self.pair_start,
            merchant_cum=self.merchant_cum,
            category_share=self.category_share,
            online_hub=self.online_hub,
            ev_t=t,
            ev_card=card,
            ev_merchant=merchant,
            ev_amount=amount,
            ev_channel=channel,
            ev_fraud=(kind >= 0) ^ flip,
            ev_kind=kind,
        )


def _hex(ids: np.ndarray, multiplier: int) -> np.ndarray:
    """Ids as 8 hex digits, scrambled by an odd multiplier mod 2**32 (a bijection: unique)."""
    scrambled = (ids.astype(np.uint64) * np.uint64(multiplier)) % np.uint64(1 << 32)
    return np.array([f"{v:08x}" for v in scrambled.tolist()])


def build_world(n: int, seed: int, days: int, drift: float, hour: int = 0, wday: int = 0) -> World:
    """Draw the world for ``n`` transactions over ``days`` days starting at UTC ``hour`` on
    weekday ``wday`` (0 = Monday). Deterministic for ``seed``."""
    builder = _Builder(n, seed, days, drift, hour, wday)
    builder.cards()
    builder.merchants()
    builder.fraud()
    return builder.world()


# --- rows ---------------------------------------------------------------------------------


def _legit(world: World, unit: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The legitimate rows of ``unit``'s hours (unsorted)."""
    s0 = unit * world.unit_slots
    s1 = min(world.n_slots, s0 + world.unit_slots)
    block = world.schedule[s0:s1]
    slot_idx, group = np.nonzero(block)
    counts = block[slot_idx, group]
    slot = np.repeat(slot_idx + s0, counts)
    group = np.repeat(group, counts)
    c = len(slot)
    t = np.floor((slot + rng.random(c)) * HOUR)
    card = np.zeros(c, dtype=np.int64)
    for g in np.unique(group):
        ids, created, cum = world.pools[g]
        rows = np.flatnonzero(group == g)
        eligible = np.maximum(1, np.searchsorted(created, slot[rows] * HOUR, "left"))
        u = rng.random(len(rows)) * cum[eligible - 1]
        card[rows] = ids[np.minimum(np.searchsorted(cum, u, side="right"), eligible - 1)]
    # Shopping trips: some rows follow another row of the same card within the hour.
    follow = np.flatnonzero(rng.random(c) < 0.12)
    if c > 1 and len(follow):
        lead = rng.integers(0, c, len(follow))
        card[follow] = card[lead]
        end = min(world.n_slots, s1) * HOUR - 1
        t[follow] = np.minimum(end, t[lead] + np.floor(rng.uniform(120, 2700, len(follow))))
    home = world.card_country[card]
    abroad = (world.trip_t0[card] <= t) & (t < world.trip_t1[card])
    place = np.where(abroad, world.trip_country[card], home)
    share_abroad = _ABROAD_SHARE * (world.category_share > 0)
    category = rng.choice(len(CATEGORIES), c, p=world.category_share)
    if abroad.any():
        category[abroad] = rng.choice(
            len(CATEGORIES), int(abroad.sum()), p=share_abroad / share_abroad.sum()
        )
    online = rng.random(c) < ONLINE[category] * np.where(abroad, 0.5, 1.0)
    cross = online & (rng.random(c) < 0.10)
    shop_country = np.where(
        cross, rng.choice(len(COUNTRIES), c, p=world.online_hub), np.where(online, home, place)
    )
    merchant = _pick_merchant(world, shop_country, category, rng)
    spend = world.card_spend[card] * (1 + 0.3 * world.drift)
    # New cards: some start with a big purchase.
    young = (t - np.nan_to_num(world.card_created[card], nan=-1e12)) < 7 * DAY
    spend = spend * np.where(young & (rng.random(c) < 0.15), 4.0, 1.0)
    amount = MEDIAN[category] * spend * np.exp(rng.normal(0, SIGMA[category]))
    u = rng.random(c)
    amount = np.where(
        u < 0.25, np.floor(amount) + 0.99, np.where(u < 0.32, np.round(amount), amount)
    )
    gift = category == _CAT["gift_cards"]
    amount = np.where(gift & (u > 0.2), rng.choice([25.0, 50, 100, 150, 200], c), amount)
    # Apps, games and media sell at price points: 0.99, 1.99, 4.99 ...
    points = (category == _CAT["digital_goods"]) & (u > 0.15)
    amount = np.where(points, np.floor(np.maximum(amount, 0.5)) + 0.99, amount)
    subs = category == _CAT["subscriptions"]
    amount = np.where(subs & (u > 0.3), rng.choice([4.99, 9.99, 12.99, 14.99, 19.99], c), amount)
    fuel = (category == _CAT["fuel"]) & (u > 0.9)  # a pump's pre-authorisation
    amount = np.where(fuel, 1.0, amount)
    fare = (category == _CAT["transport"]) & ~online & (u > 0.6)
    amount = np.where(fare, rng.choice([2.75, 2.9, 3.0, 1.5], c), amount)
    amount = np.maximum(0.5, np.round(amount, 2))
    contactless = rng.random(c) < np.where(amount < 100, 0.55, 0.12)
    swipe = rng.random(c) < np.where(home == 0, 0.04, 0.015)
    channel = np.where(
        online, ONLINE_CH, np.where(swipe, MAGSTRIPE, np.where(contactless, CONTACTLESS, CHIP))
    )
    fraud = rng.random(c) < FRIENDLY
    return {
        "t": t,
        "card": card,
        "merchant": merchant,
        "amount": amount,
        "channel": channel,
        "fraud": fraud,
        "kind": np.full(c, -2),
    }


def _pick_merchant(world: World, country, category, rng) -> np.ndarray:
    pair = country * len(CATEGORIES) + category
    lo, hi = world.pair_start[pair], world.pair_start[pair + 1]
    cum = world.merchant_cum
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    u = base + rng.random(len(pair)) * (cum[hi - 1] - base)
    return np.clip(np.searchsorted(cum, u, side="right"), lo, hi - 1)


def unit_numbers(world: World, unit: int) -> dict[str, np.ndarray]:
    """Every row of ``unit`` (legitimate, then the world's fraud rows), in time order."""
    rng = np.random.default_rng([world.seed, 0x7A5, unit])
    legit = _legit(world, unit, rng)
    s0 = unit * world.unit_slots
    s1 = min(world.n_slots, s0 + world.unit_slots)
    a, b = np.searchsorted(world.ev_t, [s0 * HOUR, s1 * HOUR])
    events = {
        "t": world.ev_t[a:b],
        "card": world.ev_card[a:b],
        "merchant": world.ev_merchant[a:b],
        "amount": world.ev_amount[a:b],
        "channel": world.ev_channel[a:b],
        "fraud": world.ev_fraud[a:b],
        "kind": world.ev_kind[a:b],
    }
    out = {k: np.concatenate([legit[k], events[k]]) for k in legit}
    out["rid"] = rng.integers(0, 1 << 24, len(out["t"]))
    order = np.argsort(out["t"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def _utc(ns: np.ndarray) -> pd.Series:
    return pd.Series(ns.astype("datetime64[ns]")).dt.tz_localize("UTC")


def to_frame(world: World, nums: dict, start_ns: int, row0: int, labels: tuple[str, str]):
    """Rows ``row0``... with numbers ``nums`` as a frame in the raw schema."""
    text = pd.StringDtype(na_value=np.nan)
    card, merchant = nums["card"], nums["merchant"]
    n = len(card)
    created = world.card_created[card]
    created_ns = start_ns + np.floor(np.nan_to_num(created)).astype(np.int64) * _NS
    row = np.arange(row0, row0 + n, dtype=np.int64)
    ids = np.char.add(np.char.add("T", np.char.zfill(row.astype(str), 9)), "-")
    ids = np.char.add(ids, np.array([f"{v:06x}" for v in nums["rid"].tolist()], dtype=str))
    return pd.DataFrame(
        {
            "transaction_id": pd.array(ids.tolist(), dtype=text),
            "occurred_at": _utc(start_ns + nums["t"].astype(np.int64) * _NS),
            "card_id": pd.array(world.card_name[card].tolist(), dtype=text),
            "card_created_at": _utc(created_ns).where(~np.isnan(created)),
            "merchant_id": pd.array(world.merchant_name[merchant].tolist(), dtype=text),
            "merchant_category": pd.array(
                CATEGORY[world.merchant_category[merchant]].tolist(), dtype=text
            ),
            "merchant_country": pd.array(
                COUNTRY[world.merchant_country[merchant]].tolist(), dtype=text
            ),
            "card_country": pd.array(COUNTRY[world.card_country[card]].tolist(), dtype=text),
            "channel": pd.array(CHANNEL[nums["channel"]].tolist(), dtype=text),
            "amount": nums["amount"].astype(np.float64),
            "label": pd.array(np.where(nums["fraud"], *labels).tolist(), dtype=text),
        }
    )


def empty() -> pd.DataFrame:
    """No rows, the schema's columns and dtypes."""
    text = pd.StringDtype(na_value=np.nan)
    data = {c: pd.Series([], dtype=text) for c in _STRING}
    for c in ("occurred_at", "card_created_at"):
        data[c] = pd.Series([], dtype="datetime64[ns, UTC]")
    data["amount"] = pd.Series([], dtype="float64")
    return pd.DataFrame(data)[list(COLUMNS)]


def frames(
    n: int,
    seed: int,
    days: int = 30,
    start: datetime = DEFAULT_START,
    drift: float = 0.0,
    labels: tuple[str, str] = ("fraud", "legit"),
    block_rows: int = 8192,
    *,
    with_kind: bool = False,
):
    """Frames of consecutive transactions, about ``block_rows`` each (content independent of
    it). ``with_kind`` adds ``fraud_kind`` (the event behind a row; "" for legitimate rows,
    "breach_visit" for the visit that exposed a card), for analysis only: not a contract column.
    """
    check_arguments(n, days, start, drift)
    if n == 0:
        return
    start_utc = pd.Timestamp(start).tz_convert("UTC")
    start_ns = int(start_utc.as_unit("ns").value)
    world = build_world(n, seed, days, drift, start_utc.hour, start_utc.weekday())
    row0, pending = 0, []
    kinds = np.array(["", "breach_visit", *FRAUD_KINDS])

    def emit(parts):
        nums = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        frame = to_frame(world, nums, start_ns, row0, labels)
        if with_kind:
            frame["fraud_kind"] = kinds[nums["kind"] + 2]
        return frame, len(nums["t"])

    for unit in range(-(-world.n_slots // world.unit_slots)):
        pending.append(unit_numbers(world, unit))
        if sum(len(p["t"]) for p in pending) >= block_rows:
            frame, k = emit(pending)
            yield frame
            row0 += k
            pending = []
    if pending and sum(len(p["t"]) for p in pending):
        yield emit(pending)[0]


def generate(
    n: int,
    seed: int,
    *,
    days: int = 30,
    start: datetime = DEFAULT_START,
    drift: float = 0.0,
    positive: str = "fraud",
    negative: str = "legit",
    with_kind: bool = False,
) -> pd.DataFrame:
    """``n`` transactions over ``days`` days from ``start``, in time order, in the raw schema.

    Deterministic for ``seed``; ``drift`` in [0, 1] moves the world. Raises ValueError on a
    negative ``n``, ``days`` < 1, a naive ``start`` or a drift out of range.
    """
    check_arguments(n, days, start, drift)
    if n == 0:
        return empty()
    parts = list(frames(n, seed, days, start, drift, (positive, negative), with_kind=with_kind))
    return pd.concat(parts, ignore_index=True)
