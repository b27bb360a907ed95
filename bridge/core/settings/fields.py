"""Field types the configuration models share: durations, sizes and rates as a user writes them,
and values that go into a request header as written.

Pure, like :mod:`bridge.core.settings.models`: each type parses what a user writes
(``30s``, ``256KB``, ``50/s``) and describes it in the JSON Schema.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, SecretStr, WithJsonSchema

from bridge.core.settings.checks import check_clean, check_clean_secret
from bridge.core.settings.units import Rate, format_duration, parse_duration, parse_rate, parse_size

__all__ = ["CleanSecret", "CleanText", "Duration", "RateLimit", "Size"]


def _number_or_text(number_type: str, pattern: str) -> WithJsonSchema:
    """What a user may write: a bare number (of the base unit), or text with a unit."""
    return WithJsonSchema(
        {"anyOf": [{"type": number_type, "minimum": 0}, {"type": "string", "pattern": pattern}]}
    )


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    _number_or_text("number", r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"),
]
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    _number_or_text("integer", r"^\s*\d+(\.\d+)?\s*([bB]|[kKmMgG][bB])?\s*$"),
]
RateLimit = Annotated[
    Rate,
    BeforeValidator(parse_rate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*/\s*\d*\.?\d*\s*(ms|s|m|h|d)\s*$"}
    ),
]

# A user name, a client id, a token or a secret that goes into a header: no control characters.
CleanText = Annotated[str, AfterValidator(check_clean)]
CleanSecret = Annotated[SecretStr, AfterValidator(check_clean_secret)]
