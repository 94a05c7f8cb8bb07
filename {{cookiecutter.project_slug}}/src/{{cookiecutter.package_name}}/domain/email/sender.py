"""Sender features: reputation from the point-in-time history, account age, domain traits.

The history columns (``features.history``) carry counts; the smoothed past spam rate is
recomputed here with the training spam rate as the prior, so a sender with three clean emails
is not judged like one with three hundred. The TLD risk is the training spam rate of the
sender's top-level domain, shrunk towards the prior for rare TLDs; ``fit_transform`` encodes
each training row with rates from the other time folds only, so no row sees its own label.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ...features.columns import Columns, as_columns
from ...features.history import PREFIX

FREEMAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mail.com",
        "gmx.com",
        "gmx.net",
        "gmx.de",
        "web.de",
        "proton.me",
        "protonmail.com",
        "yandex.com",
        "yandex.ru",
        "mail.ru",
        "zoho.com",
        "qq.com",
        "163.com",
    }
)
# Second-level labels under which registrations happen (example.co.uk -> base example.co.uk).
_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or"})


# A DNS name holds at most 253 characters: longer "hosts" (a request's text can run to a
# megabyte) are not cached, so the cache stays small whatever clients send.
_CACHED_HOST_CHARS = 253


def base_domain(host: str) -> str:
    """The registrable part of a host name, roughly: ``mail.shop.example.co.uk`` ->
    ``example.co.uk``. Good enough to tell "same organisation" from "elsewhere"."""
    if len(host) <= _CACHED_HOST_CHARS:
        return _cached_base_domain(host)
    return _base_domain(host)


def _base_domain(host: str) -> str:
    labels = host.lower().strip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


# A batch's links and senders repeat a few popular hosts.
_cached_base_domain = lru_cache(maxsize=4096)(_base_domain)


def sender_domains(data: pd.DataFrame | Columns, entity: str, domain: str | None) -> list[str]:
    """Lower-cased sender domain per row: the domain column, else the address after '@'."""
    cols = as_columns(data)

    def compute() -> list[str]:
        pairs = zip(cols.strings(domain), cols.strings(entity), strict=True)
        return [(d or a.rpartition("@")[2]).strip().lower() for d, a in pairs]

    return cols.memo(("domains", entity, domain), compute)


class SenderFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Reputation, account age and domain features of the sender (13 columns)."""

    def __init__(
        self,
        entity: str = "sender",
        domain: str | None = "sender_domain",
        *,
        prior_strength: float = 5.0,
        tld_strength: float = 20.0,
    ):
        self.entity = entity
        self.domain = domain
        self.prior_strength = prior_strength
        self.tld_strength = tld_strength

    # The TLD risk and the rate prior are label-derived: out of fold in ``fit_transform``.
    out_of_fold = True

    @property
    def consumes(self) -> tuple[str, ...]:
        """The contract columns this family reads (besides the entity history columns)."""
        return tuple(c for c in (self.entity, self.domain) if c)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [
            "sender_spam_rate",
            "sender_count_log",
            "sender_labeled_log",
            "sender_is_new",
            "sender_age_days",
            "sender_age_known",
            "sender_domain_digits",
            "sender_domain_length",
            "sender_domain_labels",
            "sender_domain_hyphens",
            "sender_local_digits",
            "sender_freemail",
            "sender_tld_risk",
        ]
        return np.array(names, dtype=object)

    def _tld_table(self, tlds: np.ndarray, y: np.ndarray, prior: float) -> dict[str, float]:
        frame = pd.DataFrame({"tld": tlds, "y": y}).groupby("tld")["y"].agg(["sum", "count"])
        rates = (frame["sum"] + prior * self.tld_strength) / (frame["count"] + self.tld_strength)
        return {str(k): float(v) for k, v in rates.items()}

    def _tlds(self, cols: Columns) -> np.ndarray:
        domains = sender_domains(cols, self.entity, self.domain)
        return np.array([d.rpartition(".")[2] for d in domains], dtype=object)

    def _spam_rate(self, cols: Columns, prior: float) -> np.ndarray:
        labeled = cols.numbers(PREFIX + "past_labeled")
        positive = cols.numbers(PREFIX + "past_positive")
        return (positive + prior * self.prior_strength) / (labeled + self.prior_strength)

    def fit(self, df: pd.DataFrame | Columns, y, **_):
        """Learn the training spam rate (prior) and the TLD risk table."""
        y = np.asarray(y, dtype=np.float64)
        self.prior_rate_ = float(y.mean()) if len(y) else 0.5
        self.tld_risk_ = self._tld_table(self._tlds(as_columns(df)), y, self.prior_rate_)
        return self

    def fit_transform(self, df, y=None, folds: np.ndarray | None = None, **_):
        """Fit on all rows; label-derived values of a row come from the other folds only.

        The TLD risk table and the prior of the smoothed spam rate are recomputed without
        the row's fold, so no training row's features depend on its own label.
        """
        cols = as_columns(df)
        self.fit(cols, y)
        out = self.transform(cols)
        if folds is None:
            return out
        y = np.asarray(y, dtype=np.float64)
        tlds = self._tlds(cols)
        folds = np.asarray(folds)
        for k in np.unique(folds):
            held_out = folds == k
            prior = float(y[~held_out].mean()) if (~held_out).any() else self.prior_rate_
            table = self._tld_table(tlds[~held_out], y[~held_out], prior)
            out[held_out, 0] = self._spam_rate(cols, prior)[held_out]
            out[held_out, -1] = [table.get(t, prior) for t in tlds[held_out]]
        return out

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        count = cols.numbers(PREFIX + "past_count")
        age = cols.numbers(PREFIX + "account_age_days")
        known = np.isfinite(age)
        history = np.column_stack(
            [
                self._spam_rate(cols, self.prior_rate_),
                np.log1p(count),
                np.log1p(cols.numbers(PREFIX + "past_labeled")),
                (count == 0).astype(np.float64),
                np.where(known, age, -1.0),
                known.astype(np.float64),
            ]
        )
        domains = sender_domains(cols, self.entity, self.domain)
        rows = zip(domains, cols.strings(self.entity), strict=True)
        traits = np.array(
            [_domain_traits(d, a, self.tld_risk_, self.prior_rate_) for d, a in rows],
            dtype=np.float64,
        ).reshape(len(domains), 7)
        return np.hstack([history, traits])


def _domain_traits(domain: str, address: str, tld_risk: dict, prior: float) -> list[float]:
    local = address.rpartition("@")[0]
    return [
        float(sum(map(str.isdigit, domain))),
        float(len(domain)),
        float(domain.count(".") + 1) if domain else 0.0,
        float(domain.count("-")),
        float(sum(map(str.isdigit, local))),
        1.0 if domain in FREEMAIL_DOMAINS else 0.0,
        tld_risk.get(domain.rpartition(".")[2], prior),
    ]
