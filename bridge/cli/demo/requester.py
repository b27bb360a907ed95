"""The demo's request/response round trip: a device asks, a receiver answers, over MQTT.

One device (``demo-requester``) publishes that it is online. A pipe
subscription sends that event to the demo receiver, whose answer goes back
to the device: with MQTT 5 to the Response Topic the device named, with its
Correlation Data; with MQTT 3.1.1 (the embedded broker) to the
subscription's ``reply_topic``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.cli.demo.broker import connected
from bridge.errors import BrokerError

__all__ = ["REQUESTER", "Requester", "pipe_subscription"]

REQUESTER = "demo-requester"
_FALLBACK_TOPIC = f"devices/{REQUESTER}/commands"


def pipe_subscription(url: str, secret: str) -> dict[str, object]:
    """The demo's pipe subscription: the requester's online event, answered back."""
    return {
        "name": "demo-pipe",
        "url": url,
        "secret": secret,
        "events": ["device.online"],
        "filter": f"data.device_id == '{REQUESTER}'",
        "mode": "pipe",
        "reply_topic": "devices/{data.device_id}/commands",  # for MQTT 3.1.1
        "response_topics": ["demo/replies/+"],  # the MQTT 5 Response Topics it answers
    }


class Requester:
    """Publishes one request and waits for its answer; ``result`` says how it went."""

    def __init__(self, port: int, *, protocol: Literal["5", "3.1.1"]) -> None:
        self.port = port
        self.v5 = protocol == "5"
        self.result: str | None = None
        token = uuid.uuid4().hex[:8]
        self._response_topic = f"demo/replies/{token}"
        self._correlation = f"req-{token}".encode()
        self._answer: asyncio.Future[paho.MQTTMessage] | None = None
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{REQUESTER}-{token}",
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
        )

    async def run(self, *, timeout: float = 15.0) -> str:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[paho.MQTTMessage] = loop.create_future()

        def settle(message: paho.MQTTMessage) -> None:
            if not answer.done():
                answer.set_result(message)

        def arrived(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
            loop.call_soon_threadsafe(settle, message)  # paho calls from its own thread

        self._client.on_message = arrived
        async with connected(self._client, self.port, "the requester"):
            listen = self._response_topic if self.v5 else _FALLBACK_TOPIC
            subscribed = self._client.subscribe(listen, qos=1)
            if subscribed[0] != paho.MQTT_ERR_SUCCESS:
                raise BrokerError("the requester cannot subscribe")
            properties = None
            if self.v5:
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.ResponseTopic = self._response_topic
                properties.CorrelationData = self._correlation
            payload = {
                "id": f"req-{uuid.uuid4().hex[:8]}",
                "state": "online",
                "seq": 1,
                "occurred_at": datetime.now(UTC).isoformat(),
            }
            self._client.publish(
                f"devices/{REQUESTER}/status", json.dumps(payload), qos=1, properties=properties
            )
            try:
                message = await asyncio.wait_for(answer, timeout)
            except TimeoutError:
                self.result = f"request/response: no answer within {timeout:g}s"
                return self.result
            self.result = self._describe(message)
            return self.result

    def _describe(self, message: paho.MQTTMessage) -> str:
        body = message.payload.decode("utf-8", "replace")
        if not self.v5:
            return f"request/response (MQTT 3.1.1): answer on reply_topic {message.topic}: {body}"
        properties = message.properties
        correlation = getattr(properties, "CorrelationData", None)
        matched = "matched" if correlation == self._correlation else "DID NOT MATCH"
        content_type = getattr(properties, "ContentType", None) or "-"
        return (
            f"request/response (MQTT 5): answer on response topic {message.topic}: {body} "
            f"[correlation data {matched}, content type {content_type}]"
        )
