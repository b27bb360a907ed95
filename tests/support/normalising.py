"""Feeding the pure normaliser: one broker, one receipt time, and the two outcomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.config import parse_config
from bridge.core.events import Event
from bridge.core.normalise import Message, Normalised, Normaliser, Rejected

__all__ = ["METER", "RECEIVED", "SOURCE", "accepted", "message", "normaliser", "rejected"]

SOURCE = "mqtt://broker-1:1883"
RECEIVED = datetime(2026, 11, 22, 4, 36, 14, 553000, tzinfo=UTC)

# An operator's own event type, its data checked by a JSON Schema (with a $ref).
METER = {
    "name": "meter.read",
    "description": "A meter reading",
    "data_schema": {
        "type": "object",
        "required": ["kwh"],
        "properties": {
            "kwh": {"type": "number", "minimum": 0},
            "unit": {"$ref": "#/$defs/unit"},
        },
        "$defs": {"unit": {"enum": ["kWh", "Wh"]}},
    },
}


def normaliser(**config: Any) -> Normaliser:
    """The normaliser of a bridge configured with ``config`` on broker ``SOURCE``."""
    return Normaliser(parse_config(config), source=SOURCE)


def message(topic: str, payload: bytes | str | object, **kw: Any) -> Message:
    """A message received at ``RECEIVED``: bytes as they are, text UTF-8 encoded,
    anything else as JSON."""
    if isinstance(payload, str):
        raw = payload.encode()
    elif isinstance(payload, bytes):
        raw = payload
    else:
        raw = orjson.dumps(payload)
    return Message(topic=topic, payload=raw, received_at=RECEIVED, **kw)


def accepted(result: Normalised | Rejected) -> Event:
    assert isinstance(result, Normalised), result
    return result.event


def rejected(result: Normalised | Rejected, reason: str) -> str:
    """The detail of a rejection for ``reason``; a rejection always says why."""
    assert isinstance(result, Rejected), result
    assert result.reason == reason, result
    assert result.detail
    return result.detail
