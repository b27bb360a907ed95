"""Parsing of the human units the configuration speaks: durations, sizes, rates.

Pure functions; each raises ``ValueError`` with the reason, which pydantic turns
into a place-qualified config error. Messages never repeat the offending value:
a secret pasted under the wrong key must not be printed back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Rate", "format_duration", "parse_duration", "parse_rate", "parse_size"]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _scaled(
    text: str, what: str, units: Mapping[str, float], default_unit: str, *, hint: tuple[str, str]
) -> float:
    """``text`` (a number and an optional unit, any case) in the base unit of ``units``;
    ``hint``: examples, and the units by name, for the error messages."""
    examples, unit_names = hint
    match = _NUMBER_UNIT.match(text)
    if match is None:
        raise ValueError(f"not a {what}; use {examples}")
    number, unit = match.groups()
    factor = units.get(unit.lower() if unit else default_unit)
    if factor is None:
        raise ValueError(f"unknown {what} unit; use {unit_names}")
    return float(number) * factor


def parse_duration(value: object) -> float:
    """``200ms``, ``10s``, ``5m``, ``2h``, ``7d`` or a bare number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '10s'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration must be a number of seconds or a string like '10s'")
    hint = ("e.g. 200ms, 10s, 5m, 2h, 7d", "ms, s, m, h or d")
    return _scaled(value, "duration", _DURATION_UNITS, "s", hint=hint)


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` in the units ``parse_duration`` reads."""
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= factor and (seconds / factor).is_integer():
            return f"{int(seconds / factor)}{unit}"
    return f"{round(seconds * 1000)}ms"


def parse_size(value: object) -> int:
    """``256KB`` (KB = 1024 bytes), ``1MB``, ``512B`` or a bare number of bytes → bytes."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '256KB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError("a size must be a number of bytes or a string like '256KB'")
    hint = ("e.g. 512B, 256KB, 1MB", "B, KB, MB or GB")
    return int(_scaled(value, "size", _SIZE_UNITS, "b", hint=hint))


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``per`` seconds."""

    count: float
    per: float

    def __str__(self) -> str:
        return f"{self.count:g}/{format_duration(self.per)}"


def parse_rate(value: object) -> Rate:
    """``50/s``, ``600/m``, ``10/5s`` → a :class:`Rate`."""
    if isinstance(value, Rate):
        return value
    if not isinstance(value, str) or "/" not in value:
        raise ValueError("a rate must be a string like '50/s' or '600/m'")
    count_text, _, per_text = value.partition("/")
    try:
        count = float(count_text.strip())
    except ValueError:
        raise ValueError("the count of a rate must be a number, as in '50/s'") from None
    per_text = per_text.strip()
    per = parse_duration(per_text if per_text[:1].isdigit() else f"1{per_text}")
    if count <= 0 or per <= 0:
        raise ValueError("a rate must be positive")
    return Rate(count=count, per=per)
