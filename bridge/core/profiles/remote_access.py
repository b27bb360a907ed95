"""The built-in ``remote_access`` profile: a remote-access product's own event names.

Remote-support products report what happens to managed devices as named
events with camelCase fields. The product publishes them (or a small
forwarder does) on ``remote/{account}/events``::

    remote/acme/events
    {"event": "Session Start", "eventId": "ev-1f3a", "deviceId": "dev-42",
     "deviceName": "Front desk PC", "sessionId": "s-981", "technician": "ayu",
     "timestamp": "2026-11-22T04:36:14.553Z"}

The event name is accepted in the common spellings — ``Session Start``,
``SESSION_START``, ``session-start``, ``sessionStart`` — and mapped to the
catalogue: Device Add/Delete/Online/Offline, Session Start/End, Schedule
Session, Customer Join, File Transfer and Bulk Deployment (the last two with a
``status`` of started, completed or failed; ``File Transfer Completed`` as one
name works too). Known camelCase fields are renamed to the vocabulary
(``sessionId`` → ``session_id``, ``fileSize`` → ``size_bytes``, …) keeping
the product's values (its ids); unknown fields stay as sent. ``account`` (the
topic level) and ``source_event`` (the product's event name as sent) are
added. ``eventId`` is the message id, ``timestamp`` the time it happened.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.core.profiles.base import Draft, Payload, Rejected, json_kind, quote

__all__ = ["FIELD_NAMES", "RemoteAccessProfile", "event_name_key"]

_NAMES: dict[str, str] = {
    "device add": "device.added",
    "device added": "device.added",
    "device delete": "device.deleted",
    "device deleted": "device.deleted",
    "device remove": "device.deleted",
    "device online": "device.online",
    "device offline": "device.offline",
    "session start": "session.started",
    "session started": "session.started",
    "session end": "session.ended",
    "session ended": "session.ended",
    "schedule session": "session.scheduled",
    "session scheduled": "session.scheduled",
    "customer join": "session.customer_joined",
    "customer joined": "session.customer_joined",
}
_WITH_STATUS = {"file transfer": "file_transfer", "bulk deployment": "bulk_deployment"}
_STATUS = {
    "start": "started",
    "started": "started",
    "in progress": "started",
    "complete": "completed",
    "completed": "completed",
    "success": "completed",
    "succeeded": "completed",
    "fail": "failed",
    "failed": "failed",
    "error": "failed",
}

FIELD_NAMES: dict[str, str] = {
    "deviceId": "device_id",
    "deviceName": "device_name",
    "groupName": "group",
    "sessionId": "session_id",
    "technicianName": "technician",
    "customerName": "customer",
    "customerEmail": "customer_email",
    "scheduledFor": "scheduled_for",
    "scheduledAt": "scheduled_for",
    "durationSeconds": "duration_s",
    "duration": "duration_s",
    "transferId": "transfer_id",
    "fileName": "file_name",
    "fileSize": "size_bytes",
    "sizeBytes": "size_bytes",
    "deploymentId": "deployment_id",
    "packageName": "package",
    "targetCount": "target_count",
    "succeededCount": "succeeded",
    "failedCount": "failed",
    "errorMessage": "error",
}
"""The product's camelCase field names → the catalogue vocabulary."""

_ENVELOPE = frozenset({"event", "eventId", "id", "timestamp", "status", "type"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\s_\-.]+")


def event_name_key(name: str) -> str:
    """``SESSION_START``, ``session-start``, ``sessionStart`` → ``session start``."""
    return _SEPARATORS.sub(" ", _CAMEL.sub(" ", name.strip())).strip().lower()


def _event_type(name: str, status: object) -> str | Rejected:
    key = event_name_key(name)
    found = _NAMES.get(key)
    if found is not None:
        return found
    for prefix, family in _WITH_STATUS.items():
        if key == prefix:
            if not isinstance(status, str):
                return Rejected(
                    "invalid_fields",
                    f"status: {quote(name)} needs a status (started, completed or failed)",
                )
            state = _STATUS.get(event_name_key(status))
            if state is None:
                return Rejected("unknown_type", f"status {quote(status)} of {quote(name)}")
            return f"{family}.{state}"
        if key.startswith(prefix + " "):
            state = _STATUS.get(key[len(prefix) + 1 :])
            if state is not None:
                return f"{family}.{state}"
    return Rejected("unknown_type", f"event {quote(name)} is not a known remote-access event")


class RemoteAccessProfile:
    """``remote/{account}/events`` with ``{"event": "<name>", …}``."""

    @property
    def name(self) -> str:
        return "remote_access"

    def topic_filters(self) -> list[str]:
        return ["remote/+/events"]

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        if len(levels) == 3 and levels[0] == "remote" and levels[2] == "events":
            return {"account": levels[1]}
        return None

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft | Rejected:
        document = payload.document
        if not payload.is_json or not isinstance(document, dict):
            kind = json_kind(document) if payload.is_json else "not JSON"
            return Rejected("invalid_json", f"a remote-access event is a JSON object ({kind})")
        name = document.get("event")
        if not isinstance(name, str) or not name.strip():
            return Rejected("invalid_fields", "event: missing, or not a name")
        event_type = _event_type(name, document.get("status"))
        if isinstance(event_type, Rejected):
            return event_type
        fields: dict[str, Any] = {}
        for key, value in document.items():
            if key not in _ENVELOPE:
                fields[FIELD_NAMES.get(str(key), str(key))] = value
        if "status" in document and not event_type.startswith(tuple(_WITH_STATUS.values())):
            fields["status"] = document["status"]
        device_id = fields.pop("device_id", None)
        if device_id is None:
            return Rejected("invalid_fields", "deviceId: missing from the remote-access event")
        fields["account"] = named["account"]
        fields["source_event"] = name
        return Draft(
            type=event_type,
            device_id=device_id,
            fields=fields,
            message_id=document.get("eventId", document.get("id")),
            occurred_at=document.get("timestamp"),
        )
