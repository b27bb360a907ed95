"""Payload formats: how an event becomes the bytes of a delivery body.

A format is a pure function ``encode(event) -> Encoded(body, content_type,
extra_headers)`` kept in a small registry under the name a subscription's
``format`` uses. The sender signs exactly the bytes a format returns.
Plugins add formats with :func:`register_format`. An encoder that cannot
encode an event raises a :class:`~bridge.errors.BridgeError`; the sender turns
it into a failed attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from bridge.events import Event

__all__ = ["FORMATS", "Encoded", "Encoder", "encode_json", "encoder_for", "register_format"]


class Encoded(NamedTuple):
    """One encoded body, with its content type and any headers the format adds."""

    body: bytes
    content_type: str
    extra_headers: Mapping[str, str]


Encoder = Callable[[Event], Encoded]

_NO_HEADERS: Mapping[str, str] = {}


def encode_json(event: Event) -> Encoded:
    """The canonical JSON envelope (encoded once per event, reused on every attempt)."""
    return Encoded(event.body(), "application/json", _NO_HEADERS)


FORMATS: dict[str, Encoder] = {"json": encode_json}
"""Every available format by name."""


def register_format(name: str, encoder: Encoder) -> None:
    """Make ``encoder`` available as ``format: <name>``; a later registration replaces it."""
    FORMATS[name] = encoder


def encoder_for(name: str) -> Encoder | None:
    return FORMATS.get(name)
