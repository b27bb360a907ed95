"""What the broker presence profiles (``emqx``, ``aws_iot``) share.

Both brokers publish a message when a client connects or disconnects; the
client id is the device id. Every field the broker sends is kept in ``data``
as sent; the vocabulary's ``reason`` is added from the broker's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge.core.profiles.base import Payload, Rejected, json_kind, quote

__all__ = ["STATES", "client_document", "match_levels"]

STATES = {"connected": "device.online", "disconnected": "device.offline"}


def _json_object(payload: Payload, source: str) -> dict[str, Any] | Rejected:
    if not payload.is_json:
        return Rejected(
            "invalid_json", f"an {source} presence payload must be JSON ({payload.problem})"
        )
    if not isinstance(payload.document, dict):
        kind = json_kind(payload.document)
        return Rejected("invalid_json", f"an {source} presence payload is an object, not {kind}")
    return payload.document


def _same_client(claimed: object, client: str, field: str) -> Rejected | None:
    if claimed is not None and claimed != client:
        return Rejected(
            "invalid_fields",
            f"{field}: the payload says {quote(claimed)} but the topic says {quote(client)}",
        )
    return None


def match_levels(levels: Sequence[str], template: Sequence[str]) -> dict[str, str] | None:
    """The named levels of a topic that fits ``template`` (literal levels, and ``{name}``
    levels that capture what stands there; ``{what}`` must be one of ``STATES``)."""
    if len(levels) != len(template):
        return None
    named: dict[str, str] = {}
    for level, expected in zip(levels, template, strict=True):
        if expected.startswith("{"):
            named[expected[1:-1]] = level
        elif level != expected:
            return None
    return named if named.get("what") in STATES else None


def client_document(
    payload: Payload, named: Mapping[str, str], source: str, client_field: str
) -> dict[str, Any] | Rejected:
    """The payload, a JSON object whose ``client_field`` (when present) is the topic's client."""
    document = _json_object(payload, source)
    if isinstance(document, Rejected):
        return document
    mismatch = _same_client(document.get(client_field), named["device_id"], client_field)
    return document if mismatch is None else mismatch
