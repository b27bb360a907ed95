"""What the bridge itself publishes over MQTT: pipe replies and inbound webhooks.

A message is plain data; publishing it (and waiting for the broker's PUBACK)
is the MQTT client's work (:meth:`bridge.ingest.client.Ingest.publish`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Outgoing", "Publish"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message to publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    # MQTT 5 properties, not sent on a 3.1.1 connection.
    correlation: bytes | None = None
    content_type: str | None = None


class Publish(Protocol):
    """Publishes a message; returns once the broker has it (QoS 1: its PUBACK)."""

    def __call__(self, message: Outgoing) -> Awaitable[None]: ...
