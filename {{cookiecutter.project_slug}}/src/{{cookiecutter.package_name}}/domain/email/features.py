"""The email pack's feature families, wired to the contract's column names.

The entity key and the text columns come from the contract's roles; the mail-specific columns
(urls, reply_to, attachments, ...) are used when the contract has them under their default
names. A family none of whose columns the contract has is left out; without an entity key only
the text statistics remain (the others read the sender's history and address).
"""

from __future__ import annotations

from . import STRUCTURED_TEXT
from .behavior import BehaviorFeatures
from .sender import SenderFeatures
from .structure import DEFAULT_COLUMNS, StructureFeatures
from .text_stats import TextStats


def email_families(cfg) -> list:
    """Text statistics, then sender, structure and behaviour families, for this contract."""
    names = {c.name for c in cfg.data.columns}
    text = tuple(c.name for c in cfg.data.columns_with("text") if c.name not in STRUCTURED_TEXT)
    entity = cfg.data.entity
    domain = "sender_domain" if "sender_domain" in names else None
    columns = {key: (name if name in names else None) for key, name in DEFAULT_COLUMNS.items()}
    families: list = [TextStats(text)] if text else []
    if entity is None:
        return families
    families.append(SenderFeatures(entity, domain))
    if any(columns.values()):
        families.append(StructureFeatures(entity, domain, columns))
    recipients = "recipient_count" if "recipient_count" in names else None
    families.append(BehaviorFeatures(recipients))
    return families
