"""The built-in ``native`` profile: HookBridge's own topic convention.

==========================  ====================================  ==================
topic                       payload                               event
==========================  ====================================  ==================
``devices/{id}/status``     ``online`` / ``offline`` (any case)   ``device.online``
                            or ``{"state": "online", …}``         ``device.offline``
                            (``status`` for ``state`` too)
``devices/{id}/events``     ``{"type": "<type>", …data}``         that type
``devices/{id}/lifecycle``  ``{"action": "added", …}``            ``device.added``
                                                                  ``device.deleted``
==========================  ====================================  ==================

The device id is the topic level; a payload ``device_id`` may repeat it but
never contradict it. A retained status message still gives its event here:
collapsing repeated presence states is the presence tracker's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge.core.profiles.base import ENVELOPE_KEYS, Draft, Payload, Rejected, json_kind, quote

__all__ = ["NativeProfile"]

_PRESENCE = {"online": "device.online", "offline": "device.offline"}
_LIFECYCLE = {"added": "device.added", "deleted": "device.deleted"}
_CHANNELS = frozenset({"status", "events", "lifecycle"})


class NativeProfile:
    """``devices/{device_id}/status|events|lifecycle``."""

    @property
    def name(self) -> str:
        return "native"

    def topic_filters(self) -> list[str]:
        return ["devices/+/status", "devices/+/events", "devices/+/lifecycle"]

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        # Hand-written rather than a TopicPattern: this runs for every message.
        if len(levels) == 3 and levels[0] == "devices" and levels[2] in _CHANNELS:
            return {"device_id": levels[1], "channel": levels[2]}
        return None

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft | Rejected:
        device_id = named["device_id"]
        channel = named["channel"]
        if channel == "status":
            return _status(device_id, payload)
        if not isinstance(payload.document, dict) or not payload.is_json:
            return _not_an_object(channel, payload)
        document: dict[str, Any] = payload.document
        key = "type" if channel == "events" else "action"
        value = document.get(key)
        if value is None:
            return Rejected("invalid_fields", f"{key}: missing from the {channel} payload")
        if not isinstance(value, str):
            return Rejected("invalid_fields", f"{key}: must be a string, got {quote(value)}")
        if channel == "events":
            event_type = value
        else:
            found = _LIFECYCLE.get(value.strip().lower())
            if found is None:
                return Rejected(
                    "unknown_type",
                    f"action {quote(value)} on the lifecycle topic is not 'added' or 'deleted'",
                )
            event_type = found
        return _draft(event_type, device_id, document)


def _status(device_id: str, payload: Payload) -> Draft | Rejected:
    document = payload.document
    if isinstance(document, str):
        # Bare text (often a Last Will) or a JSON string: both say the state alone.
        state: object = document
        fields: dict[str, Any] = {}
    elif isinstance(document, dict) and payload.is_json:
        # ``status`` is the name many device stacks give the same field.
        key = "state" if "state" in document or "status" not in document else "status"
        state = document.get(key)
        if state is None:
            return Rejected("invalid_fields", "state: missing from the status payload")
        fields = {k: v for k, v in document.items() if k != key}
    else:
        return Rejected(
            "invalid_json",
            "a status payload must be 'online', 'offline' or a JSON object with 'state'",
        )
    if not isinstance(state, str):
        return Rejected("invalid_fields", f"state: must be a string, got {quote(state)}")
    event_type = _PRESENCE.get(state.strip().lower())
    if event_type is None:
        return Rejected("unknown_type", f"status {quote(state)} is neither 'online' nor 'offline'")
    return _draft(event_type, device_id, fields)


def _draft(event_type: str, device_id: str, document: dict[str, Any]) -> Draft | Rejected:
    claimed = document.get("device_id")
    if claimed is not None and not _same_device(claimed, device_id):
        return Rejected(
            "invalid_fields",
            f"device_id: the payload says {quote(claimed)} but the topic says {quote(device_id)}",
        )
    fields = {
        key: value
        for key, value in document.items()
        if key not in ENVELOPE_KEYS and key != "device_id"
    }
    return Draft(
        type=event_type,
        device_id=device_id,
        fields=fields,
        message_id=document.get("id"),
        occurred_at=document.get("occurred_at"),
    )


def _same_device(claimed: object, device_id: str) -> bool:
    if isinstance(claimed, str):
        return claimed == device_id
    # Devices with numeric ids often send them as JSON numbers.
    return isinstance(claimed, int) and not isinstance(claimed, bool) and str(claimed) == device_id


def _not_an_object(channel: str, payload: Payload) -> Rejected:
    if not payload.is_json:
        return Rejected(
            "invalid_json",
            f"a {channel} payload must be a JSON object; it is not JSON ({payload.problem})",
        )
    kind = json_kind(payload.document)
    return Rejected("invalid_json", f"a {channel} payload must be a JSON object, not {kind}")
