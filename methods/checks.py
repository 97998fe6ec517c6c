"""One vocabulary for checking a declared value, shared by the harness's settings (bench/settings.py) and the
methods' options (:class:`methods.base.HparamsBase`): the declared checks are ``choices`` (allowed values),
``min`` / ``max`` (inclusive bounds), ``open_min`` / ``open_max`` (exclusive bounds) and, for a list,
``distinct`` (no value twice; the bounds apply to each item); a value given as text
(a command line, ``--option l1l2.lam=0.5``) is read as the declared type by :func:`from_text`. Messages read
``<what> must be in [0, 1), got 1.0`` and ``<what>: expected a number, got 'abc'``. Imports nothing of bench."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

CHECKS = ("choices", "min", "max", "open_min", "open_max", "distinct")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def describe(kind: Any) -> str:
    """A type as an error message names it: ``an integer``, ``a number``, ``true or false``."""
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind)))


def range_problem(value: Any, checks: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` under ``checks`` (``"must be one of sgd, adamw"``, ``"must be a finite
    number"``, ``"must be >= 0"``, ``"must be in [0, 1)"``), or None when nothing is."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):   # a list: each item, then no item twice where declared
        for item in value:
            problem = range_problem(item, checks)
            if problem:
                return f"{problem} (each value; {item!r} is not)"
        twice = sorted({repr(v) for v in value if list(value).count(v) > 1})
        if checks.get("distinct") and twice:
            return f"must not list a value twice ({', '.join(twice)} is listed twice)"
        return None
    if "choices" in checks and value not in checks["choices"]:
        return f"must be one of {', '.join(map(str, checks['choices']))}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        lo, hi, olo, ohi = (checks.get(k) for k in ("min", "max", "open_min", "open_max"))
        if not ((lo is None or value >= lo) and (hi is None or value <= hi) and (olo is None or value > olo)
                and (ohi is None or value < ohi)):
            return f"must be {range_text(lo, hi, olo, ohi)}"
    return None


def range_text(lo: Any, hi: Any, olo: Any, ohi: Any) -> str:
    """Bounds as people write them: ``>= 1``, ``> 0``, ``in [0, 1)``."""
    low = f"[{lo}" if lo is not None else f"({olo}" if olo is not None else None
    high = f"{hi}]" if hi is not None else f"{ohi})" if ohi is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f"{'>=' if lo is not None else '>'} {low[1:]}"
    return f"{'<=' if hi is not None else '<'} {high[:-1]}" if high else "any value"


def from_text(text: str, kind: type) -> Any:
    """``text`` read as ``kind`` (bool: true/false, 1/0, yes/no; int; float; str as is); a ValueError whose
    message is ``expected <kind>, got '<text>'``."""
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in _TRUE or lowered in _FALSE:
                return lowered in _TRUE
            raise ValueError(text)
        return kind(text)
    except ValueError:
        raise ValueError(f"expected {describe(kind)}, got {text!r}") from None
