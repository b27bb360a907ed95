"""Built-in source profiles (emqx, aws_iot, remote_access): documented examples, real broker."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.config import parse_config
from bridge.core.events import Event
from bridge.core.normalise import Message, Normaliser, Rejected
from bridge.core.profiles.remote_access import event_name_key
from tests.conftest import bridge_config, crm_subscription, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until, wait_until_sync

NOW = datetime(2026, 11, 22, 4, 36, 14, tzinfo=UTC)

EMQX_CONNECTED = {
    "username": "ayu",
    "ts": 1732250174553,
    "sockport": 1883,
    "proto_ver": 5,
    "proto_name": "MQTT",
    "keepalive": 60,
    "ipaddress": "10.0.0.7",
    "expiry_interval": 0,
    "connected_at": 1732250174553,
    "connack": 0,
    "clientid": "dev-42",
    "clean_start": True,
}
EMQX_DISCONNECTED = {
    "username": "ayu",
    "ts": 1732250290117,
    "sockport": 1883,
    "reason": "keepalive_timeout",
    "proto_ver": 5,
    "proto_name": "MQTT",
    "ipaddress": "10.0.0.7",
    "disconnected_at": 1732250290117,
    "clientid": "dev-42",
}
AWS_CONNECTED = {
    "clientId": "dev-42",
    "timestamp": 1573002230757,
    "eventType": "connected",
    "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
    "principalIdentifier": "12345678901234567890123456789012",
    "ipAddress": "192.0.2.0",
    "versionNumber": 0,
}
AWS_DISCONNECTED = {
    "clientId": "dev-42",
    "timestamp": 1573002340451,
    "eventType": "disconnected",
    "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
    "principalIdentifier": "12345678901234567890123456789012",
    "clientInitiatedDisconnect": False,
    "disconnectReason": "MQTT_KEEP_ALIVE_TIMEOUT",
    "versionNumber": 0,
}


def _normalise(profile: str, topic: str, payload: dict[str, Any]) -> Event | Rejected:
    normaliser = Normaliser(parse_config({"profiles": [profile]}), source="mqtt://broker")
    result = normaliser.normalise(Message(topic, json.dumps(payload).encode(), NOW))
    return result if isinstance(result, Rejected) else result.event


def test_emqx_connected_and_disconnected() -> None:
    online = _normalise(
        "emqx", "$SYS/brokers/emqx@10.0.0.1/clients/dev-42/connected", EMQX_CONNECTED
    )
    assert isinstance(online, Event)
    assert (online.type, online.device_id) == ("device.online", "dev-42")
    assert online.data["ipaddress"] == "10.0.0.7"
    assert online.data["username"] == "ayu"
    assert online.data["broker_node"] == "emqx@10.0.0.1"
    assert online.timestamp == datetime.fromtimestamp(1732250174.553, UTC)
    offline = _normalise(
        "emqx", "$SYS/brokers/emqx@10.0.0.1/clients/dev-42/disconnected", EMQX_DISCONNECTED
    )
    assert isinstance(offline, Event)
    assert (offline.type, offline.data["reason"]) == ("device.offline", "keepalive_timeout")
    # The same notice redelivered is the same event.
    again = _normalise(
        "emqx", "$SYS/brokers/emqx@10.0.0.1/clients/dev-42/disconnected", EMQX_DISCONNECTED
    )
    assert isinstance(again, Event)
    assert again.id == offline.id
    wrong = _normalise("emqx", "$SYS/brokers/n/clients/other/connected", EMQX_CONNECTED)
    assert isinstance(wrong, Rejected)
    assert "clientid" in wrong.detail


def test_aws_iot_lifecycle_events() -> None:
    online = _normalise("aws_iot", "$aws/events/presence/connected/dev-42", AWS_CONNECTED)
    assert isinstance(online, Event)
    assert (online.type, online.device_id, online.data["ipAddress"]) == (
        "device.online",
        "dev-42",
        "192.0.2.0",
    )
    offline = _normalise("aws_iot", "$aws/events/presence/disconnected/dev-42", AWS_DISCONNECTED)
    assert isinstance(offline, Event)
    assert offline.data["reason"] == "mqtt_keep_alive_timeout"
    assert offline.data["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
    assert offline.timestamp == datetime.fromtimestamp(1573002340.451, UTC)
    mixed = _normalise("aws_iot", "$aws/events/presence/connected/dev-42", AWS_DISCONNECTED)
    assert isinstance(mixed, Rejected)


@pytest.mark.parametrize(
    ("name", "status", "expected"),
    [
        ("Device Add", None, "device.added"),
        ("DEVICE_ADD", None, "device.added"),
        ("device-add", None, "device.added"),
        ("Device Delete", None, "device.deleted"),
        ("Device Online", None, "device.online"),
        ("DEVICE_OFFLINE", None, "device.offline"),
        ("Session Start", None, "session.started"),
        ("SESSION_START", None, "session.started"),
        ("session-start", None, "session.started"),
        ("sessionStart", None, "session.started"),
        ("Session End", None, "session.ended"),
        ("Schedule session", None, "session.scheduled"),
        ("Customer Join", None, "session.customer_joined"),
        ("File transfer", "started", "file_transfer.started"),
        ("FILE_TRANSFER", "COMPLETED", "file_transfer.completed"),
        ("file-transfer", "failed", "file_transfer.failed"),
        ("File Transfer Completed", None, "file_transfer.completed"),
        ("Bulk Deployment", "started", "bulk_deployment.started"),
        ("BULK_DEPLOYMENT", "completed", "bulk_deployment.completed"),
        ("bulk-deployment", "failed", "bulk_deployment.failed"),
    ],
)
def test_remote_access_names(name: str, status: str | None, expected: str) -> None:
    payload: dict[str, Any] = {"event": name, "deviceId": "dev-42", "eventId": f"e-{name}"}
    if status is not None:
        payload["status"] = status
    event = _normalise("remote_access", "remote/acme/events", payload)
    assert isinstance(event, Event), event
    assert event.type == expected
    assert event.data["source_event"] == name
    assert event.data["account"] == "acme"


def test_remote_access_fields_keep_the_product_ids() -> None:
    event = _normalise(
        "remote_access",
        "remote/acme/events",
        {
            "event": "File transfer",
            "status": "completed",
            "eventId": "ev-77",
            "deviceId": "dev-42",
            "sessionId": "s-981",
            "technician": "ayu",
            "transferId": "t-1",
            "fileName": "log.zip",
            "fileSize": 52311,
            "direction": "upload",
            "timestamp": "2026-11-22T04:36:14.553Z",
            "ticketRef": "HD-1234",
        },
    )
    assert isinstance(event, Event)
    assert event.data == {
        "device_id": "dev-42",
        "session_id": "s-981",
        "technician": "ayu",
        "transfer_id": "t-1",
        "file_name": "log.zip",
        "size_bytes": 52311,
        "direction": "upload",
        "ticketRef": "HD-1234",
        "account": "acme",
        "source_event": "File transfer",
    }
    assert event_name_key("SESSION_START") == event_name_key("session-start") == "session start"
    for bad in ({"event": "Teleport"}, {"event": "Session Start"}, {"deviceId": "d"}):
        assert isinstance(_normalise("remote_access", "remote/acme/events", bad), Rejected)


# -- through a real broker ----------------------------------------------------------------


def _recent(payload: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The documented example, dated now: events older than max_event_age are not sent."""
    now_ms = int(time.time() * 1000)
    return {**payload, **dict.fromkeys(keys, now_ms)}


def _sub(receiver: Receiver) -> list[dict[str, Any]]:
    return [crm_subscription(receiver)]


async def test_aws_iot_end_to_end(mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path) -> None:
    config = bridge_config(mosquitto, tmp_path, _sub(receiver), profiles=["aws_iot"])
    async with running_bridge(config):
        with Publisher(mosquitto.port) as broker:
            broker.publish_all(
                [
                    ("$aws/events/presence/connected/dev-42", _recent(AWS_CONNECTED, "timestamp")),
                    (
                        "$aws/events/presence/disconnected/dev-42",
                        _recent(AWS_DISCONNECTED, "timestamp"),
                    ),
                ]
            )
            await wait_until(lambda: len(receiver.requests) >= 2, timeout=10)
    events = receiver.events()
    assert [(e["type"], e["data"].get("reason")) for e in events] == [
        ("device.online", None),
        ("device.offline", "mqtt_keep_alive_timeout"),
    ]


async def test_remote_access_end_to_end(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(mosquitto, tmp_path, _sub(receiver), profiles=["remote_access"])
    messages: list[tuple[str, bytes | str | dict[str, Any]]] = [
        ("remote/acme/events", {"event": "SESSION_START", "deviceId": "pc-1", "sessionId": "s-1"}),
        ("remote/acme/events", {"event": "Customer Join", "deviceId": "pc-1", "sessionId": "s-1"}),
        ("remote/acme/events", {"event": "session-end", "deviceId": "pc-1", "duration": 61}),
    ]
    async with running_bridge(config):
        with Publisher(mosquitto.port) as product:
            product.publish_all(messages)
            await wait_until(lambda: len(receiver.requests) >= 3, timeout=10)
    events = receiver.events()
    assert [e["type"] for e in events] == [
        "session.started",
        "session.customer_joined",
        "session.ended",
    ]
    assert events[0]["data"]["session_id"] == "s-1"
    assert events[2]["data"]["duration_s"] == 61


async def test_emqx_end_to_end_through_a_bridged_sys_topic(
    receiver: Receiver, tmp_path: Path
) -> None:
    """mosquitto refuses client publishes to ``$SYS``; a broker bridge may write there.

    An "upstream" broker stands in for EMQX: what is published there on
    ``emqx/clients/…`` arrives on the bridge's broker as
    ``$SYS/brokers/emqx@node1/clients/…``, exactly the topic EMQX uses.
    """
    upstream = Mosquitto(tmp_path / "upstream")
    upstream.start()
    local = Mosquitto(
        tmp_path / "local",
        extra=(
            "connection emqx-sim\n"
            f"address 127.0.0.1:{upstream.port}\n"
            "restart_timeout 1\n"
            "topic clients/# in 1 $SYS/brokers/emqx@node1/ emqx/\n"
        ),
    )
    local.start()
    try:
        wait_until_sync(
            lambda: "emqx-sim" in upstream.log.read_text(errors="replace"),
            timeout=15,
            message="the broker bridge connected upstream",
        )
        config = bridge_config(local, tmp_path, _sub(receiver), profiles=["emqx"])
        async with running_bridge(config):
            with Publisher(upstream.port) as emqx:
                emqx.publish_all(
                    [
                        (
                            "emqx/clients/dev-42/connected",
                            _recent(EMQX_CONNECTED, "ts", "connected_at"),
                        ),
                        (
                            "emqx/clients/dev-42/disconnected",
                            _recent(EMQX_DISCONNECTED, "ts", "disconnected_at"),
                        ),
                    ]
                )
                await wait_until(lambda: len(receiver.requests) >= 2, timeout=15)
        events = receiver.events()
        assert [(e["type"], e["data"].get("reason")) for e in events] == [
            ("device.online", None),
            ("device.offline", "keepalive_timeout"),
        ]
        assert events[0]["data"]["broker_node"] == "emqx@node1"
    finally:
        local.stop()
        upstream.stop()
