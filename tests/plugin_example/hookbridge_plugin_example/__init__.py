"""An example HookBridge plugin, installed into the test environment.

- normaliser ``example_sensors``: ``sensors/<device_id>/alive`` → ``device.online``
- format ``example_text``: a one-line ``text/plain`` body ``<type> <id> <device_id>``
- filter ``example_even_seq``: lets through events whose ``data.seq`` is even
- format ``example_broken``: raises on every event, as a buggy format plugin would
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge.plugin import Draft, Encoded, Event, Payload

__all__ = ["SensorProfile", "encode_broken", "encode_text", "even_seq"]


class SensorProfile:
    """Maps ``sensors/{device_id}/alive`` to ``device.online``."""

    @property
    def name(self) -> str:
        return "example_sensors"

    def topic_filters(self) -> list[str]:
        return ["sensors/+/alive"]

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        if len(levels) == 3 and levels[0] == "sensors" and levels[2] == "alive":
            return {"device_id": levels[1]}
        return None

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft:
        document = payload.document if isinstance(payload.document, dict) else {}
        return Draft(
            type="device.online",
            device_id=named["device_id"],
            fields={"reason": "alive"},
            message_id=document.get("id"),
        )


def encode_text(event: Event) -> Encoded:
    line = f"{event.type} {event.id} {event.device_id or '-'}\n"
    return Encoded(line.encode("utf-8"), "text/plain; charset=utf-8", {})


def encode_broken(event: Event) -> Encoded:
    raise RuntimeError(f"this format cannot encode {event.type}")


def even_seq(envelope: Mapping[str, Any]) -> bool:
    seq = envelope.get("data", {}).get("seq")
    return isinstance(seq, int) and seq % 2 == 0
