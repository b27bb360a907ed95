"""Declared event types and telemetry end to end: a real broker, a running bridge, a receiver.

A type of the operator's own and telemetry arrive signed (checked with the
``standardwebhooks`` package) and routed by their globs; a message whose data
fails its type's schema is rejected and listed, and the next valid one still
arrives; telemetry does not touch presence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.normalising import METER
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver, receiving
from tests.support.waiting import wait_until


def _verified(receiver: Receiver) -> list[dict[str, Any]]:
    """Every body the receiver got, each verified as a Standard Webhooks receiver would."""
    verifier = Webhook(SECRET)
    envelopes = []
    for request in receiver.requests:
        envelope = verifier.verify(request.body, request.headers)
        assert request.headers["webhook-id"] == envelope["id"]
        envelopes.append(envelope)
    return envelopes


async def test_declared_types_and_telemetry_arrive_signed(
    mosquitto: Mosquitto, tmp_path: Path, receiver: Receiver
) -> None:
    async with receiving() as devices:
        config = bridge_config(
            mosquitto,
            tmp_path,
            [
                {"name": "all", "url": receiver.url, "secret": SECRET},
                # device.* is not flooded by telemetry, nor by the declared type.
                {"name": "devices", "url": devices.url, "secret": SECRET, "events": ["device.*"]},
            ],
            event_types=[METER],
            telemetry={"topics": ["devices/{device_id}/telemetry"]},
            rules=[
                {
                    "topic": "meters/{device_id}/reading",
                    "type": "meter.read",
                    "data": {"kwh": "payload.kwh"},
                    "id": "payload.id",
                }
            ],
        )
        async with running_bridge(config) as bridge:
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [
                        ("devices/m-7/events", {"type": "meter.read", "id": "n-1", "kwh": 1.5}),
                        ("meters/m-8/reading", {"id": "r-1", "kwh": 2}),
                        ("devices/t-1/telemetry", "21.5"),
                        ("devices/t-1/telemetry", {"cpu_percent": 12, "disks": [{"free": 41}]}),
                        ("devices/t-2/events", {"type": "telemetry.reported", "fan_rpm": 900}),
                        ("devices/d-1/status", "online"),
                    ]
                )
                await wait_until(lambda: len(receiver.requests) >= 6, timeout=15)
                await wait_until(lambda: len(devices.requests) >= 1, timeout=15)
            routed, _ = await bridge.store.list_deliveries(
                subscription="devices", status=None, since=None, until=None, cursor=None, limit=50
            )
            telemetry_presence = await bridge.store.get_presence("t-1")
            device_presence = await bridge.store.get_presence("d-1")

    received = sorted(
        json.dumps([e["type"], e["source"].rsplit("/", 2)[1:], e["data"]], sort_keys=True)
        for e in _verified(receiver)
    )
    expected = [
        ["meter.read", ["m-7", "events"], {"device_id": "m-7", "kwh": 1.5}],
        ["meter.read", ["m-8", "reading"], {"device_id": "m-8", "kwh": 2}],
        ["telemetry.reported", ["t-1", "telemetry"], {"device_id": "t-1", "value": 21.5}],
        [
            "telemetry.reported",
            ["t-1", "telemetry"],
            {"device_id": "t-1", "cpu_percent": 12, "disks": [{"free": 41}]},
        ],
        ["telemetry.reported", ["t-2", "events"], {"device_id": "t-2", "fan_rpm": 900}],
        ["device.online", ["d-1", "status"], {"device_id": "d-1"}],
    ]
    assert received == sorted(json.dumps(e, sort_keys=True) for e in expected)
    assert [e["type"] for e in _verified(devices)] == ["device.online"]
    assert len(routed) == 1  # nothing else was ever routed to device.*
    # Telemetry is no sign of life: the directory of presence never heard of t-1.
    assert telemetry_presence is None
    assert device_presence is not None


async def test_a_message_failing_its_schema_is_rejected_and_the_next_arrives(
    mosquitto: Mosquitto, tmp_path: Path, receiver: Receiver
) -> None:
    config = bridge_config(
        mosquitto,
        tmp_path,
        [{"name": "meters", "url": receiver.url, "secret": SECRET, "events": ["meter.*"]}],
        event_types=[METER],
    )
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("devices/m-1/events", {"type": "meter.read", "id": "a", "kwh": -3}),
                    ("devices/m-1/events", {"type": "meter.read", "id": "b", "kwh": 4}),
                ]
            )
            await wait_until(lambda: len(receiver.requests) >= 1, timeout=15)

            async def listed() -> bool:
                return len(await bridge.store.list_rejected(limit=10)) >= 1

            await wait_until(listed, timeout=10, message="the invalid reading listed")
            rejections = await bridge.store.list_rejected(limit=10)
            counts = await bridge.store.counts()
    assert [e["data"] for e in _verified(receiver)] == [{"device_id": "m-1", "kwh": 4}]
    assert len(rejections) == 1
    rejection = rejections[0]
    assert rejection.topic == "devices/m-1/events"
    assert rejection.reason == "invalid_fields"
    assert rejection.detail == "meter.read: data_schema: data.kwh: -3 is less than the minimum of 0"
    assert b'"kwh": -3' in rejection.payload or b'"kwh":-3' in rejection.payload
    assert counts["events"] == 1
