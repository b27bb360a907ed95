"""The built-in ``aws_iot`` profile: AWS IoT Core lifecycle (presence) events.

AWS IoT publishes ``$aws/events/presence/connected/{clientId}`` and
``…/disconnected/{clientId}``; the client id is the device id and every field
is kept as sent::

    $aws/events/presence/connected/dev-42
    {"clientId": "dev-42", "timestamp": 1573002230757, "eventType": "connected",
     "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
     "principalIdentifier": "12345678901234567890123456789012",
     "ipAddress": "192.0.2.0", "versionNumber": 0}

    $aws/events/presence/disconnected/dev-42
    {"clientId": "dev-42", "timestamp": 1573002340451, "eventType": "disconnected",
     "clientInitiatedDisconnect": false, "disconnectReason": "MQTT_KEEP_ALIVE_TIMEOUT",
     "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
     "principalIdentifier": "12345678901234567890123456789012", "versionNumber": 0}

AWS reasons are upper-case codes; ``reason`` carries them in lower case
(``mqtt_keep_alive_timeout``) so reasons read alike across sources, and
``disconnectReason`` keeps the original. ``timestamp`` (milliseconds) is the
event time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bridge.core.profiles.base import Draft, Payload, Rejected, quote
from bridge.core.profiles.broker_presence import STATES, client_document, match_levels

__all__ = ["AwsIotProfile"]


class AwsIotProfile:
    """``$aws/events/presence/connected|disconnected/{clientId}``."""

    @property
    def name(self) -> str:
        return "aws_iot"

    def topic_filters(self) -> list[str]:
        return ["$aws/events/presence/connected/+", "$aws/events/presence/disconnected/+"]

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        return match_levels(levels, ("$aws", "events", "presence", "{what}", "{device_id}"))

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft | Rejected:
        document = client_document(payload, named, "AWS IoT", "clientId")
        if isinstance(document, Rejected):
            return document
        client, what = named["device_id"], named["what"]
        event_type = document.get("eventType", what)
        if event_type != what:
            return Rejected(
                "invalid_fields",
                f"eventType: {quote(event_type)} on the {what} topic",
            )
        fields = {key: value for key, value in document.items() if key not in {"id", "type"}}
        reason = document.get("disconnectReason")
        if isinstance(reason, str) and reason:
            fields["reason"] = reason.lower()
        stamp = document.get("timestamp")
        version = document.get("versionNumber")
        session = document.get("sessionIdentifier")
        return Draft(
            type=STATES[what],
            device_id=client,
            fields=fields,
            message_id=f"aws:{what}:{session}:{version}:{stamp}" if stamp is not None else None,
            occurred_at=stamp,
        )
