"""Telemetry topics (``telemetry.topics``): every message on them is ``telemetry.reported``.

A topic pattern names its levels as rules do
(``site/{site}/meters/{device_id}/telemetry``): the device id is the
``{device_id}`` level, and the other named levels become fields of ``data``
(a payload field of the same name wins). The payload is any JSON: an
object's fields become ``data`` (its ``id`` and ``occurred_at`` are the
message id and the time, as on every topic; a ``device_id`` in it must be
the topic's); anything else — a number, a text, a list, ``null`` — is
``data.value``. A payload that is not JSON is its text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge.core.profiles.base import Draft, Payload, Rejected, quote
from bridge.core.topics import TopicPattern

__all__ = ["TELEMETRY_TYPE", "TelemetryTopics"]

TELEMETRY_TYPE = "telemetry.reported"

# Read as on every topic rather than copied into data.
_MESSAGE_KEYS = frozenset({"id", "occurred_at", "device_id"})


class TelemetryTopics:
    """The mapping of the configured telemetry topic patterns."""

    def __init__(self, topics: Sequence[str]) -> None:
        self._patterns = [TopicPattern(topic) for topic in topics]

    @property
    def name(self) -> str:
        return "telemetry"

    def topic_filters(self) -> list[str]:
        return [pattern.filter for pattern in self._patterns]

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        for pattern in self._patterns:
            named = pattern.match(levels)
            if named is not None:
                return named
        return None

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft | Rejected:
        device_id = named["device_id"]
        fields: dict[str, Any] = {k: v for k, v in named.items() if k != "device_id"}
        document = payload.document
        if not (payload.is_json and isinstance(document, dict)):
            fields["value"] = document
            return Draft(TELEMETRY_TYPE, device_id, fields)
        claimed = document.get("device_id")
        if claimed is not None and not _same_device(claimed, device_id):
            return Rejected(
                "invalid_fields",
                f"device_id: the payload says {quote(claimed)} but the topic says "
                f"{quote(device_id)}",
            )
        fields.update((k, v) for k, v in document.items() if k not in _MESSAGE_KEYS)
        return Draft(
            TELEMETRY_TYPE,
            device_id,
            fields,
            message_id=document.get("id"),
            occurred_at=document.get("occurred_at"),
        )


def _same_device(claimed: object, device_id: str) -> bool:
    if isinstance(claimed, int) and not isinstance(claimed, bool):
        return str(claimed) == device_id  # numeric ids are often sent as JSON numbers
    return claimed == device_id
