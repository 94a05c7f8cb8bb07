"""What a domain pack gives the core: ``DomainPack``.

The core (contract, data checks, the role families, training, serving, monitoring) knows column
roles, not what the records are. A pack adds what only its domain knows, each part optional:

- ``families(cfg)``: feature families beyond the core's role families (same protocol:
  ``consumes``, ``fit``, ``transform``, ``get_feature_names_out``), for the contract's columns;
  the columns they declare in ``consumes`` are left out of the role families;
- ``skipped_roles``: roles whose core family the pack leaves out, for a reason it documents;
- ``structured_text``: text columns that are lists, not prose (not profiled as text);
- ``entity_created_at``: the column holding when the entity came to be (account age), when it
  is not ``<entity key>_created_at``;
- ``generator``: a function returning the synthetic world behind ``data generate`` (imported
  when used): ``frames(n, seed, days, start, drift, labels=(positive, negative))`` yielding
  time-ordered frames, and ``empty()``, the frame of no rows with the generated schema;
- ``reader``: a function returning the module that reads the domain's own sources in
  ``data ingest`` (``FORMATS``, ``SUFFIXES``, ``ALIASES``, ``FOLDER_FORMAT``, ``sniff(head)``,
  ``read(cfg, source, fmt, labels, ...)``, returning the canonical frame, the count read and
  notes);
- ``canonical(cfg, column, cols, out)``: the canonical values of a contract column the domain
  knows how to repair when ingesting a table (``data.canonical``), or None for the core's way;
- ``slices(raw_df)``: the domain's evaluation slices (name -> boolean mask over the rows;
  a slice whose column is absent is left out), besides the core's new / established entity;
- ``sample_rows``: how many records ``data generate`` and the pipeline make by default: enough
  positives for the evaluation to judge the contract's targets;
- ``record``: the name of one record in the API (e.g. ``Transaction``; ``Record``);
- ``complete(record, entity)``: fills, in place, fields of a served record (a dict) that a
  client left out and the domain can derive (a domain from an address, say).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Generator(Protocol):
    """A synthetic world: deterministic for a seed, frames in time order."""

    def frames(self, n: int, seed: int, days: int, start: Any, drift: float, labels: tuple): ...

    def empty(self): ...


def _no_families(cfg) -> list:
    return []


@dataclass(frozen=True)
class DomainPack:
    """One use case's additions to the core (see the module docstring)."""

    name: str
    record: str = "Record"
    families: Callable[[Any], list] = _no_families
    skipped_roles: frozenset[str] = field(default_factory=frozenset)
    structured_text: frozenset[str] = field(default_factory=frozenset)
    entity_created_at: str | None = None
    generator: Callable[[], Generator] | None = None
    sample_rows: int = 20_000
    complete: Callable[[dict, str | None], None] | None = None
    reader: Callable[[], Any] | None = None
    canonical: Callable[..., list | None] | None = None
    slices: Callable[[Any], dict] | None = None

    def text_columns(self, cfg) -> tuple[str, ...]:
        """The contract's prose text columns (structured ones aside)."""
        return tuple(
            c.name for c in cfg.data.columns_with("text") if c.name not in self.structured_text
        )


CORE = DomainPack(name="none")
