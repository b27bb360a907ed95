"""Logging: one ``configure_logging()`` for the whole process.

JSON lines when stderr is not a terminal (production, CI), a readable console
renderer on a terminal. ``structlog.contextvars`` carries ``event_id``,
``delivery_id`` and ``subscription`` into every line written while a delivery
is handled. Secrets never reach a log line: settings hold them as
``SecretStr`` and callers log names and reasons, never values; the
``_scrub`` processor is a last guard for known secret strings.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

__all__ = [
    "configure_logging",
    "display_url",
    "get_logger",
    "register_secrets",
    "scrub_secrets",
]

_SECRETS: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that no log line can ever carry one."""
    _SECRETS.update(v for v in values if len(v) >= 4)


def scrub_secrets(text: str) -> str:
    """``text`` with every registered secret masked (e.g. a receiver echoing our headers)."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "**********")
    return text


def display_url(url: str) -> str:
    """``url`` fit to print: credentials, query string and fragment masked.

    Receivers often take a token in the query (``?token=…``) or in the user
    part (``https://key@host``); neither may reach a terminal or a log.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    tail = ""
    if cut >= 0:
        tail = rest[cut] + "***"
        rest = rest[:cut]
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return scrub_secrets(f"{scheme}{sep}{authority}{slash}{path}{tail}")


def _masked(value: Any, depth: int = 0) -> Any:
    """``value`` with secrets masked in its strings, inside lists, tuples and dicts too."""
    if isinstance(value, str):
        return scrub_secrets(value)
    if depth >= 4:  # log values are shallow; a deeper one is left as it is
        return value
    if isinstance(value, list | tuple):
        return type(value)(_masked(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return {key: _masked(item, depth + 1) for key, item in value.items()}
    return value


def _scrub(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    if not _SECRETS:
        return event_dict
    for key, value in list(event_dict.items()):
        event_dict[key] = _masked(value)
    return event_dict


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Set up structlog and the standard library's logging (for aiohttp and paho)."""
    as_json = (not sys.stderr.isatty()) if json is None else json
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
