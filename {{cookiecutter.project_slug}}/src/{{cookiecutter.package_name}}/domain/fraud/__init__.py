"""The fraud pack: what the card-fraud instance knows about card payments.

Features (``features.py``: country mismatch and card presence, the amount against its merchant
category, the hour at home and at the merchant, the card's velocity from the entity history)
and the synthetic world of cards, merchants and fraud behind ``data generate``
(``synthetic.py``). Everything else is the core, driven by the contract's column roles.
"""

from __future__ import annotations

from ..pack import DomainPack


def _families(cfg) -> list:
    from .features import fraud_families  # scikit-learn loads only when features are built

    return fraud_families(cfg)


def _generator():
    from . import synthetic

    return synthetic


def _slices(raw_df) -> dict:
    # Card-not-present fraud and fraud abroad behave apart: quality is reported for each.
    out = {}
    if "channel" in raw_df:
        online = (raw_df["channel"].astype("string") == "online").to_numpy(dtype=bool)
        out.update({"online": online, "card_present": ~online})
    if "merchant_country" in raw_df and "card_country" in raw_df:
        abroad = (
            raw_df["merchant_country"].astype("string") != raw_df["card_country"].astype("string")
        ).to_numpy(dtype=bool)
        out.update({"abroad": abroad, "domestic": ~abroad})
    return out


PACK = DomainPack(
    name="fraud",
    record="Transaction",
    families=_families,
    entity_created_at="card_created_at",
    generator=_generator,
    # About 2 % fraud: 50,000 transactions give the test split some 150 fraud rows to judge
    # precision and recall on (20,000 give 60, and the gate's verdict turns on a few rows).
    sample_rows=50_000,
    slices=_slices,
)
