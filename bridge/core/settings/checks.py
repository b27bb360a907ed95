"""Checks of single configuration values that the models share: pure, no I/O.

Each check returns the value or raises ``ValueError`` with a message that
never contains the value itself (the values checked here are often secrets).
A message may start with a sub-place (``.X-Api-Key: ...`` or ``[1]: ...``)
that the loader appends to the field's place; several problems of one field
are one message with one line each.
"""

from __future__ import annotations

import binascii
from urllib.parse import urlsplit

import jmespath.exceptions
from pydantic import SecretStr

__all__ = [
    "MIN_SECRET_BYTES",
    "check_clean",
    "check_clean_secret",
    "check_http_url",
    "check_webhook_secret",
    "control_character_problem",
    "duplicate_names",
    "jmespath_problem",
]

MIN_SECRET_BYTES = 8
"""The fewest bytes a webhook secret signs with (after ``whsec_`` base64 decoding)."""

_NEWLINE_HINT = (
    "ends with a newline; in YAML write `>-` or `|-` instead of `>` or `|`, "
    "or strip the newline from the file or variable it comes from"
)


def control_character_problem(value: str) -> str | None:
    """Why ``value`` cannot go into an HTTP header or a token, or None; never quotes it."""
    if value.endswith(("\n", "\r")):
        return _NEWLINE_HINT
    for index, char in enumerate(value):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return (
                f"contains the control character U+{ord(char):04X} at position {index + 1}; "
                "header values, tokens and secrets may not contain control characters"
            )
    return None


def check_clean(value: str) -> str:
    """A plain value (a user name, a client id) that goes into a header: no control characters."""
    problem = control_character_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def check_clean_secret(value: SecretStr) -> SecretStr:
    """A secret that goes into a header or a signature: no control characters."""
    check_clean(value.get_secret_value())
    return value


def check_webhook_secret(value: SecretStr) -> SecretStr:
    """A webhook signing secret: clean, ``whsec_`` base64 that decodes, and long enough.

    A secret without ``whsec_`` stays legal (it signs with its raw bytes); the
    loader warns about it. The decoding is the one signing uses at run time.
    """
    from bridge.core.signing import SECRET_PREFIX, secret_key
    from bridge.errors import SignatureError

    text = check_clean_secret(value).get_secret_value()
    if text.startswith(SECRET_PREFIX):
        try:
            key = secret_key(text)
        except (SignatureError, binascii.Error, ValueError):
            raise ValueError(
                "a whsec_ secret must be valid base64 after its prefix "
                "(e.g. from `openssl rand -base64 32`)"
            ) from None
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"a whsec_ secret must decode to at least {MIN_SECRET_BYTES} bytes "
                f"(this one has {len(key)})"
            )
    elif len(text) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret must have at least {MIN_SECRET_BYTES} characters")
    return value


def check_http_url(value: str) -> str:
    """An http(s) URL that parses: a scheme, a host, no spaces or control characters."""
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(
            "must be an http:// or https:// URL without spaces or control characters "
            "(percent-encode a space as %20)"
        )
    try:
        parts = urlsplit(value)
        port = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ValueError("is not a valid URL: check the host and the port") from None
    if parts.scheme not in {"http", "https"}:
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host, e.g. https://hooks.example.com/path")
    if port == 0:
        raise ValueError("port 0 cannot be connected to")
    return value


def jmespath_problem(exc: jmespath.exceptions.JMESPathError) -> str:
    """One line on why an expression does not parse, with the position of the problem."""
    lines = str(exc).splitlines()
    text = lines[0] if lines else "invalid expression"
    text = text.removeprefix("Invalid jmespath expression: ").rstrip(": ") or "invalid expression"
    position = getattr(exc, "lex_position", None)
    if isinstance(position, int):
        text += f" (at character {position + 1})"
    return f"not a valid JMESPath expression: {text}"


def duplicate_names(section: str, names: list[tuple[int, object]], key: str = "name") -> list[str]:
    """``section[i].name: ...`` for each name (or other ``key``) an earlier entry has."""
    problems: list[str] = []
    first: dict[str, int] = {}
    for index, name in names:
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(
                f"{section}[{index}].{key}: '{name}' is already the {key} of "
                f"{section}[{first[name]}]; {key}s must be unique"
            )
        first.setdefault(name, index)
    return problems
