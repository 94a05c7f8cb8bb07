"""Put a profile's proposal into ``configs/system.yaml``, leaving every other byte as it was.

The contract is edited as text, not re-dumped, so its comments and layout stay: the items of
``data.columns`` are replaced, and single lines are rewritten for ``problem.positive_class`` /
``negative_class``, ``data.source.kind`` / ``path`` and a one-line ``data.column_mapping``.
The result is loaded and validated before it replaces the file; if it is not a valid contract,
nothing is written and :class:`WriteError` says why in one line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import ConfigError, load_config
from .profile import Profile, contract_name

_TOP = re.compile(r"^(?P<key>[A-Za-z_][\w-]*):")


class WriteError(ValueError):
    """The proposal cannot go into the contract; one line naming what is missing or wrong."""


@dataclass
class Written:
    """Where the data is read from now, and what the user runs next (None: nothing)."""

    source_kind: str
    source_path: str
    next_step: str | None


def flow(value: object) -> str:
    """``value`` as one line of YAML flow style (quoted where YAML would misread it)."""
    text = yaml.safe_dump([value], default_flow_style=True, sort_keys=False, width=10**9)
    return text.strip()[1:-1]


def columns_yaml(profile: Profile, indent: str = "    ") -> str:
    """The proposal as the items of ``data.columns``, one flow mapping per line."""
    return "".join(f"{indent}- {flow(spec)}\n" for spec in profile.specs)


def source_for(profile: Profile, data_file: Path, root: Path, direct: str | None) -> Written:
    """Validation reads the file where it is, unless a column must first be renamed or
    converted (or the format needs `data ingest`): then `data ingest` writes a Parquet file."""
    why = profile.needs_ingest + ([direct] if direct else [])
    if not why:
        try:
            shown = data_file.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            shown = str(data_file.resolve())
        return Written("file", shown, None)
    target = f"data/raw/{contract_name(data_file.stem.split('.')[0], set())}.parquet"
    step = f"run `data ingest {data_file}` (writes {target}) before training: {'; '.join(why)}"
    return Written("file", target, step)


def write(config_path: Path, profile: Profile, written: Written, note: str = "") -> None:
    """Replace the proposal's parts of ``config_path``; validate; :class:`WriteError` if the
    proposal does not fit (the file is then left untouched)."""
    missing = profile.missing_roles()
    if missing:
        raise WriteError(
            f"no column found for role {', '.join(missing)}: the contract needs exactly one "
            f"{' / '.join(missing)} column ({_HINTS_TEXT})"
        )
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise WriteError(f"{config_path}: cannot read ({exc})") from None
    lines = text.splitlines(keepends=True)
    lines = _replace_columns(config_path, lines, profile, note)
    values = {
        ("problem", "positive_class"): profile.positive_class,
        ("problem", "negative_class"): profile.negative_class,
        ("data", "source", "kind"): written.source_kind,
        ("data", "source", "path"): written.source_path,
        ("data", "column_mapping"): profile.mapping,
    }
    for key, value in values.items():
        _set_scalar(config_path, lines, key, value)
    _replace_checked(config_path, "".join(lines))


_HINTS_TEXT = (
    "id: unique per row; timestamp: ISO times or epoch seconds named like ts / *_at; "
    "label: 2 values named like label / target / is_*"
)


def _section(lines: list[str], path: tuple[str, ...]) -> tuple[int, int, str] | None:
    """(first line, end line, indent) of the block under the mapping key ``path``."""
    start, end, indent = 0, len(lines), ""
    for key in path:
        pattern = re.compile(rf"^{re.escape(indent)}{re.escape(key)}:\s*(#.*)?$")
        found = next((i for i in range(start, end) if pattern.match(lines[i].rstrip("\r\n"))), None)
        if found is None:
            return None
        start, key_indent = found + 1, indent
        end = next(
            (
                i
                for i in range(start, end)
                if _content(lines[i])
                and _indent(lines[i]) <= len(key_indent)
                and not lines[i].lstrip().startswith("- ")
            ),
            end,
        )
        child = next((lines[i] for i in range(start, end) if _content(lines[i])), None)
        if child is None:
            return start, start, key_indent + "  "
        indent = " " * _indent(child)
    return start, end, indent


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _replace_columns(path: Path, lines: list[str], profile: Profile, note: str) -> list[str]:
    found = _section(lines, ("data", "columns"))
    if found is None:
        raise WriteError(f"{path}: no block list under data.columns to replace (edit it by hand)")
    start, end, indent = found
    items = [i for i in range(start, end) if _content(lines[i])]
    if items and not all(
        lines[i].lstrip().startswith(("- ", "{")) or _indent(lines[i]) > len(indent) for i in items
    ):
        raise WriteError(f"{path}: data.columns is not a block list (edit it by hand)")
    last = items[-1] + 1 if items else start  # comments after the last item stay
    block = (f"{indent}# {note}\n" if note else "") + columns_yaml(profile, indent)
    return lines[:start] + [block] + lines[last:]


def _set_scalar(path: Path, lines: list[str], key: tuple[str, ...], value: object) -> None:
    """Rewrite ``key: value`` on its own line (keeping a trailing comment)."""
    parent = _section(lines, key[:-1])
    if parent is None:
        raise WriteError(f"{path}: no {'.'.join(key[:-1])} section")
    start, end, indent = parent
    pattern = re.compile(
        rf"^{re.escape(indent)}{re.escape(key[-1])}:(?P<value>.*?)(?P<rest>\s+#.*)?$"
    )
    for i in range(start, end):
        match = pattern.match(lines[i].rstrip("\r\n"))
        if match is None:
            continue
        if not match["value"].strip() or _flow_line(match["value"]) is None:
            raise WriteError(f"{path}: {'.'.join(key)} spans several lines (edit it by hand)")
        newline = lines[i][len(lines[i].rstrip("\r\n")) :]
        rest = match["rest"] or ""
        new = f"{indent}{key[-1]}: {flow(value)}{rest}{newline}"
        if _flow_line(match["value"]) != value:
            lines[i] = new
        return
    raise WriteError(f"{path}: no {'.'.join(key)} line")


def _flow_line(text: str) -> object:
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return None


def _replace_checked(config_path: Path, text: str) -> None:
    # The trial copy sits beside the contract: relative paths resolve against the same root.
    trial = config_path.with_name(f".{config_path.name}.profile")
    try:
        trial.write_text(text, encoding="utf-8")
        load_config(trial)
    except ConfigError as exc:
        trial.unlink(missing_ok=True)
        problems = str(exc).splitlines()[1:] or [str(exc)]
        raise WriteError(f"the proposal is not a valid contract: {'; '.join(problems)}") from None
    except (OSError, UnicodeError) as exc:
        trial.unlink(missing_ok=True)
        raise WriteError(f"{config_path}: cannot write ({exc})") from None
    os.replace(trial, config_path)
