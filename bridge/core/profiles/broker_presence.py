"""What the broker presence profiles (``emqx``, ``aws_iot``) share.

Both brokers publish a message when a client connects or disconnects; the
client id is the device id. Every field the broker sends is kept in ``data``
as sent; the vocabulary's ``reason`` is added from the broker's reason.
"""

from __future__ import annotations

from typing import Any

from bridge.core.profiles.base import Payload, Rejected, json_kind, quote

__all__ = ["STATES", "json_object", "same_client"]

STATES = {"connected": "device.online", "disconnected": "device.offline"}


def json_object(payload: Payload, source: str) -> dict[str, Any] | Rejected:
    if not payload.is_json:
        return Rejected(
            "invalid_json", f"an {source} presence payload must be JSON ({payload.problem})"
        )
    if not isinstance(payload.document, dict):
        kind = json_kind(payload.document)
        return Rejected("invalid_json", f"an {source} presence payload is an object, not {kind}")
    return payload.document


def same_client(claimed: object, client: str, field: str) -> Rejected | None:
    if claimed is not None and claimed != client:
        return Rejected(
            "invalid_fields",
            f"{field}: the payload says {quote(claimed)} but the topic says {quote(client)}",
        )
    return None
