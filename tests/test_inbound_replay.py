"""Inbound messages under real faults: a broker that refuses the publish, a replayer.

A private mosquitto with an ACL file refuses the bridge's publish on
``devices/+/commands`` with an MQTT 5 PUBACK reason code 0x87 (not
authorized): that is a failed publish. The request was already accepted (it
is in the outbox), so the outbox retries it until the broker allows it, or
gives it up as dead once its ``max_age`` passes. GitHub-style requests have
no timestamp: a replay is refused on the signature, with or without
``x-github-delivery``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from bridge.app import Bridge
from bridge.config import InboundSettings
from bridge.core.signing import hub_signature
from bridge.inbound.outbox import BACKOFF, retry_at
from bridge.inbound.server import GITHUB_REPLAY_WINDOW, replay_key
from bridge.store.outbox import OutboxKind, OutboxMessage, OutboxStatus
from tests.conftest import bridge_config, pipe_subscription, running_bridge
from tests.support.inbound import command_route, inbound_bridge, signed_request
from tests.support.mosquitto import AclBroker, Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, receiving
from tests.support.waiting import wait_until

GH_SECRET = "github-shared-secret"
INBOUND = [
    command_route("helpdesk"),
    command_route("gh", path="/inbound/github", secret=GH_SECRET, signature="github"),
    command_route("short", max_age="2s"),
]


class Sender:
    """A webhook sender that keeps one signed request and can send it again, byte for byte."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        return (await self.send(path, body, headers))[0]

    async def send(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        async with self.session.post(self.base + path, data=body, headers=headers) as response:
            return response.status, await response.json()


@pytest.fixture
async def bridge_and_sender(
    acl_broker: AclBroker, tmp_path: Path
) -> AsyncIterator[tuple[Bridge, Sender, Publisher]]:
    async with inbound_bridge(acl_broker.broker, tmp_path, INBOUND) as running:
        yield running.bridge, Sender(running.session, running.base), running.device


async def test_a_publish_the_broker_refuses_is_retried_until_it_is_taken(
    acl_broker: AclBroker, bridge_and_sender: tuple[Bridge, Sender, Publisher]
) -> None:
    bridge, sender, device = bridge_and_sender
    body, headers = signed_request({"device_id": "dev-7", "n": 1}, msg_id="msg-acl-1")
    # Committed to the outbox: accepted, whatever the broker will say.
    status, answer = await sender.send("/inbound/helpdesk", body, headers)
    assert status == 202
    message_id = answer["id"]

    async def refused_twice() -> bool:
        message = await bridge.store.get_outbox(message_id)
        return message is not None and message.attempts >= 2

    # PUBACK 0x87 (not authorized): a failed attempt, retried with backoff.
    await wait_until(refused_twice, timeout=20, message="two refused attempts")
    message = await bridge.store.get_outbox(message_id)
    assert message is not None
    assert message.status is OutboxStatus.PENDING
    assert message.last_error is not None
    assert "0x87" in message.last_error
    # Accepted once: the same request again is a replay, refused.
    assert await sender.post("/inbound/helpdesk", body, headers) == 409
    acl_broker.allow_commands()
    await wait_until(lambda: len(device.received) == 1, timeout=30, message="published")
    (received,) = device.received
    assert received.topic == "devices/dev-7/commands"
    assert received.properties.CorrelationData == message_id.encode()

    async def published() -> bool:
        found = await bridge.store.get_outbox(message_id)
        return found is not None and found.status is OutboxStatus.PUBLISHED

    await wait_until(published, timeout=10, message="marked published")
    registry = bridge.metrics.registry
    labels = {"inbound": "helpdesk"}
    failures = registry.get_sample_value("hookbridge_inbound_publish_failures_total", labels)
    assert failures is not None
    assert failures >= 2
    assert registry.get_sample_value("hookbridge_inbound_published_total", labels) == 1


async def test_a_message_refused_until_its_max_age_is_dead(
    bridge_and_sender: tuple[Bridge, Sender, Publisher],
) -> None:
    bridge, sender, device = bridge_and_sender
    body, headers = signed_request({"device_id": "dev-8", "n": 1}, msg_id="msg-acl-2")
    status, answer = await sender.send("/inbound/short", body, headers)
    assert status == 202

    async def dead() -> bool:
        message = await bridge.store.get_outbox(answer["id"])
        return message is not None and message.status is OutboxStatus.DEAD

    await wait_until(dead, timeout=20, message="given up after max_age")
    message = await bridge.store.get_outbox(answer["id"])
    assert message is not None
    assert message.dead_reason == "too_old"
    assert message.attempts >= 1
    assert message.last_error is not None
    assert "0x87" in message.last_error
    labels = {"inbound": "short"}
    assert bridge.metrics.registry.get_sample_value("hookbridge_inbound_dead_total", labels) == 1
    assert device.received == []


async def test_github_replay_is_refused_without_the_delivery_header(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with inbound_bridge(mosquitto, tmp_path, INBOUND) as running:
        sender, device = Sender(running.session, running.base), running.device
        body = json.dumps({"device_id": "dev-9", "action": "reboot"}).encode()
        signed = {"x-hub-signature-256": hub_signature(GH_SECRET, body)}
        assert (
            await sender.post("/inbound/github", body, {**signed, "x-github-delivery": "d-1"})
            == 202
        )
        await wait_until(lambda: len(device.received) == 1, timeout=10, message="published")
        # A replayer drops the unsigned delivery header, or makes one up: still refused.
        assert await sender.post("/inbound/github", body, signed) == 409
        assert (
            await sender.post("/inbound/github", body, {**signed, "x-github-delivery": "d-2"})
            == 409
        )
        # Another body is another request.
        other = json.dumps({"device_id": "dev-9", "action": "status"}).encode()
        fresh = {"x-hub-signature-256": hub_signature(GH_SECRET, other)}
        assert await sender.post("/inbound/github", other, fresh) == 202
        await wait_until(lambda: len(device.received) == 2, timeout=10, message="second")
        assert [json.loads(m.payload)["action"] for m in device.received] == [
            "reboot",
            "status",
        ]


async def test_a_pipe_reply_the_broker_refuses_is_retried_until_it_is_taken(
    acl_broker: AclBroker, tmp_path: Path
) -> None:
    broker = acl_broker.broker
    async with receiving(lambda _r, _n: Answer(200, body=b'{"command": "sync"}')) as receiver:
        sub = pipe_subscription(receiver, "pipe", reply_topic="devices/{data.device_id}/commands")
        async with running_bridge(bridge_config(broker, tmp_path, [sub])) as bridge:
            with Publisher(broker.port) as device:
                device.subscribe("devices/+/commands")
                device.publish_all(
                    [("devices/dev-1/events", {"type": "session.started", "id": "p-1"})]
                )
                await wait_until(lambda: len(receiver.requests) == 1, timeout=10)
                delivery_id = receiver.requests[0].headers["hookbridge-delivery-id"]

                async def refused_reply() -> OutboxMessage | None:
                    page, _ = await bridge.store.list_outbox(
                        status=None, source="pipe", cursor=None, limit=5
                    )
                    refused = [m for m in page if m.attempts >= 1]
                    return refused[0] if refused else None

                # The answer is committed with its attempt; the broker's 0x87 is a
                # failed publish of the reply, retried, never a lost answer.
                await wait_until(refused_reply, timeout=20, message="reply refused once")
                reply = await refused_reply()
                assert reply is not None
                assert (reply.kind, reply.status, reply.delivery_id) == (
                    OutboxKind.REPLY,
                    OutboxStatus.PENDING,
                    delivery_id,
                )
                assert reply.last_error is not None and "0x87" in reply.last_error
                (attempt,) = await bridge.store.attempts(delivery_id)
                assert (attempt.status_code, attempt.error) == (200, None)
                assert device.received == []
                acl_broker.allow_commands()
                await wait_until(lambda: len(device.received) == 1, timeout=30, message="reply")
                (received,) = device.received
                assert received.topic == "devices/dev-1/commands"
                assert json.loads(received.payload)["reply"] == {"command": "sync"}
                labels = {"subscription": "pipe"}
                registry = bridge.metrics.registry
                failures = "hookbridge_pipe_reply_publish_failures_total"
                assert (registry.get_sample_value(failures, labels) or 0) >= 1


async def test_a_refused_status_publish_is_reported(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n")  # not even the bridge's own status topic
    broker = Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}")
    broker.start()
    try:
        with capture_logs() as logs:
            async with running_bridge(bridge_config(broker, tmp_path, [])):
                await wait_until(
                    lambda: any(e["event"] == "broker refused a publish" for e in logs),
                    timeout=10,
                    message="the refusal of the online status reported",
                )
        refusal = next(e for e in logs if e["event"] == "broker refused a publish")
        assert refusal["code"] == 0x87
    finally:
        broker.stop()


def test_github_replay_key_is_the_signature_held_a_day() -> None:
    entry = InboundSettings.model_validate(INBOUND[1])
    signed = {"x-hub-signature-256": "sha256=AB12"}
    key = replay_key(entry, signed)
    assert key is not None
    assert key == replay_key(entry, {**signed, "x-github-delivery": "d-9"})
    assert (key.value, key.window) == ("sig:sha256=ab12", GITHUB_REPLAY_WINDOW)
    assert GITHUB_REPLAY_WINDOW == 24 * 3600


def test_the_backoff_grows_and_never_passes_max_age() -> None:
    message = OutboxMessage(
        id="inb_1", source="s", topic="t", payload=b"{}", created_at=1000.0, max_age=100.0
    )
    assert [retry_at(message, n, 1000.0) for n in (1, 2, 3, 4, 5, 6, 9)] == [
        1001.0,
        1002.0,
        1005.0,
        1010.0,
        1030.0,
        1060.0,
        1060.0,
    ]
    assert retry_at(message, 6, 1080.0) == 1100.0  # capped at the end of its max_age
    assert retry_at(message, 1, 1100.0) is None  # no time left: dead
    assert BACKOFF[-1] == 60.0
