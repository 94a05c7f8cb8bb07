"""Find the messages of a mail source: a folder tree of .eml / plain message files, or mbox.

Readers only locate and read bytes; :mod:`.mail` parses them (possibly in worker processes).
A file that cannot be read still yields an item, with an ``error`` reason, so the run counts
and quarantines it instead of losing it.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ...data.tabular import Skipped

# A single message larger than this is quarantined by reference (mbox files stream instead).
MAX_MESSAGE_BYTES = 64 * 2**20
MBOX_SUFFIXES = (".mbox", ".mbx")
# The words of an mbox envelope's date, as writers put it ("Mon Jan  1 10:00:00 2024", some with
# a zone, "+0000" or "PST", or a comma): day and month names, numbers, a time, a zone.
_DATE_WORD = re.compile(rb"\d{1,2},?|\d{1,2}:\d{2}(?::\d{2})?|[+-]\d{4}|[A-Z]{1,5}|\d{4}")
_TIME = re.compile(rb"\d{1,2}:\d{2}(?::\d{2})?")
_ANY_TIME = re.compile(rb"\d{1,2}:\d{2}")
# A header line: a field name, then a colon (RFC 5322).
_HEADER_LINE = re.compile(rb"[!-9;-~]+:")
BOM = b"\xef\xbb\xbf"
_YEAR = re.compile(rb"\d{4}")
_MONTHS = frozenset(b"jan feb mar apr may jun jul aug sep oct nov dec".split())
_NAMES = _MONTHS | frozenset(b"mon tue wed thu fri sat sun".split())
# mboxrd quoting: ">From " in a body was written for "From "; one ">" is removed on reading.
_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)


class MailItem(NamedTuple):
    """One message to parse, or a reason why it could not even be read."""

    source: str
    location: str
    data: bytes | None
    error: str | None = None
    detail: str = ""
    label: str | None = None  # from the folder (or mbox file) names
    names: tuple[str, ...] = ()  # relative path and file name, for a labels file
    envelope: str | None = None  # the mbox "From " line, a last resort for the date


def folder_label(parts: list[str], folders: dict[str, str]) -> str | None:
    """The class of the deepest folder name that is a label folder (case-insensitive)."""
    for part in reversed(parts):
        label = folders.get(part.strip().lower())
        if label is not None:
            return label
    return None


def is_separator(line: bytes) -> bool:
    """A line shaped like an mbox "From " line: a sender token, then a time somewhere or nothing
    at all. Whether it starts a message is :func:`iter_mbox`'s to say (see there)."""
    if not line.startswith(b"From "):
        return False
    rest = line[5:].strip()
    return bool(rest) and (bool(_ANY_TIME.search(rest)) or len(rest.split()) == 1)


def is_envelope(line: bytes) -> bool:
    """A "From " line that is an mbox envelope whatever follows it: a sender token, then a date
    with a month's name, a time and a year, and no word that is not a date's."""
    words = line[5:].split() if is_separator(line) else []
    date = words[1:]
    return (
        bool(date)
        and all(_DATE_WORD.fullmatch(w) or w.rstrip(b",").lower() in _NAMES for w in date)
        and any(word.rstrip(b",").lower() in _MONTHS for word in date)
        and any(_TIME.fullmatch(word) for word in date)
        and any(_YEAR.fullmatch(word) for word in date)
    )


def iter_mbox(
    stream: BinaryIO, source: str, label: str | None, names: tuple[str, ...] = ()
) -> Iterator[MailItem]:
    """Split an mbox stream into messages.

    A "From " line separates only after a blank line (or at the start), and only when it is an
    envelope (:func:`is_envelope`) or, shaped like one (other date styles: ISO 8601, a trailing
    comment, "remote from", a sender alone), is followed by a header line. A body line some
    writers leave unquoted, "From 9:00 to 17:00 we are open", does not cut its message short.
    """
    index, start, envelope, pos, blank_before = -1, 0, None, 0, True
    lines: list[bytes] = []
    pending: tuple[bytes, int] | None = None  # a "From " line waiting for the next line
    for line in stream:
        bare = line.rstrip(b"\r\n")
        if pos == 0:
            bare = bare.removeprefix(BOM)
        if pending is not None:
            held, held_pos = pending
            pending = None
            if _HEADER_LINE.match(bare):
                if index >= 0 or any(x.strip() for x in lines):
                    yield _mbox_item(source, index, start, envelope, lines, label, names)
                index, start, lines = index + 1, held_pos, []
                envelope = held.rstrip(b"\r\n").removeprefix(BOM).decode("latin-1")
            else:
                lines.append(held)
                blank_before = False
        if blank_before and is_separator(bare):
            pending = (line, pos)
            if is_envelope(bare):  # no need to wait
                pending = None
                if index >= 0 or any(x.strip() for x in lines):
                    yield _mbox_item(source, index, start, envelope, lines, label, names)
                index, start, lines = index + 1, pos, []
                envelope = bare.decode("latin-1")
        else:
            lines.append(line)
        blank_before = not bare.strip()
        pos += len(line)
    if pending is not None:
        lines.append(pending[0])
    if index >= 0 or any(x.strip() for x in lines):
        yield _mbox_item(source, index, start, envelope, lines, label, names)


def _mbox_item(source, index, start, envelope, lines, label, names) -> MailItem:
    if lines and not lines[-1].strip():  # the blank line that precedes the next separator
        lines = lines[:-1]
    data = _UNQUOTE.sub(rb"\1", b"".join(lines))
    where = f"message {index}, byte {start}" if index >= 0 else "before the first message, byte 0"
    return MailItem(source, where, data, label=label, names=names, envelope=envelope)


def iter_file(
    path: Path, folders: dict[str, str], root: Path | None = None, mbox: bool = False
) -> Iterator[MailItem]:
    """The messages of one file: one message, or several when it is an mbox."""
    rel = path.relative_to(root) if root is not None else Path(path.name)
    parts = [root.name, *rel.parts[:-1]] if root is not None else [path.parent.name]
    names = (rel.as_posix(), path.name)  # the most specific first
    source = str(path)
    try:
        if mbox or path.suffix.lower() in MBOX_SUFFIXES:
            with open(path, "rb") as handle:
                label = folder_label([*parts, path.stem], folders)
                yield from iter_mbox(handle, source, label, names)
            return
        size = path.stat().st_size
        if size > MAX_MESSAGE_BYTES:
            label = folder_label(parts, folders)
            yield MailItem(source, "file", None, "too_large", f"{size:,} bytes", label, names)
            return
        data = path.read_bytes()
    except OSError as exc:
        label = folder_label(parts, folders)
        yield MailItem(source, "file", None, "unreadable_file", str(exc), label, names)
        return
    first = data[:1000].removeprefix(BOM).split(b"\n", 1)[0].rstrip(b"\r")
    if is_separator(first):  # an mbox without suffix
        yield from iter_mbox(io.BytesIO(data), source, folder_label([*parts, path.stem], folders))
        return
    yield MailItem(source, "file", data, label=folder_label(parts, folders), names=names)


class _Walk:
    """State of one tree walk: the links left for after the real tree, and what was read
    through links (the real walk reads every path inside the tree that has no hidden part)."""

    def __init__(self, root: Path, skipped: list[Skipped]) -> None:
        self.root = root.resolve()
        self.skipped = skipped
        self.linked: set[Path] = set()  # real paths of folders and files read through links
        self.links: list[Path] = []

    def was_read(self, target: Path) -> bool:
        """Whether ``target`` (a real path inside the tree) was read already."""
        hidden = any(part.startswith(".") for part in target.relative_to(self.root).parts)
        return not hidden or target in self.linked or any(p in self.linked for p in target.parents)


def iter_tree(
    folder: Path,
    folders: dict[str, str],
    skip: set[Path],
    skipped: list[Skipped] | None = None,
) -> Iterator[MailItem]:
    """Every message under a folder: sub-folders first, then files, each sorted by name, so
    the order never depends on the file system. Hidden files and ``skip`` are not read.

    Symbolic links are followed only after the real tree, and only to what lies inside the
    tree and was not read yet; every other link, and every entry that is not a regular file
    or folder (a FIFO would block), is appended to ``skipped`` instead of being read.
    """
    walk = _Walk(folder, [] if skipped is None else skipped)
    yield from _iter_folder(walk, folder, folders, skip, folder)
    while walk.links:
        link = walk.links.pop(0)
        yield from _follow(walk, link, folders, skip, folder)


def _iter_folder(walk: _Walk, folder: Path, folders, skip, root: Path) -> Iterator[MailItem]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield MailItem(str(folder), "folder", None, "unreadable_file", str(exc))
        return
    dirs, files = [], []
    for entry in entries:
        if entry.name.startswith("."):  # .DS_Store, .git, editor files: tooling, not mail
            continue
        path = Path(entry.path)
        try:
            if entry.is_symlink():
                walk.links.append(path)
            elif entry.is_dir(follow_symlinks=False):
                dirs.append(path)
            elif entry.is_file(follow_symlinks=False):
                files.append(path)
            else:
                walk.skipped.append(Skipped(str(path), "not_a_file", "not a regular file"))
        except OSError:
            files.append(path)  # reading it reports the error
    for sub in dirs:
        yield from _iter_folder(walk, sub, folders, skip, root)
    for path in files:
        if not skip or path.resolve() not in skip:
            yield from iter_file(path, folders, root)


def _follow(walk: _Walk, link: Path, folders, skip, root: Path) -> Iterator[MailItem]:
    """Read what a link inside the tree points to, or record why not."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # dangling, or a cycle of links
        why = "does not exist" if isinstance(exc, FileNotFoundError) else type(exc).__name__
        try:
            where = os.readlink(link)
        except OSError:
            where = "?"
        walk.skipped.append(Skipped(str(link), "broken_link", f"-> {where} ({why})"))
        return
    if not target.is_relative_to(walk.root):
        walk.skipped.append(Skipped(str(link), "link_outside_tree", f"-> {target}"))
    elif target in skip:  # the labels file: not mail, never counted
        return
    elif walk.was_read(target):  # a link back up the tree, or to what was read already
        walk.skipped.append(Skipped(str(link), "link_already_read", f"-> {target}"))
    elif target.is_dir():
        walk.linked.add(target)
        yield from _iter_folder(walk, link, folders, skip, root)
    elif not target.is_file():
        walk.skipped.append(Skipped(str(link), "not_a_file", f"-> {target}"))
    else:
        walk.linked.add(target)
        yield from iter_file(link, folders, root)
