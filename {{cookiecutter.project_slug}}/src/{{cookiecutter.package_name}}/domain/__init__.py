"""Domain packs: what only one use case knows, behind one seam.

The contract's ``data.domain`` names the pack, a package in this folder; ``none`` is the core
alone. Each pack's package defines ``PACK``, a
``DomainPack`` (``pack.py``). The core asks ``pack_of(cfg)`` and never imports a pack by name,
so a pack of your own is a folder here and one line in the contract.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from pathlib import Path

from .pack import CORE, DomainPack

NONE = "none"


def available() -> list[str]:
    """The packs present in this project (folders with an ``__init__.py``)."""
    here = Path(__file__).parent
    return sorted(p.parent.name for p in here.glob("*/__init__.py"))


def require(name: str) -> str:
    """``name`` when this project has that pack (or it is ``none``), else a ValueError naming
    the packs it has; the contract's loader checks ``data.domain`` with it."""
    if name != NONE and name not in available():
        raise ValueError(
            f"no pack {name!r} in this project (packs: {', '.join([NONE, *available()])})"
        )
    return name


@cache
def load(name: str) -> DomainPack:
    """The pack called ``name`` (``none``: the core alone)."""
    if require(name) == NONE:
        return CORE
    return import_module(f".{name}", __name__).PACK


def pack_of(cfg) -> DomainPack:
    """The pack the contract names."""
    return load(cfg.data.domain)
