"""Durable pipe replies through real processes: a bridge (``hookbridge run``), a private
mosquitto that is stopped while the receiver answers, and an MQTT 5 device on a
persistent session waiting for its reply.

The receiver stops the broker before it answers, so the reply cannot be
published when the attempt settles: it is committed to the outbox with the
attempt and published once the broker is back, also when the bridge is
killed in between.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import pipe_subscription
from tests.support.admin import Admin, admin_config, api_url
from tests.support.mosquitto import Mosquitto
from tests.support.process import BridgeProcess
from tests.support.receiver import Answer, Receiver
from tests.support.sessions import persistent_client
from tests.support.waiting import wait_until

CORRELATION = b"\x00\x01req-42"
EXPIRY = 600


class Device:
    """An MQTT 5 device on a persistent session: a reply the broker queued for it while
    it was away (a broker restart) arrives when it is back."""

    def __init__(self, port: int, client_id: str) -> None:
        self.received: list[paho.MQTTMessage] = []
        self.client = persistent_client(port, client_id, on_message=self.received.append)
        result, _mid = self.client.subscribe("replies/#", qos=1)
        assert result == 0

    def request(self, device_id: str) -> None:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = f"replies/{device_id}"
        properties.CorrelationData = CORRELATION
        properties.MessageExpiryInterval = EXPIRY
        info = self.client.publish(
            f"devices/{device_id}/status", "online", qos=1, properties=properties
        )
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _pending_reply(admin: Admin) -> dict[str, Any] | None:
    status, page = await admin.get("/api/inbound", params={"inbound": "rr"})
    assert status == 200, page
    replies = [m for m in page["messages"] if m["kind"] == "reply"]
    return replies[0] if replies else None


@pytest.mark.parametrize("restart", [False, True], ids=["broker-back", "bridge-killed"])
async def test_a_reply_answered_while_the_broker_is_down_reaches_the_device(
    broker: Mosquitto, tmp_path: Path, restart: bool
) -> None:
    def answer(_request: Any, _n: int) -> Answer:
        # The broker goes away between the request and the answer.
        if broker.process is not None:
            broker.stop()
        return Answer(200, body=b"ack dev-1", headers={"Content-Type": "text/plain"})

    receiver = Receiver(answer)
    await receiver.start()
    sub = pipe_subscription(
        receiver, "rr", events=["device.online"], response_topics=["replies/{data.device_id}"]
    )
    config = admin_config(broker, tmp_path, [sub], mqtt={"reconnect_max": "1s"})
    bridge = BridgeProcess(config, tmp_path)
    device = Device(broker.port, f"device-{tmp_path.name}")
    admin = Admin(api_url(config))
    try:
        bridge.start()
        bridge.wait_subscribed()
        device.request("dev-1")
        await wait_until(lambda: len(receiver.requests) >= 1, timeout=20, message="request")

        async def committed() -> bool:
            assert bridge.alive(), bridge.log()[-3000:]
            return await _pending_reply(admin) is not None

        await wait_until(committed, timeout=20, message="reply committed to the outbox")
        reply = await _pending_reply(admin)
        assert reply is not None
        assert reply["status"] == "pending"
        assert reply["delivery_id"] == receiver.requests[0].headers["hookbridge-delivery-id"]
        # Its deadline is the request's Message Expiry, not reply_max_age (1 h).
        deadline = datetime.fromisoformat(reply["expires_at"])
        assert (deadline - datetime.fromisoformat(reply["created_at"])).total_seconds() <= EXPIRY
        if restart:
            bridge.kill()
        broker.start()
        if restart:
            bridge.start()
            bridge.wait_subscribed()
        await wait_until(lambda: len(device.received) >= 1, timeout=30, message="reply")
        (received,) = device.received
        assert received.topic == "replies/dev-1"
        assert received.payload == b"ack dev-1"
        assert received.properties.CorrelationData == CORRELATION
        assert received.properties.ContentType.startswith("text/plain")

        async def published() -> bool:
            found = await _pending_reply(admin)
            return found is not None and found["status"] == "published"

        await wait_until(published, timeout=20, message="reply marked published")
        # The attempt was recorded once: the receiver was not asked again.
        assert len(receiver.requests) == 1
    finally:
        await admin.close()
        device.close()
        bridge.ensure_stopped()
        await receiver.stop()
