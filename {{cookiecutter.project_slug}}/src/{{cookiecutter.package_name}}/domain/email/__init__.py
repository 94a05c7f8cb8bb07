"""The email pack: what the spam instance knows about mail.

Features (``features.py``: text statistics and phrases, sender reputation and domain, links and
attachments, sending behaviour), the synthetic mail world behind ``data generate``
(``synthetic.py``), the ``.eml`` / mbox reader of ``data ingest`` (``ingest.py`` over
``mail.py``, ``mailsource.py``, ``maildate.py``, ``content.py``) and the repair of mail columns
in ingested tables (``canonical.py``). Everything else is the core, driven by the contract's
column roles.
"""

from __future__ import annotations

from ..pack import DomainPack

# Text columns that are structured lists, not prose (URLs): their tokens are mostly one-off
# ids and tracking paths, so their unseen share grows with time in any window. The structure
# family parses them and monitoring watches its features instead.
STRUCTURED_TEXT = frozenset({"urls"})
# The core families the email pack leaves out, and why: the hour and weekday of the received
# time did not change the tuned model's quality on five synthetic corpora, and drift monitoring
# compares a day of traffic with weeks of training, where one weekday against seven is an
# alert in every window.
SKIPPED_ROLES = frozenset({"timestamp"})


def _families(cfg) -> list:
    from .features import email_families  # scikit-learn loads only when features are built

    return email_families(cfg)


def _generator():
    from . import synthetic

    return synthetic


def _reader():
    from . import ingest

    return ingest


def _canonical(cfg, column, cols, out):
    from .canonical import canonical_column

    return canonical_column(cfg, column, cols, out)


def _complete(record: dict, entity: str | None) -> None:
    # A client may leave the sender's domain out: it is the address's, as a mail server sees it.
    if "sender_domain" in record and not record["sender_domain"]:
        sender = (record.get(entity) if entity else None) or ""
        record["sender_domain"] = sender.rpartition("@")[2].lower() or sender.lower()


def _slices(raw_df) -> dict:
    # Links carry most phishing: quality with and without them is reported apart.
    if "urls" not in raw_df:
        return {}
    links = (raw_df["urls"].astype("string").fillna("").str.strip() != "").to_numpy(dtype=bool)
    return {"with_links": links, "without_links": ~links}


PACK = DomainPack(
    name="email",
    record="Email",
    families=_families,
    skipped_roles=SKIPPED_ROLES,
    structured_text=STRUCTURED_TEXT,
    generator=_generator,
    complete=_complete,
    reader=_reader,
    canonical=_canonical,
    slices=_slices,
)
