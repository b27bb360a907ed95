"""Topic templates and MQTT topic filters: pure functions, no I/O.

A topic template names values by dotted path in braces:
``devices/{data.device_id}/commands``. :func:`render_topic` substitutes them
from a context mapping (the event envelope for a pipe ``reply_topic``,
``{"body": <request body>}`` for an inbound webhook). A substituted value must
be a non-empty string or number and must not hold ``/``, ``+``, ``#`` or NUL:
otherwise a sender could reach a topic level (or a wildcard) it was not meant
to, and rendering raises :class:`~bridge.errors.TemplateError` instead.

:func:`check_template` validates a template when the configuration is loaded
(balanced braces, dotted names, no wildcards in the literal parts), and
:func:`topic_matches` answers whether an MQTT filter with ``+`` and ``#``
matches a topic (``allow_topics`` of inbound webhooks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bridge.errors import TemplateError

__all__ = ["check_filter", "check_template", "placeholders", "render_topic", "topic_matches"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_0-9][A-Za-z0-9_-]*)*$")
_FORBIDDEN = ("/", "+", "#", "\x00")


def placeholders(template: str) -> list[str]:
    """The dotted paths a template substitutes, in order."""
    return _PLACEHOLDER.findall(template)


def check_template(template: str, *, roots: tuple[str, ...] | None = None) -> None:
    """Raise :class:`TemplateError` for a template that can never render safely.

    ``roots``, when given, lists the first path segments allowed (``("body",)``
    for inbound topics), so a typo such as ``{bdy.id}`` fails at load time.
    """
    if not template:
        raise TemplateError("a topic template may not be empty")
    if "\x00" in template:
        raise TemplateError("a topic template may not hold NUL")
    literal = _PLACEHOLDER.sub("", template)
    if "{" in literal or "}" in literal:
        raise TemplateError(f"unbalanced braces in topic template {template!r}")
    if "+" in literal or "#" in literal:
        raise TemplateError("a topic template may not hold the wildcards + or #")
    if "" in template.split("/"):
        raise TemplateError(f"topic template {template!r} has an empty level")
    for path in placeholders(template):
        if not _PATH.match(path):
            raise TemplateError(f"{{{path}}} is not a dotted name such as {{data.device_id}}")
        if roots is not None and path.split(".", 1)[0] not in roots:
            allowed = ", ".join(f"{{{root}.…}}" for root in roots)
            raise TemplateError(f"{{{path}}} is not available here; use {allowed}")


def _lookup(context: Mapping[str, Any], path: str) -> object:
    value: object = context
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            raise TemplateError(f"{{{path}}} has no value")
    return value


def _as_level(path: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TemplateError(f"{{{path}}} is not a string or number")
    text = str(value)
    if not text:
        raise TemplateError(f"{{{path}}} is empty")
    if any(mark in text for mark in _FORBIDDEN):
        raise TemplateError(f"{{{path}}} holds '/', '+', '#' or NUL")
    return text


def render_topic(template: str, context: Mapping[str, Any]) -> str:
    """Substitute every ``{dotted.path}`` of ``template`` from ``context``; refuse unsafe values."""

    def substitute(match: re.Match[str]) -> str:
        path = match.group(1)
        return _as_level(path, _lookup(context, path))

    # Substituted values are never empty and hold no '/', so the topic has
    # exactly the levels of the template, none of them empty.
    return _PLACEHOLDER.sub(substitute, template)


def check_filter(topic_filter: str) -> None:
    """Raise :class:`TemplateError` for an invalid MQTT topic filter."""
    if not topic_filter or "\x00" in topic_filter:
        raise TemplateError("a topic filter may not be empty or hold NUL")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if level == "#" and i != len(levels) - 1:
            raise TemplateError(f"'#' must be the last level in {topic_filter!r}")
        if level not in ("+", "#") and ("+" in level or "#" in level):
            raise TemplateError(f"a wildcard must fill a whole level in {topic_filter!r}")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether MQTT ``topic_filter`` (``+`` one level, ``#`` the rest) matches ``topic``.

    As in MQTT, a filter starting with a wildcard does not match a topic
    starting with ``$`` (``$SYS/…``), and ``a/#`` matches ``a`` itself.
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted = topic_filter.split("/")
    levels = topic.split("/")
    for i, part in enumerate(wanted):
        if part == "#":
            return True
        if i >= len(levels):
            return False
        if part != "+" and part != levels[i]:
            return False
    return len(wanted) == len(levels)
