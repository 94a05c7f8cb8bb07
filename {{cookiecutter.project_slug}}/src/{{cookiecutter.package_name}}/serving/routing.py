"""Which model answers a request: ``single``, ``shadow`` or ``canary`` routing.

The mode comes from the contract (``serving.routing``, ``serving.canary_percent``); the
environment variables ``SERVING_ROUTING`` and ``CANARY_PERCENT`` override it, so an operator
switches modes by restarting pods with another value, without a code or contract change.

Canary traffic is chosen per entity, not per request: a stable hash of the normalised entity
puts each entity in one of 10,000 buckets, and the buckets below ``percent`` go to the
challenger. An entity therefore never flips between models while the percentage stays the same,
and raising the percentage only moves entities from the champion to the challenger. The salt
(the challenger's version) gives each new challenger a fresh cohort, so the same entities are not
always the ones trying new models.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

MODES = ("single", "shadow", "canary")
ROUTING_ENV = "SERVING_ROUTING"
CANARY_ENV = "CANARY_PERCENT"
CHAMPION = "champion"
CHALLENGER = "challenger"
_BUCKETS = 10_000


class RoutingError(ValueError):
    """An invalid routing mode or canary percentage; the message names the setting."""


@dataclass(frozen=True)
class RoutingPlan:
    """The effective routing: mode, canary share in percent, and the hash salt."""

    mode: str
    canary_percent: float = 0.0
    salt: str = ""

    def answering_role(self, entity: str | None) -> str:
        """``champion`` or ``challenger``: which model's answer this entity gets."""
        if self.mode == "canary" and in_canary(entity, self.canary_percent, self.salt):
            return CHALLENGER
        return CHAMPION

    @property
    def shadow(self) -> bool:
        """True when the challenger also scores every request off the response path."""
        return self.mode == "shadow"

    @property
    def needs_challenger(self) -> bool:
        return self.mode != "single"


def plan_from(cfg, env: Mapping[str, str] | None = None, *, salt: str = "") -> RoutingPlan:
    """The routing of the contract, overridden by ``SERVING_ROUTING`` / ``CANARY_PERCENT``."""
    env = os.environ if env is None else env
    mode = (env.get(ROUTING_ENV) or cfg.serving.routing).strip().lower()
    if mode not in MODES:
        raise RoutingError(f"{ROUTING_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    raw = env.get(CANARY_ENV)
    percent = cfg.serving.canary_percent
    if raw not in (None, ""):
        try:
            percent = float(raw)
        except ValueError:
            raise RoutingError(f"{CANARY_ENV}={raw!r}: expected a number from 0 to 100") from None
        if not 0 <= percent <= 100:
            raise RoutingError(f"{CANARY_ENV}={raw!r}: expected a number from 0 to 100")
    return RoutingPlan(mode=mode, canary_percent=float(percent), salt=salt)


def normalise_entity(entity: str | None) -> str:
    """The form of an entity that is hashed: trimmed, lower case ("" when missing)."""
    return (entity or "").strip().lower()


def entity_bucket(entity: str | None, salt: str = "") -> int:
    """A stable bucket in ``[0, 10000)`` for an entity (same in every process and release)."""
    digest = hashlib.blake2b(
        normalise_entity(entity).encode("utf-8", "surrogatepass"),
        digest_size=8,
        key=salt.encode("utf-8")[:64],
    ).digest()
    return int.from_bytes(digest, "big") % _BUCKETS


def in_canary(entity: str | None, percent: float, salt: str = "") -> bool:
    """True when this entity belongs to the ``percent`` % canary cohort."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    return entity_bucket(entity, salt) < round(percent * _BUCKETS / 100)
