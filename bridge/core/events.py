"""The event catalogue: the canonical envelope and one ``data`` model per type.

Every delivery body is an :class:`Event` envelope in the Standard Webhooks
shape (``id``, ``type``, ``timestamp``, ``data``) plus ``source`` and
``schema_version``. Each catalogue type has a pydantic model for its ``data``;
the models are strict about the fields they name and keep any extra field a
device sends.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from bridge.core.trace import EventContext

__all__ = [
    "CATALOGUE",
    "SCHEMA_VERSION",
    "Event",
    "content_hash",
    "data_model",
    "event_id_for",
    "format_timestamp",
    "new_event_id",
]

SCHEMA_VERSION = 1


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=False)


class DeviceData(_Data):
    """Fields every device event carries."""

    device_id: str = Field(min_length=1, max_length=256)
    device_name: str | None = None
    os: str | None = None
    group: str | None = None
    seq: int | None = Field(default=None, ge=0)


class DeviceAdded(DeviceData):
    pass


class DeviceDeleted(DeviceData):
    pass


class DevicePresence(DeviceData):
    reason: str | None = None


class SessionData(DeviceData):
    session_id: str | None = None
    technician: str | None = None
    customer: str | None = None
    customer_email: str | None = None


class SessionScheduled(SessionData):
    scheduled_for: datetime | None = None


class SessionEnded(SessionData):
    duration_s: float | None = Field(default=None, ge=0)


class FileTransfer(SessionData):
    transfer_id: str | None = None
    file_name: str | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    direction: Literal["upload", "download"] | None = None


class FileTransferFailed(FileTransfer):
    reason: str | None = None
    error: str | None = None


class BulkDeployment(DeviceData):
    deployment_id: str | None = None
    package: str | None = None
    target_count: int | None = Field(default=None, ge=0)
    succeeded: int | None = Field(default=None, ge=0)
    failed: int | None = Field(default=None, ge=0)


class BulkDeploymentFailed(BulkDeployment):
    reason: str | None = None
    error: str | None = None


class TelemetryReported(_Data):
    """Readings a device reports: any JSON. An object's fields are ``data``'s fields;
    any other payload (a number, a text, a list) is ``data.value``."""

    device_id: str = Field(min_length=1, max_length=256)


class BridgeTest(_Data):
    """A test ping sent by an operator; it names no device."""

    message: str = "test event from HookBridge"
    subscription: str | None = None


class BridgeAlert(_Data):
    """An operational event about one subscription; it names no device.

    ``reason`` is a short code (``gone``, ``disable_after``, ``exhausted``,
    ``too_old``, ``failures``…); delivery alerts also carry the delivery and
    event they are about.
    """

    subscription: str = Field(min_length=1)
    reason: str = ""
    delivery_id: str | None = None
    event_id: str | None = None


class ExpiredAlert(BridgeAlert):
    """Deliveries of one subscription went dead unsent: held longer than
    ``retention.max_event_age``. One alert per subscription and retention sweep."""

    reason: str = "too_old"
    count: int = Field(ge=1)


class InboundDeadAlert(BridgeAlert):
    """An accepted inbound webhook was not published within its entry's ``max_age``:
    it is dead, never sent. ``subscription`` names the inbound entry."""

    reason: str = "too_old"
    id: str = Field(min_length=1)
    topic: str = Field(min_length=1)


class PipeReplyDeadAlert(InboundDeadAlert):
    """A pipe subscription's answer was not published before its deadline (the
    request's MQTT 5 Message Expiry, else ``reply_max_age``): it is dead, never
    sent. ``subscription`` names the pipe subscription, ``delivery_id`` the
    delivery whose attempt it answers."""


class StoreRefusedAlert(_Data):
    """The store refused a message even in quarantine: it went to the dead-letter file.

    It names no subscription: ``key`` identifies the message in the file.
    """

    reason: str = "dead_letter"
    key: str = Field(min_length=1)
    file: str = Field(min_length=1)


class StoreLogLargeAlert(_Data):
    """The store's write-ahead log passed ``store.log_alert``: a reader holds a
    transaction open (a backup, Litestream, a shell), or checkpoints are not
    running. Sent once per crossing; it names no subscription."""

    reason: str = "log_large"
    log_bytes: int = Field(ge=0)
    limit_bytes: int = Field(ge=1)


class BrokerDroppedAlert(_Data):
    """The broker's own count of dropped messages grew (mosquitto:
    ``$SYS/broker/publish/messages/dropped``): it dropped messages, e.g. a full queue
    while the bridge was away. The counter is broker-wide: ``dropped`` counts every
    client's, not only the bridge's. ``reason`` is ``broker_restarted`` when the
    counter started again from zero. It names no subscription."""

    reason: str = "dropped"
    dropped: int = Field(ge=1)
    total: int = Field(ge=0)
    broker: str = Field(min_length=1)
    counter: str = Field(min_length=1)
    scope: str = Field(min_length=1)


CATALOGUE: dict[str, type[_Data]] = {
    "device.added": DeviceAdded,
    "device.deleted": DeviceDeleted,
    "device.online": DevicePresence,
    "device.offline": DevicePresence,
    "session.started": SessionData,
    "session.ended": SessionEnded,
    "session.scheduled": SessionScheduled,
    "session.customer_joined": SessionData,
    "file_transfer.started": FileTransfer,
    "file_transfer.completed": FileTransfer,
    "file_transfer.failed": FileTransferFailed,
    "bulk_deployment.started": BulkDeployment,
    "bulk_deployment.completed": BulkDeployment,
    "bulk_deployment.failed": BulkDeploymentFailed,
    "telemetry.reported": TelemetryReported,
    "bridge.test": BridgeTest,
    "bridge.subscription_disabled": BridgeAlert,
    "bridge.circuit_opened": BridgeAlert,
    "bridge.delivery_dead": BridgeAlert,
    "bridge.deliveries_expired": ExpiredAlert,
    "bridge.inbound_dead": InboundDeadAlert,
    "bridge.pipe_reply_dead": PipeReplyDeadAlert,
    "bridge.store_refused": StoreRefusedAlert,
    "bridge.store_log_large": StoreLogLargeAlert,
    "bridge.broker_dropped": BrokerDroppedAlert,
}
"""Every canonical event type and the model of its ``data``."""


def data_model(event_type: str) -> type[_Data] | None:
    return CATALOGUE.get(event_type)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a ``Z``: ``2026-11-22T04:36:14.553Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def event_id_for(source: str, device_id: str, message_id: str) -> str:
    """The stable id of a device message: the same message always maps to the same event."""
    digest = hashlib.sha256(f"{source}\x00{device_id}\x00{message_id}".encode()).digest()
    return "evt_" + _b32(digest[:16])


def new_event_id(now: datetime, entropy: bytes) -> str:
    """A time-ordered id: 48-bit milliseconds, then 80 bits of ``entropy`` (base32).

    The caller brings the randomness (``os.urandom(10)``): this module does no I/O.
    """
    if len(entropy) < 10:
        raise ValueError("an event id needs 10 bytes of entropy")
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    return "evt_" + _b32(millis.to_bytes(6, "big") + entropy[:10])


def content_hash(topic: str, payload: bytes) -> str:
    """What recognises a broker redelivery of a message that carries no id of its own."""
    return hashlib.sha256(topic.encode("utf-8", "surrogatepass") + b"\x00" + payload).hexdigest()


@dataclass(frozen=True, slots=True)
class Event:
    """One canonical event, as stored and as delivered."""

    id: str
    type: str
    timestamp: datetime
    source: str
    data: dict[str, Any]
    schema_version: int = SCHEMA_VERSION
    _body: list[bytes] = field(default_factory=list, repr=False, compare=False)
    # Kept beside the envelope, never in it: trace and MQTT 5 request/response.
    context: EventContext | None = field(default=None, repr=False, compare=False)
    # The account the event belongs to, from its topic (None: no account). Kept
    # beside the envelope: it decides who may see the event, not what it says.
    account: str | None = field(default=None, compare=False)

    @property
    def device_id(self) -> str | None:
        value = self.data.get("device_id")
        return value if isinstance(value, str) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "timestamp": format_timestamp(self.timestamp),
            "source": self.source,
            "schema_version": self.schema_version,
            "data": self.data,
        }

    def body(self) -> bytes:
        """The JSON envelope, encoded once and kept (the hot path sends it many times)."""
        if not self._body:
            self._body.append(orjson.dumps(self.to_dict()))
        return self._body[0]

    def with_id(self, new_id: str) -> Event:
        return Event(
            new_id,
            self.type,
            self.timestamp,
            self.source,
            self.data,
            context=self.context,
            account=self.account,
        )

    def with_context(self, context: EventContext | None) -> Event:
        return replace(self, context=context)

    def with_account(self, account: str | None) -> Event:
        return replace(self, account=account or None)

    @classmethod
    def from_json(
        cls, raw: bytes | str, context: EventContext | None = None, account: str | None = None
    ) -> Event:
        """Rebuild an event from its stored envelope (and its stored side context and account)."""
        doc = orjson.loads(raw)
        stamp = datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00"))
        body = raw.encode() if isinstance(raw, str) else bytes(raw)
        return cls(
            id=doc["id"],
            type=doc["type"],
            timestamp=stamp,
            source=doc["source"],
            data=doc["data"],
            schema_version=int(doc.get("schema_version", SCHEMA_VERSION)),
            _body=[body],
            context=context,
            account=account or None,
        )
