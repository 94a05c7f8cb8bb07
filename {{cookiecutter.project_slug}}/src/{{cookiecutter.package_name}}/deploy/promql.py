"""Just enough PromQL reading for the checks: metric names in an expression, and thresholds.

Thresholds are the number after the last comparison of an expression or an Argo condition
(``... > 0.001``, ``result[0] <= 50``), or the minutes of its range selectors (``[10m]``).
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![\w:])\d[\w.]*")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2",
}  # fmt: skip
# The last comparison of an expression; a closing quote may follow when read from a YAML line.
_THRESHOLD = re.compile(
    r"(?P<op><=|>=|==|!=|<|>)\s*(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*[\"']?\s*$"
)
_RANGE = re.compile(r"\[(?P<n>\d+)(?P<unit>[smhd])\]")
_MINUTES = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (functions, keywords, labels excluded)."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def trailing_threshold(expr: str) -> float | None:
    """The number compared against at the end of ``expr``, or None."""
    match = _THRESHOLD.search(expr.strip())
    return float(match.group("num")) if match else None


def replace_trailing_threshold(expr: str, value: str) -> str:
    """``expr`` (or a YAML line ending one) with its trailing threshold replaced by ``value``."""
    match = _THRESHOLD.search(expr)
    if match is None:
        raise ValueError(f"no trailing comparison in: {expr!r}")
    return expr[: match.start("num")] + value + expr[match.end("num") :]


def range_minutes(expr: str) -> list[float]:
    """The length in minutes of every range selector in ``expr``."""
    return [int(m.group("n")) * _MINUTES[m.group("unit")] for m in _RANGE.finditer(expr)]


def replace_ranges(expr: str, minutes: int) -> str:
    """``expr`` with every range selector set to ``minutes``."""
    return _RANGE.sub(f"[{minutes}m]", expr)
