"""The world behind the synthetic corpus: who sends, in which campaigns, and when.

A world is small (a few values per sender and per campaign, about N / 10 in all): it fixes the
senders, the spam campaigns, the newsletter blasts and how many emails each of them puts into
each hour of the window. ``synthetic_rows`` then writes the emails unit by unit from it, so
memory stays flat however many rows are asked for.

Kinds of email (``KINDS``): four ham (a person, a colleague, a newsletter blast, a service
notification) and four spam (a burst from throwaway accounts, phishing from look-alike domains,
"snowshoe" spam spread thin over many fresh domains, a compromised old account).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from .synthetic_text import (
    F_BEC,
    F_FEE,
    F_NEW,
    F_NEWS,
    F_NOTIFY,
    F_PERSON,
    F_PHISH,
    F_PROMO,
    F_WORK,
    FIRST,
    LAST,
    SYL_A,
    SYL_B,
    words,
)

KINDS = ("person", "work", "news", "notify", "burst", "phish", "snow", "comp")
PERSON, WORK, NEWS, NOTIFY, BURST, PHISH, SNOW, COMP = range(8)
N_HAM_KINDS = 4

SLOT_SECONDS = 3600
UNIT_ROWS = 8192
DAY = 86_400.0
FREEMAIL = words(
    "gmail.com yahoo.com outlook.com hotmail.com aol.com icloud.com proton.me gmx.net mail.com "
    "yandex.ru"
)
HAM_TLDS = words("com com com com org net io co.uk de fr co")
SPAM_TLDS = words("top xyz club info biz online site click live com net ru")
# Top-level domains that only the drifted world uses.
SPAM_TLDS_NEW = ("cyou", "sbs", "lol", "autos", "beauty", "quest", "bond", "hair")
ESP_HOSTS = words("click.sendgrid.net list-manage.com mcsv.net links.exacttarget.com")
PHISH_TLDS = words("com net info support online xyz")

# Ham volume by kind (shares of ham) and spam volume by kind (shares of spam).
HAM_SHARES = np.array([0.30, 0.22, 0.22, 0.26])
SPAM_SHARES = np.array([0.34, 0.22, 0.22, 0.22])  # burst, phish, snow, comp
CAMPAIGN_MEDIAN = {BURST: 22, PHISH: 16, SNOW: 20, COMP: 15}  # emails per campaign
CAMPAIGN_HOURS = {BURST: (1, 8), PHISH: (2, 12), SNOW: (12, 72), COMP: (1, 4)}
GOLDEN = 0.6180339887498949


@dataclass
class Senders:
    """Append-only table of sender accounts; ``created`` is seconds from the window start."""

    address: list[str] = field(default_factory=list)
    domain: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    brand: list[str] = field(default_factory=list)
    created: list[float] = field(default_factory=list)

    def add(self, local: str, domain: str, name: str, brand: str, created: float) -> int:
        self.address.append(f"{local}@{domain}")
        self.domain.append(domain)
        self.name.append(name)
        self.brand.append(brand)
        self.created.append(created)
        return len(self.address) - 1


@dataclass
class World:
    """Senders, flows (background streams, blasts, campaigns) and the hourly schedule."""

    seed: int
    n_slots: int
    senders: Senders
    created: np.ndarray  # float seconds from start, NaN when unknown
    # Per flow: kind, time span, senders (first id and how many; -1 = sample the kind's pool),
    # text family, template variant, obfuscation style and the landing host of its links.
    flow_kind: np.ndarray
    flow_t0: np.ndarray
    flow_t1: np.ndarray
    flow_sender: np.ndarray
    flow_nsend: np.ndarray
    flow_family: np.ndarray
    flow_variant: np.ndarray
    flow_style: np.ndarray
    flow_host: list[str]
    # Schedule: entries (slot, flow, count) sorted by slot; slot s owns entries
    # slot_entry[s]:slot_entry[s + 1]. Emails are drawn in units of ``unit_slots`` hours.
    entry_slot: np.ndarray
    entry_flow: np.ndarray
    entry_count: np.ndarray
    slot_entry: np.ndarray
    unit_slots: int
    # Background pools per ham kind: sender ids sorted by creation, creation times, cum weights.
    pools: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    company_host: dict[str, str]


def spam_rate(drift: float) -> float:
    """Share of spam: 30 % in the reference world, rising with drift."""
    return 0.30 + 0.15 * drift


def _alloc(total: int, shares: np.ndarray) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``shares`` (largest remainder)."""
    raw = total * shares / shares.sum()
    parts = np.floor(raw).astype(np.int64)
    parts[np.argsort(-(raw - parts), kind="stable")[: total - parts.sum()]] += 1
    return parts


def _campaign_family(kind: int, x: float) -> int:
    """What a campaign says, from its place ``x`` in [0, 1) of a low-discrepancy sequence.

    Phishing copies a notification (60 %) or writes its own lure; snowshoe spam copies a
    newsletter (55 %) or sells; a hijacked account writes like its owner (50 %), asks for money
    (BEC) or sells; throwaway bursts sell (2/3), promise fortunes or play the boss.
    """
    if kind == PHISH:
        return F_NOTIFY if x < 0.6 else F_PHISH
    if kind == SNOW:
        return F_NEWS if x < 0.55 else F_PROMO
    if kind == COMP:
        return F_BEC if x < 1 / 3 else F_PERSON if x < 5 / 6 else F_PROMO
    return F_PROMO if x < 2 / 3 else F_FEE if x < 5 / 6 else F_BEC


class _Builder:
    """Draws one world. numpy for vector draws, ``random.Random`` for the many scalar ones."""

    def __init__(self, n: int, seed: int, days: int, drift: float, hour: int, wday: int):
        self.rng = np.random.default_rng([seed, 0x5EED])
        self.rnd = random.Random(int(self.rng.integers(1 << 62)))
        self.n, self.seed, self.drift = n, seed, drift
        self.window, self.n_slots = days * DAY, days * 24
        n_spam = round(n * spam_rate(drift))
        self.ham_counts = _alloc(n - n_spam, HAM_SHARES)
        self.spam_counts = _alloc(n_spam, SPAM_SHARES)
        self.senders = Senders()
        self.flows: list[tuple] = []
        self.counts: list[int] = []
        hours = (hour + np.arange(self.n_slots)) % 24
        weekday = (wday + (hour + np.arange(self.n_slots)) // 24) % 7 < 5
        # Hourly activity: people in the evening, work in office hours, machines always.
        self.profile = {
            PERSON: 0.3 + np.exp(-(((hours - 20) / 3.0) ** 2)) + 0.5 * ~weekday,
            WORK: 0.05 + weekday * np.exp(-(((hours - 13) / 3.5) ** 2)),
            NOTIFY: 0.6 + 0.4 * np.exp(-(((hours - 14) / 5.0) ** 2)),
            NEWS: 0.1 + np.exp(-(((hours - 10) / 2.5) ** 2)),
        }

    def choose(self, seq):
        return seq[self.rnd.randrange(len(seq))]

    def brand(self) -> str:
        return self.choose(SYL_A) + self.choose(SYL_B)

    def person(self) -> tuple[str, str]:
        first, last = self.choose(FIRST), self.choose(LAST)
        style = self.rnd.randrange(4)
        local = (
            f"{first}.{last}",
            f"{first[0]}{last}",
            f"{first}{self.rnd.randrange(1, 99)}",
            f"{first}.{last}{self.rnd.randrange(60, 100)}",
        )[style]
        return local.lower(), f"{first} {last}"

    def ham_created(self, new_share: float) -> float:
        """Mostly old accounts (months to years); ``new_share`` created just before or inside."""
        u = self.rnd.random()
        if u < 0.04:
            return math.nan  # creation date unknown (e.g. an external provider)
        if u < 0.04 + new_share:
            return self.rnd.uniform(-20 * DAY, 0.85 * self.window)
        return -math.exp(self.rnd.uniform(math.log(60), math.log(5000))) * DAY

    def throwaway_domain(self, clean: float = 0.25) -> str:
        """A spammer's fresh domain: digits, hyphens or random letters on cheap TLDs; with
        probability ``clean`` a plain brand-like name (snowshoe spammers buy many)."""
        rnd = self.rnd
        if rnd.random() < clean:  # a suffix no ham brand has, so it never hits a real domain
            suffix = self.choose(("hq", "direct", "zone", "now", "plus", "outlet"))
            return f"{self.brand()}{suffix}.{self.choose(HAM_TLDS)}"
        tld = self.choose(SPAM_TLDS_NEW if rnd.random() < 0.5 * self.drift else SPAM_TLDS)
        a, b, shape = self.choose(SYL_A), self.choose(SYL_B), rnd.randrange(4)
        if shape == 0:
            return f"{a}{b}{rnd.randrange(10, 9999)}.{tld}"
        if shape == 1:
            return f"{a}-{b}-{self.choose(('deals', 'promo', 'mail', 'news', 'offers'))}.{tld}"
        if shape == 2:
            return "".join(chr(97 + rnd.randrange(26)) for _ in range(rnd.randrange(5, 9))) + (
                f".{tld}"
            )
        return f"{a}{b}.{tld}"  # clean looking: the hard case

    def flow(self, count, kind, t0, t1, sender, nsend, family, variant=0, style=0, host=""):
        self.flows.append((kind, t0, t1, sender, nsend, family, variant, style, host))
        self.counts.append(int(count))

    # --- ham --------------------------------------------------------------------------------
    def ham_senders(self) -> None:
        """Pools of people, colleagues, services and newsletter brands, weighted by activity."""
        rnd, add, hc = self.rnd, self.senders.add, self.ham_counts
        companies = [
            f"{self.brand()}.{self.choose(HAM_TLDS)}" for _ in range(max(3, hc[WORK] // 150))
        ]
        self.company_host = {
            c: (f"intranet.{c}" if i % 2 else "drive.google.com") for i, c in enumerate(companies)
        }
        pools: dict[int, list[tuple[int, float]]] = {PERSON: [], WORK: [], NOTIFY: [], NEWS: []}
        for _ in range(max(10, hc[PERSON] // 3)):
            local, name = self.person()
            domain = self.choose(FREEMAIL if rnd.random() < 0.65 else companies)
            sid = add(local, domain, name, "", self.ham_created(0.07))
            pools[PERSON].append((sid, rnd.lognormvariate(0.0, 1.0)))
        for _ in range(max(5, hc[WORK] // 4)):
            local, name = self.person()
            company = self.choose(companies)
            sid = add(local, company, name, company.split(".")[0].title(), self.ham_created(0.04))
            pools[WORK].append((sid, rnd.lognormvariate(0.0, 0.8)))
        for kind, locals_, count in (
            (NOTIFY, ("alerts", "no-reply", "orders", "account", "billing", "security"), 1.5),
            (NEWS, ("news", "newsletter", "hello", "deals", "info"), 1.2),
        ):
            for _ in range(max(5, round(count * math.sqrt(hc[kind])))):
                brand = self.brand()
                domain = f"{brand}.{self.choose(HAM_TLDS)}"
                created = self.ham_created(0.03 if kind == NOTIFY else 0.04)
                sid = add(self.choose(locals_), domain, brand.title(), brand.title(), created)
                pools[kind].append((sid, rnd.paretovariate(1.5) - 0.8))
        created = np.array(self.senders.created)
        self.pools = {}
        for kind, members in pools.items():
            ids = np.array([m[0] for m in members], dtype=np.int64)
            c = np.nan_to_num(created[ids], nan=-np.inf)
            order = np.argsort(c, kind="stable")
            weights = np.array([m[1] for m in members])[order]
            self.pools[kind] = (ids[order], c[order], np.cumsum(weights))
        for kind, family in ((PERSON, F_PERSON), (WORK, F_WORK), (NOTIFY, F_NOTIFY)):
            self.flow(hc[kind], kind, 0.0, self.window, -1, -1, family)

    def pool_pick(self, kind: int, before: float, weighted: bool = True) -> int:
        """A sender of ``kind``'s pool created before ``before``, by activity (or uniformly)."""
        ids, created, cum = self.pools[kind]
        k = max(1, int(np.searchsorted(created, before, side="left")))
        if not weighted:
            return int(ids[self.rnd.randrange(k)])
        return int(ids[min(k - 1, int(np.searchsorted(cum[:k], self.rnd.random() * cum[k - 1])))])

    def blasts(self) -> None:
        """Newsletter blasts: many copies from one brand within the hour, mostly mornings."""
        total, sizes = int(self.ham_counts[NEWS]), []
        while sum(sizes) < total:
            sizes.append(min(200.0, max(2.0, self.rnd.lognormvariate(math.log(12), 0.7))))
        counts = self.rng.multinomial(total, np.array(sizes) / sum(sizes)) if sizes else []
        hours = self.rng.choice(
            self.n_slots, len(sizes), p=self.profile[NEWS] / self.profile[NEWS].sum()
        )
        for count, slot in zip(counts, hours, strict=True):
            t0 = (slot + self.rnd.random()) * SLOT_SECONDS
            t1 = min(self.window, t0 + self.rnd.uniform(0.3, 1.5) * SLOT_SECONDS)
            sender = self.pool_pick(NEWS, t0)
            self.flow(count, NEWS, t0, t1, sender, 1, F_NEWS, host=self.choose(ESP_HOSTS))

    # --- spam -------------------------------------------------------------------------------
    def campaigns(self) -> None:
        """Per spam kind: sizes, start times on a jittered grid and campaign types from a
        low-discrepancy sequence, so that any week holds a representative mix of campaigns."""
        rnd = self.rnd
        for kind, total in zip((BURST, PHISH, SNOW, COMP), self.spam_counts, strict=True):
            sizes: list[float] = []
            while sum(sizes) < total:
                size = rnd.lognormvariate(math.log(CAMPAIGN_MEDIAN[kind]), 0.6)
                sizes.append(min(100.0, max(3.0, size)))
            counts = self.rng.multinomial(int(total), np.array(sizes) / sum(sizes)) if sizes else []
            phase = rnd.random()
            for i, count in enumerate(counts):
                duration = min(self.window, rnd.uniform(*CAMPAIGN_HOURS[kind]) * SLOT_SECONDS)
                t0 = (i + rnd.random()) / len(counts) * (self.window - duration)
                self.campaign(kind, int(count), t0, duration, (phase + i * GOLDEN) % 1.0)

    def campaign(self, kind: int, count: int, t0: float, duration: float, x: float) -> None:
        rnd, family, style = self.rnd, _campaign_family(kind, x), 0
        if kind == COMP:  # a person's old account, hijacked: links to a hacked site
            sender, nsend = self.pool_pick(PERSON, t0 - 365 * DAY, weighted=False), 1
            host = f"{self.brand()}.{self.choose(HAM_TLDS)}"
        else:
            if kind != PHISH and rnd.random() < 0.6 * self.drift:
                family = F_NEW  # the drifted world's campaigns
            if family in (F_PROMO, F_NEW):
                style = rnd.randrange(5)
            if kind == PHISH:  # impersonates a real service
                brand = self.senders.brand[int(self.choose(self.pools[NOTIFY][0]))]
            else:
                brand = self.brand().title()
            if kind == SNOW:
                nsend = max(1, math.ceil(count / 1.5))
            else:
                nsend = 1 + count // 25 + rnd.randrange(2)
            sender = self.campaign_senders(kind, nsend, t0, brand)
            host = self.throwaway_domain()
            if kind == PHISH:  # a look-alike landing host of the impersonated brand
                word = self.choose(("login", "secure", "verify"))
                host = f"{brand.lower()}-{word}.{host.rsplit('.', 1)[1]}"
            elif kind == SNOW and family == F_NEWS and rnd.random() < 0.7:
                host = self.choose(ESP_HOSTS)  # bulk-mail provider abused
        variant = rnd.randrange(1 << 30)
        self.flow(count, kind, t0, t0 + duration, sender, nsend, family, variant, style, host)

    def campaign_senders(self, kind: int, nsend: int, t0: float, brand: str) -> int:
        """``nsend`` fresh accounts (a few bought aged), created shortly before ``t0``."""
        rnd = self.rnd
        freemail = kind == BURST and rnd.random() < 0.35
        aged_share = 0.03 if kind == SNOW else 0.08
        first = len(self.senders.address)
        for _ in range(nsend):
            if rnd.random() < aged_share:
                created = t0 - rnd.uniform(60, 500) * DAY
            else:
                created = t0 - (rnd.expovariate(0.5) + 0.02) * DAY
            if rnd.random() < 0.04:
                created = math.nan
            if freemail:
                local, name = self.person()
                domain = self.choose(FREEMAIL)
            elif kind == PHISH:
                tld = self.choose(SPAM_TLDS_NEW if rnd.random() < 0.5 * self.drift else PHISH_TLDS)
                word = self.choose(("secure", "account", "verify", "alerts", "service", "login"))
                b = brand.lower()
                domain = self.choose(
                    (
                        f"{b}-{word}.{tld}",
                        f"{word}-{b}.{tld}",
                        f"{b}{rnd.randrange(1, 99)}.{tld}",
                        f"{b}.{word}-center.{tld}",
                    )
                )
                local, name = self.choose(("security", "no-reply", "support", "account")), brand
            else:
                domain = self.throwaway_domain(0.6 if kind == SNOW else 0.15)
                local = self.choose(("info", "offers", "support", "news", "contact", "sales"))
                name = brand
            self.senders.add(local, domain, name, brand, created)
        return first

    # --- schedule ---------------------------------------------------------------------------
    def world(self) -> World:
        """Spread each flow's emails over the hours it spans; pack everything into a World."""
        kind, t0, t1, sender, nsend, family, variant, style, host = zip(*self.flows, strict=True)
        e_slot, e_flow, e_count = [], [], []
        for fid, count in enumerate(self.counts):
            if count == 0:
                continue
            s0 = int(t0[fid] // SLOT_SECONDS)
            s1 = min(self.n_slots, math.ceil(t1[fid] / SLOT_SECONDS))
            edges = np.arange(s0, s1 + 1, dtype=np.float64) * SLOT_SECONDS
            weights = np.maximum(
                np.minimum(edges[1:], t1[fid]) - np.maximum(edges[:-1], t0[fid]), 0
            )
            if nsend[fid] == -1:
                weights = weights * self.profile[kind[fid]][s0:s1]
            per_slot = self.rng.multinomial(count, weights / weights.sum())
            nz = np.flatnonzero(per_slot)
            e_slot.append(nz + s0)
            e_flow.append(np.full(len(nz), fid))
            e_count.append(per_slot[nz])
        e_slot_a, e_flow_a, e_count_a = (
            np.concatenate(a) if a else np.zeros(0, np.int64) for a in (e_slot, e_flow, e_count)
        )
        order = np.lexsort((e_flow_a, e_slot_a))
        e_slot_a = e_slot_a[order]
        return World(
            seed=self.seed,
            n_slots=self.n_slots,
            senders=self.senders,
            created=np.array(self.senders.created, dtype=np.float64),
            flow_kind=np.array(kind, dtype=np.int64),
            flow_t0=np.array(t0, dtype=np.float64),
            flow_t1=np.array(t1, dtype=np.float64),
            flow_sender=np.array(sender, dtype=np.int64),
            flow_nsend=np.array(nsend, dtype=np.int64),
            flow_family=np.array(family, dtype=np.int64),
            flow_variant=np.array(variant, dtype=np.int64),
            flow_style=np.array(style, dtype=np.int64),
            flow_host=list(host),
            entry_slot=e_slot_a,
            entry_flow=e_flow_a[order],
            entry_count=e_count_a[order],
            slot_entry=np.searchsorted(e_slot_a, np.arange(self.n_slots + 1)),
            # About UNIT_ROWS emails per unit: a day at small N, down to an hour at large N.
            unit_slots=int(np.clip(round(UNIT_ROWS * self.n_slots / max(self.n, 1)), 1, 24)),
            pools=self.pools,
            company_host=self.company_host,
        )


def build_world(n: int, seed: int, days: int, drift: float, hour: int, wday: int) -> World:
    """Draw the world for ``n`` emails over ``days`` days starting at ``hour`` on weekday
    ``wday`` (0 = Monday). Deterministic for ``seed``."""
    builder = _Builder(n, seed, days, drift, hour, wday)
    builder.ham_senders()
    builder.blasts()
    builder.campaigns()
    return builder.world()
