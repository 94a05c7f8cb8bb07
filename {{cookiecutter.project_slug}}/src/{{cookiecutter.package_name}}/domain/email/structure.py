"""Structure features: links, attachments, images, HTML and the reply-to address.

Spam-specific columns are read by their default names (``urls``: space-separated URLs,
``attachment_types``: comma-separated extensions, ``reply_to``: an address); a column the data
lacks counts as empty, so the transformer still works on a leaner schema.
"""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ...features.columns import Columns, as_columns
from .sender import base_domain, sender_domains

RISKY_ATTACHMENTS = frozenset(
    {"exe", "scr", "js", "vbs", "bat", "cmd", "com", "pif", "jar", "msi", "ps1", "hta", "lnk"}
    | {"zip", "rar", "7z", "iso", "img", "html", "htm", "docm", "xlsm", "pptm"}
)
URL_SHORTENERS = frozenset(
    {"bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "cutt.ly"}
    | {"rebrand.ly", "shorturl.at", "tiny.cc", "rb.gy"}
)
_IP_HOST = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_TAG = re.compile(r"<[^<>]{0,2000}>")

DEFAULT_COLUMNS = {
    "urls": "urls",
    "attachment_count": "attachment_count",
    "attachment_types": "attachment_types",
    "inline_image_count": "inline_image_count",
    "content_type": "content_type",
    "reply_to": "reply_to",
    "body": "body",
}


def url_host(url: str) -> str:
    """Lower-cased host of a URL (``https://user@Host:8080/x`` -> ``host``)."""
    authority = url.partition("://")[2] or url
    for end in "/?#":
        authority = authority.partition(end)[0]
    return authority.rpartition("@")[2].partition(":")[0].lower()


class StructureFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Link, attachment, image, HTML and reply-to features (13 columns, stateless)."""

    def __init__(
        self,
        entity: str = "sender",
        domain: str | None = "sender_domain",
        columns: dict[str, str | None] | None = None,
    ):
        self.entity = entity
        self.domain = domain
        self.columns = columns

    @property
    def consumes(self) -> tuple[str, ...]:
        """The contract columns this family reads (a column mapped to None is not read)."""
        names = {**DEFAULT_COLUMNS, **(self.columns or {})}.values()
        return tuple(dict.fromkeys(c for c in (self.entity, self.domain, *names) if c))

    def fit(self, df: pd.DataFrame, y=None, **_):
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [
            "structure_url_count",
            "structure_url_hosts",
            "structure_link_host_mismatch_share",
            "structure_url_ip_host",
            "structure_url_shorteners",
            "structure_attachment_count",
            "structure_risky_attachments",
            "structure_inline_images",
            "structure_image_text_ratio",
            "structure_is_html",
            "structure_html_markup_share",
            "structure_reply_to_present",
            "structure_reply_to_mismatch",
        ]
        return np.array(names, dtype=object)

    def transform(self, df: pd.DataFrame | Columns) -> np.ndarray:
        cols = as_columns(df)
        names = {**DEFAULT_COLUMNS, **(self.columns or {})}
        rows = zip(
            sender_domains(cols, self.entity, self.domain),
            cols.strings(names["urls"]),
            cols.strings(names["attachment_types"]),
            cols.numbers(names["attachment_count"]).tolist(),
            cols.numbers(names["inline_image_count"]).tolist(),
            cols.strings(names["content_type"]),
            cols.strings(names["reply_to"]),
            cols.strings(names["body"]),
            strict=True,
        )
        out = np.array([_structure(*row) for row in rows], dtype=np.float64)
        return out.reshape(len(cols), len(self.get_feature_names_out()))


def _structure(domain, urls, types, attachments, images, content_type, reply_to, body):
    own = base_domain(domain) if domain else ""
    hosts = [url_host(u) for u in urls.split()]
    foreign = shortened = 0
    ip_host = False
    for host in hosts:
        foreign += base_domain(host) != own
        shortened += host in URL_SHORTENERS
        ip_host = ip_host or _IP_HOST.fullmatch(host) is not None
    extensions = [t.strip().lower().lstrip(".") for t in types.split(",") if t.strip()]
    if attachments != attachments:  # NaN: the count column is absent or empty
        attachments = float(len(extensions))
    images = _finite(images)
    is_html = "html" in content_type.lower()
    # The tags' total length: what removing them takes away.
    markup = len(body) - len(_TAG.sub("", body)) if "<" in body else 0
    reply_domain = reply_to.rpartition("@")[2].strip().lower() if "@" in reply_to else ""
    return [
        float(len(hosts)),
        float(len(set(hosts))),
        foreign / len(hosts) if hosts else 0.0,
        float(ip_host),
        float(shortened),
        attachments,
        float(len([e for e in extensions if e in RISKY_ATTACHMENTS])),
        images,
        images / (1.0 + len(body) / 1000.0),
        float(is_html),
        markup / len(body) if body else 0.0,
        float(bool(reply_to.strip())),
        float(bool(reply_domain) and base_domain(reply_domain) != own),
    ]


def _finite(value: float) -> float:
    """NaN as 0 and an infinity as the largest float, as ``np.nan_to_num`` does."""
    if value != value:
        return 0.0
    if math.isinf(value):
        return math.copysign(sys.float_info.max, value)
    return value
