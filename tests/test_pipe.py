"""Pipe mode: a receiver's answer reaches the device over a real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Subscription
from bridge.core.events import Event
from bridge.delivery.pipe import PipeError, Reply, plan_reply
from tests.conftest import bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_until

PIPE = Subscription.model_validate(
    {
        "name": "p",
        "url": "http://x.example",
        "mode": "pipe",
        "reply_topic": "devices/{data.device_id}/commands",
        "pipe_max_reply": 100,
    }
)
EVENT = Event("evt_1", "device.online", datetime(2026, 1, 1, tzinfo=UTC), "s", {"device_id": "d1"})


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (204, b'{"a": 1}', None),
        (200, b"", None),
        (200, b"  ", None),
        (200, b"not json", "pipe: the answer is not JSON"),
        (200, b'{"pad": "' + b"x" * 100 + b'"}', "pipe: the answer is larger than"),
    ],
)
def test_plan_reply_nothing_or_error(status: int, body: bytes, expected: str | None) -> None:
    plan = plan_reply(PIPE, EVENT, status, body)
    if expected is None:
        assert plan is None
    else:
        assert isinstance(plan, PipeError) and plan.reason.startswith(expected)


def test_plan_reply_wraps_the_answer() -> None:
    plan = plan_reply(PIPE, EVENT, 200, b'{"command": "reboot"}')
    assert plan == Reply(
        "devices/d1/commands",
        b'{"event_id":"evt_1","reply":{"command":"reboot"}}',
        b"evt_1",
    )
    bad = Event("evt_2", "device.online", EVENT.timestamp, "s", {"device_id": "a/b"})
    refused = plan_reply(PIPE, bad, 200, b"{}")
    assert isinstance(refused, PipeError) and "reply topic" in refused.reason


def _answers(request: Any, _n: int) -> Answer:
    device = request.json()["data"]["device_id"]
    if device == "dev-1":
        return Answer(200, body=json.dumps({"command": "sync", "for": device}).encode())
    if device == "dev-2":
        return Answer(200, body=b"<html>not json</html>")
    return Answer(204)


async def test_device_receives_the_receivers_answer(mosquitto: Mosquitto, tmp_path: Path) -> None:
    receiver = Receiver(_answers)
    await receiver.start()
    try:
        sub = {
            "name": "pipe",
            "url": receiver.url,
            "mode": "pipe",
            "reply_topic": "devices/{data.device_id}/commands",
        }
        async with running_bridge(bridge_config(mosquitto, tmp_path, [sub])) as bridge:
            with Publisher(mosquitto.port) as device:
                device.subscribe("devices/+/commands")
                device.publish_all(
                    [
                        ("devices/dev-2/status", "online"),
                        ("devices/dev-3/status", "online"),
                        ("devices/dev-1/status", "online"),
                    ]
                )
                await wait_until(lambda: len(device.received) >= 1, timeout=15, message="reply")
                await wait_until(lambda: len(receiver.requests) >= 3, timeout=15)
                (reply,) = device.received  # dev-2 (not JSON) and dev-3 (204) send nothing
            assert reply.topic == "devices/dev-1/commands"
            document = json.loads(reply.payload)
            assert document["reply"] == {"command": "sync", "for": "dev-1"}
            by_device = {r.json()["data"]["device_id"]: r for r in receiver.requests}
            assert document["event_id"] == by_device["dev-1"].headers["webhook-id"]
            assert reply.properties.CorrelationData == document["event_id"].encode()
            dev2 = by_device["dev-2"].headers["hookbridge-delivery-id"]

            async def recorded() -> bool:
                d = await bridge.store.get_delivery(dev2)
                return d is not None and d.status.value == "delivered"

            await wait_until(recorded, timeout=10, message="non-JSON answer still delivered")
            attempts = await bridge.store.attempts(dev2)
            assert attempts[-1].error == "pipe: the answer is not JSON"
    finally:
        await receiver.stop()
