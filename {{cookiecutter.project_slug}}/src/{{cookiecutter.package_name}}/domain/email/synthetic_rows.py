"""Emails from the world: the numbers of each email (vectorised), then its text (one pass).

The window is cut into units of consecutive hours (``World.unit_slots``, fixed by the number of
rows and days, never by how the output is chunked). Each unit draws everything from its own
random stream, so a unit's emails are the same whichever file chunk they land in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import synthetic_text as tx
from .synthetic_world import (
    COMP,
    ESP_HOSTS,
    FREEMAIL,
    N_HAM_KINDS,
    NEWS,
    NOTIFY,
    PERSON,
    PHISH,
    SLOT_SECONDS,
    SNOW,
    WORK,
    World,
)

K = 28  # random integers drawn per email for its text
_NS = 1_000_000_000
# Text family -> the ham kind whose look spam of that family copies (-1: a look of its own).
_LOOK = np.array([PERSON, WORK, NEWS, NOTIFY, -1, -1, -1, -1, -1])

# Per kind (person, work, news, notify | burst, phish, snow, comp). Looks (HTML, images, links,
# filler, http) follow the look; behaviour (reply-to, attachments, recipients, noise) the kind.
_HTML = np.array([0.12, 0.30, 0.95, 0.70, 0.75, 0.80, 0.60, 0.20])
_IMAGES = np.array([0.3, 0.3, 2.5, 0.8, 1.5, 0.8, 1.2, 0.2])  # mean inline images if HTML
_LINKS = np.array([0.30, 0.35, 1.0, 0.85, 0.92, 0.95, 0.95, 0.60])
_LINKS_MIN = np.array([1, 1, 3, 1, 1, 1, 1, 1])
_LINKS_MAX = np.array([1, 2, 6, 2, 3, 1, 2, 1])
_HIDDEN = np.array([0.0, 0.0, 0.0, 0.0, 0.30, 0.10, 0.15, 0.0])  # hidden hash-busting filler
_HTTP = np.array([0.02, 0.02, 0.0, 0.0, 0.20, 0.15, 0.20, 0.15])
_REPLY_SAME = np.array([0.03, 0.05, 0.30, 0.20, 0.05, 0.05, 0.05, 0.0])
_REPLY_OTHER = np.array([0.05, 0.04, 0.08, 0.04, 0.45, 0.40, 0.25, 0.60])
_ATTACH = np.array([0.10, 0.30, 0.0, 0.12, 0.05, 0.15, 0.02, 0.35])
_MANY_RECIPIENTS = np.array([0.15, 0.6, 0.0, 0.0, 0.5, 0.2, 0.1, 0.8])
_RECIPIENTS_MAX = np.array([6, 0, 1, 1, 50, 10, 5, 150])  # uniform 2..max (work: geometric)
# Label noise (about 1 % overall): newsletters reported as spam (graymail) most, other ham
# rarely, and a little spam never reported.
_FLIP = np.array([0.008, 0.008, 0.035, 0.008, 0.001, 0.001, 0.001, 0.001])
_ATTACH_TYPES = (
    ("jpg", "pdf", "heic", "png", "docx", "mov"),
    ("pdf", "docx", "xlsx", "pptx", "zip", "csv", "png"),
    ("pdf",),
    ("pdf", "ics"),
    ("zip", "pdf", "exe", "html"),
    ("html", "htm", "pdf", "zip"),
    ("pdf", "zip"),
    ("zip", "html", "exe", "iso", "docm", "xlsm", "pdf", "js"),
)
_PHISH_PATHS = ("login", "verify", "secure", "account")
_NOTIFY_PATHS = ("account", "orders", "track", "help")

# Anchor texts: ham and spam draw from overlapping slices of one list.
_ANCHORS = tx.split_lines(
    "View online|Read more|See details|Shop now|Open|Click here|Learn more|Verify|Claim now"
)
_ANCHORS_HAM, _ANCHORS_SPAM = _ANCHORS[:7], _ANCHORS[2:]


def _token(x: int, y: int) -> str:
    """A URL path token (12 hex digits) from two random integers."""
    return f"{x & 0xFFFFFF:06x}{y & 0xFFFFFF:06x}"


_PERSON_HOSTS = (
    "https://www.youtube.com/watch?v=",
    "https://docs.google.com/document/d/",
    "https://photos.app.goo.gl/",
    "https://www.bbc.co.uk/news/",
    "https://maps.app.goo.gl/",
    "https://bit.ly/",
    "https://docs.google.com/forms/d/",
    "https://drive.google.com/file/d/",
)
_SHORTENERS = ("https://bit.ly/", "https://tinyurl.com/", "https://t.co/")
# Phishing pages on legitimate hosting: the host says nothing, the sender does.
_HOSTING = (
    "https://storage.googleapis.com/{t}/index.html",
    "https://{t}.web.app/login",
    "https://docs.google.com/forms/d/{t}",
    "https://{t}.sharepoint.com/s/review",
    "https://drive.google.com/file/d/{t}",
)


def unit_numbers(world: World, unit: int) -> dict[str, np.ndarray]:
    """Numeric draws of the emails in ``unit``, in time order, from the unit's own stream."""
    rng = np.random.default_rng([world.seed, 0x510, unit])
    s0 = unit * world.unit_slots
    s1 = min(world.n_slots, s0 + world.unit_slots)
    e0, e1 = world.slot_entry[s0], world.slot_entry[s1]
    f = np.repeat(world.entry_flow[e0:e1], world.entry_count[e0:e1])
    slot = np.repeat(world.entry_slot[e0:e1], world.entry_count[e0:e1])
    c = len(f)
    lo = np.maximum(world.flow_t0[f], slot * SLOT_SECONDS)
    hi = np.minimum(world.flow_t1[f], (slot + 1) * SLOT_SECONDS)
    t = np.floor(lo + rng.random(c) * (hi - lo))
    kind = world.flow_kind[f]
    look = np.where(kind >= N_HAM_KINDS, _LOOK[world.flow_family[f]], -1)
    look = np.where(look >= 0, look, kind)
    sender = world.flow_sender[f].copy()
    nsend = world.flow_nsend[f]
    for k, (ids, created, cum) in world.pools.items():
        # Background mail: a sender of the kind's pool, by activity, among accounts that exist.
        rows = np.flatnonzero((nsend == -1) & (kind == k))
        eligible = np.maximum(1, np.searchsorted(created, slot[rows] * SLOT_SECONDS, "left"))
        u = rng.random(len(rows)) * cum[eligible - 1]
        sender[rows] = ids[np.minimum(np.searchsorted(cum, u, side="right"), eligible - 1)]
    # Campaign accounts take turns (a burst each); snowshoe spreads over all its accounts.
    width = np.maximum(nsend, 1)
    turn = np.floor((t - world.flow_t0[f]) / (world.flow_t1[f] - world.flow_t0[f]) * width)
    spread = (rng.random(c) * width).astype(np.int64)
    offset = np.where(kind == SNOW, spread, np.clip(turn, 0, width - 1).astype(np.int64))
    sender = np.where(nsend > 1, sender + offset, sender)
    u = rng.random((c, 11))
    many = u[:, 10] < _MANY_RECIPIENTS[kind]
    recipients = 2 + (rng.random(c) * (_RECIPIENTS_MAX[kind] - 1)).astype(np.int64)
    recipients = np.where(kind == WORK, 1 + rng.geometric(0.35, c), recipients)
    out = {
        "t": t,
        "flow": f,
        "kind": kind,
        "look": look,
        "sender": sender,
        "html": u[:, 0] < _HTML[look],
        "reply": np.where(
            u[:, 1] < _REPLY_SAME[kind], 1, np.where(u[:, 1] > 1 - _REPLY_OTHER[kind], 2, 0)
        ),
        "attach": (u[:, 2] < _ATTACH[kind]) * (1 + (u[:, 3] < 0.25) + (u[:, 3] < 0.05)),
        "links": np.where(
            u[:, 4] < _LINKS[look],
            _LINKS_MIN[look] + (u[:, 5] * (_LINKS_MAX[look] - _LINKS_MIN[look] + 1)).astype(int),
            0,
        ),
        "hidden": u[:, 6] < _HIDDEN[look],
        "http": u[:, 7] < _HTTP[look],
        "flip": u[:, 8] < _FLIP[kind],
        "no_subject": u[:, 9] < 0.005,
        "images": rng.poisson(_IMAGES[look]),
        "recipients": np.where(many, recipients, 1),
        "variant": np.where(
            kind >= N_HAM_KINDS, world.flow_variant[f], rng.integers(0, 1 << 30, c)
        ),
        "r": rng.integers(0, 1 << 31, (c, K)),
        "mid": rng.integers(0, 1 << 40, c),
    }
    order = np.argsort(t, kind="stable")
    return {key: value[order] for key, value in out.items()}


def _links(kind, n, r, http, domain, host, company, copy):
    """``n`` URLs for one email: each kind links where such mail really points.

    ``kind`` is the look: spam dressed as ham links like the ham it copies (a snowshoe
    newsletter through a bulk-mail provider's click tracking, a hijacked mailbox's "shared
    document"); copied phishing mostly puts its page on cloud hosting.
    """
    if n == 0:
        return []
    scheme = "http" if http and not copy else "https"
    urls = []
    for j in range(n):
        a, b = r[(j * 2) % K], r[(j * 2 + 7) % K]
        tok = _token(a, b)
        if kind == PERSON:
            urls.append(_PERSON_HOSTS[a % len(_PERSON_HOSTS)] + tok)
        elif kind == WORK:
            if a % 3 == 0:
                urls.append(f"https://{domain}/wiki/{tok}")
            elif b % 2:
                urls.append(f"https://{domain.split('.')[0]}.sharepoint.com/s/{tok}")
            else:
                urls.append(f"https://{company}/d/{tok}")
        elif kind == NEWS:
            own = f"https://{'www.' if a % 2 else ''}{domain}"
            if j == n - 1:
                urls.append(f"{own}/unsubscribe?id={tok}")
            elif host in ESP_HOSTS and r[3] % 5 < 3:  # most brands track clicks via their ESP
                urls.append(f"https://{host}/ls/click?upn={tok}")
            else:
                urls.append(f"{own}/{('p', 'deals', 'new', 'c')[b % 4]}/{tok}")
        elif kind == NOTIFY:
            www = "www." if b % 3 else ""
            urls.append(f"https://{www}{domain}/{_NOTIFY_PATHS[a % 4]}/{tok}")
        elif kind == PHISH:
            if copy and r[4] % 10 < 7:
                urls.append(_HOSTING[a % len(_HOSTING)].format(t=tok))
            else:
                words = _NOTIFY_PATHS if copy else _PHISH_PATHS
                urls.append(f"{scheme}://{host}/{words[a % 4]}/{tok}")
        else:  # burst, snow, comp: campaign host, a bare IP, a shortener or a hacked site
            shape = a % 10
            if shape < 6:
                path = f"wp-content/uploads/{tok}.php" if kind == COMP else tok
                www = "www." if b % 5 < 2 and kind != COMP else ""
                urls.append(f"{scheme}://{www}{host}/{path}")
            elif shape < 8:
                urls.append(f"http://{b % 200 + 23}.{a % 250}.{b % 250}.{a % 240 + 10}/{tok}")
            else:
                urls.append(_SHORTENERS[b % len(_SHORTENERS)] + tok)
    return list(dict.fromkeys(urls))


def _reply_to(mode, kind, r, sender, domain, brand, host):
    """Reply-to: none, the same domain, or elsewhere (freemail for spam, a helpdesk, an ESP)."""
    if mode == 0:
        return None
    if mode == 1:
        return f"{('reply', 'support', 'contact', 'office', 'info')[r[24] % 5]}@{domain}"
    if kind >= N_HAM_KINDS:
        return f"{tx.pick(tx.FIRST, r[25]).lower()}{r[26] % 9999}@{tx.pick(FREEMAIL, r[27])}"
    if kind == NEWS:
        return f"reply@{host}"
    if kind == NOTIFY:
        return f"support@{brand.lower()}.zendesk.com"
    other = tx.pick(FREEMAIL, r[27])
    if other == domain:
        other = "gmail.com" if domain != "gmail.com" else "outlook.com"
    return f"{sender.split('@')[0]}@{other}"


def frame(world: World, nums: dict, start_ns: int, row0: int, labels: tuple[str, str]):
    """The emails whose numbers are ``nums`` (rows ``row0``...) as a frame in the raw schema."""
    senders, flow_host, company_host = world.senders, world.flow_host, world.company_host
    families, styles = world.flow_family.tolist(), world.flow_style.tolist()
    compose, obfuscate, render = tx.compose, tx.obfuscate, _render
    columns = ("kind", "look", "sender", "flow", "html", "links", "images", "hidden", "http")
    columns += ("variant", "reply", "attach", "mid", "no_subject", "r")
    values = [nums[c].tolist() for c in columns]
    ids, addresses, domains, replies, subjects, bodies, url_lists, types = ([] for _ in range(8))
    for row, draws in enumerate(zip(*values, strict=True)):
        k, look, sid, fid, html, n_links, images, hidden, http = draws[:9]
        variant, reply, attach, mid, no_subject, r = draws[9:]
        domain, brand, name = senders.domain[sid], senders.brand[sid], senders.name[sid]
        address, host = senders.address[sid], flow_host[fid]
        family = families[fid] if k >= N_HAM_KINDS or k == NEWS else k
        subject, lines, sign, filler = compose(
            family, variant, r, brand or name, domain, name, 3 if hidden else 0
        )
        style = styles[fid]
        if style:
            style = style if style < 4 or html else 1  # HTML splitting needs HTML
            subject = obfuscate(subject, min(style, 3), r[5])
            lines = [obfuscate(line, style, r[6] >> j) for j, line in enumerate(lines)]
        copy = k >= N_HAM_KINDS and look < N_HAM_KINDS
        company = company_host.get(domain, domain)
        urls = _links(k if k == PHISH else look, n_links, r, http, domain, host, company, copy)
        anchors = _ANCHORS_SPAM if k >= N_HAM_KINDS and not copy else _ANCHORS_HAM
        n_images = images if html else 0
        layout = family == tx.F_NEWS
        body = render((lines, sign), urls, anchors, html, n_images, filler, layout, r[25])
        kind_types = _ATTACH_TYPES[k]
        ids.append(f"<{mid:010x}.{row0 + row:x}@{domain}>")
        addresses.append(address)
        domains.append(domain)
        replies.append(_reply_to(reply, k, r, address, domain, brand, host))
        subjects.append(None if no_subject else subject)
        bodies.append(body)
        url_lists.append(" ".join(urls))
        types.append(
            ",".join(kind_types[(r[10 + j] >> 3) % len(kind_types)] for j in range(attach))
        )
    created = world.created[nums["sender"]]
    created_ns = start_ns + np.floor(np.nan_to_num(created)).astype(np.int64) * _NS
    positive = (nums["kind"] >= N_HAM_KINDS) ^ nums["flip"]
    text = pd.StringDtype(na_value=np.nan)
    return pd.DataFrame(
        {
            "message_id": pd.array(ids, dtype=text),
            "received_at": _utc(start_ns + nums["t"].astype(np.int64) * _NS),
            "sender": pd.array(addresses, dtype=text),
            "sender_domain": pd.array(domains, dtype=text),
            "sender_created_at": _utc(created_ns).where(~np.isnan(created)),
            "reply_to": pd.array(replies, dtype=text),
            "recipient_count": nums["recipients"].astype(np.int64),
            "subject": pd.array(subjects, dtype=text),
            "body": pd.array(bodies, dtype=text),
            "content_type": pd.array(
                np.where(nums["html"], "text/html", "text/plain").tolist(), dtype=text
            ),
            "urls": pd.array(url_lists, dtype=text),
            "attachment_count": nums["attach"].astype(np.int64),
            "attachment_types": pd.array(types, dtype=text),
            "inline_image_count": np.where(nums["html"], nums["images"], 0).astype(np.int64),
            "quality_flags": pd.array([""] * len(ids), dtype=text),
            "label": pd.array(np.where(positive, *labels).tolist(), dtype=text),
        }
    )


def _render(
    subject_lines: tuple[list[str], str],
    links: list[str],
    anchors: tuple[str, ...],
    html: int,
    images: int,
    hidden: str,
    layout: int,
    x: int,
) -> str:
    """The body: plain text, or HTML keeping its markup (``layout`` 1 = newsletter table)."""
    lines, sign = subject_lines
    if not html:
        parts = [*lines, *links, sign]
        if hidden:
            parts.append(hidden)
        return "\n\n".join(parts)
    out = ["<html><body>"]
    if layout:
        out.append('<table width="600"><tr><td>')
    out.extend(f"<p>{line}</p>" for line in lines)
    for i, url in enumerate(links):
        out.append(f'<p><a href="{url}">{anchors[(x + i) % len(anchors)]}</a></p>')
    out.extend(f'<img src="cid:img{i}" alt="">' for i in range(images))
    out.append(f"<p>{sign}</p>".replace("\n", "<br>"))
    if layout:
        out.append("</td></tr></table>")
    if hidden:
        out.append(f'<div style="display:none">{hidden}</div>')
    out.append("</body></html>")
    return "".join(out)


def _utc(ns: np.ndarray) -> pd.Series:
    return pd.Series(ns.astype("datetime64[ns]")).dt.tz_localize("UTC")
