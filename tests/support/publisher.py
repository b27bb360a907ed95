"""A device-side MQTT client for tests: publishes with QoS 1 and waits for PUBACKs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.support.waiting import wait_until_sync


class Publisher:
    def __init__(
        self,
        port: int,
        *,
        client_id: str | None = None,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        will: tuple[str, bytes] | None = None,
        clean: bool = True,
    ) -> None:
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-device-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            clean_session=None if protocol == MQTTProtocolVersion.MQTTv5 else clean,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.port = port
        self.received: list[paho.MQTTMessage] = []
        self.client.on_message = lambda _c, _u, msg: self.received.append(msg)

    def __enter__(self) -> Publisher:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        wait_until_sync(self.client.is_connected, timeout=10, message="publisher connected")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(
        self, topic: str, payload: bytes | str | dict[str, Any], *, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def publish_all(
        self, messages: list[tuple[str, bytes | str | dict[str, Any]]], timeout: float = 30.0
    ) -> None:
        infos = [self.publish(topic, payload) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout)

    def subscribe(self, topic: str) -> None:
        result, _ = self.client.subscribe(topic, qos=1)
        assert result == 0
