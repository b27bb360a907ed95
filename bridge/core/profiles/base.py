"""The contract between the normaliser and the mappings it consults.

A *mapping* is a built-in profile or a user rule. The normaliser asks each in
turn whether it owns a topic (:meth:`Profile.match`); the first that does
reads the payload (:meth:`Profile.interpret`) and answers with a
:class:`Draft` (what the message says) or a :class:`Rejected` (why it cannot
be an event). Turning a draft into a validated :class:`~bridge.core.events.Event`
is common to every mapping and done once, in :mod:`bridge.normalise`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["ENVELOPE_KEYS", "Draft", "Payload", "Profile", "Rejected", "json_kind", "quote"]

ENVELOPE_KEYS = frozenset({"type", "action", "state", "occurred_at", "id"})
"""Payload keys that describe the message rather than the device: never copied into ``data``."""

_QUOTE_LIMIT = 100


def quote(value: object) -> str:
    """``value`` for a human sentence, cut to about 100 characters so huge input is never echoed."""
    text = value if isinstance(value, str) else repr(value)
    # A lone surrogate (invalid UTF-8 from the wire) would break every log encoder.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > _QUOTE_LIMIT:
        text = text[:_QUOTE_LIMIT] + "…"
    return f"'{text}'"


_JSON_KINDS: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def json_kind(value: object) -> str:
    """The JSON name of a parsed value's type, for messages users read."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that cannot become an event, and why."""

    reason: str  # short machine code, e.g. "invalid_json"
    detail: str  # human sentence naming the field or the limit
    account: str | None = None  # the account its topic names, when the normaliser knows it


@dataclass(frozen=True, slots=True)
class Payload:
    """A payload already checked against the limits.

    ``document`` is the parsed JSON when ``is_json``; otherwise it is the
    payload's text, so a mapping that accepts bare text (``online``) can read it.
    """

    document: Any
    is_json: bool
    problem: str | None = None  # why the JSON parser refused it, when not ``is_json``


@dataclass(frozen=True, slots=True)
class Draft:
    """What a message says, before the catalogue model has validated it."""

    type: str
    device_id: object  # checked by the normaliser: a non-empty string (an integer is accepted)
    fields: dict[str, Any] = field(default_factory=dict)  # becomes ``data``, minus device_id
    message_id: object = None  # the device's own id for the message, when it gave one
    occurred_at: object = None  # RFC 3339 text or epoch seconds/milliseconds


@runtime_checkable
class Profile(Protocol):
    """A named set of topic mappings (``native``, later ``emqx``, ``aws_iot``, …)."""

    @property
    def name(self) -> str: ...

    def topic_filters(self) -> list[str]:
        """The MQTT filters whose messages this mapping reads."""
        ...

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        """The named topic levels when this mapping owns the topic, else None."""
        ...

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft | Rejected:
        """Read a payload of a topic this mapping owns. Never raises on bad input."""
        ...
