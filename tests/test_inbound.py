"""Inbound webhooks end to end: real HTTP requests in, a real MQTT subscriber watching.

Every refusal is followed by one accepted "fence" request; the subscriber
seeing the fence and nothing before it proves the refused one was not
published (MQTT keeps the order of one publisher's QoS 1 messages).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook

from bridge.app import Bridge
from bridge.core.signing import hub_signature
from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.inbound import command_route, inbound_bridge, signed_request
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.waiting import wait_until

GH_SECRET = "github-shared-secret"
INBOUND = [
    command_route("helpdesk", topic="devices/{body.device_id}/{body.channel}", max_body="1KB"),
    command_route(
        "gh",
        path="/inbound/github",
        secret=GH_SECRET,
        signature="github",
        allow_topics=["devices/#"],
    ),
]


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, device: Publisher) -> None:
        self.session = session
        self.base = base
        self.device = device
        self.fences = 0

    async def post(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        async with self.session.post(self.base + path, data=body, headers=headers) as response:
            return response.status, await response.json()

    async def standard(
        self,
        payload: Any,
        *,
        msg_id: str | None = None,
        stamp: int | None = None,
        secret: str = SECRET,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, Any]]:
        body, headers = signed_request(payload, msg_id=msg_id, stamp=stamp, secret=secret, raw=raw)
        return await self.post("/inbound/helpdesk", body, headers)

    async def assert_nothing_published(self) -> None:
        """Send an accepted fence; it must be the only new message the device gets."""
        before = len(self.device.received)
        self.fences += 1
        status, _ = await self.standard(
            {"device_id": "fence", "channel": "commands", "n": self.fences}
        )
        assert status == 202
        await wait_until(lambda: len(self.device.received) > before, timeout=10, message="fence")
        new = self.device.received[before:]
        assert [json.loads(m.payload)["n"] for m in new] == [self.fences]


@pytest.fixture
async def client(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Client]:
    async with inbound_bridge(mosquitto, tmp_path, INBOUND) as running:
        yield Client(running.session, running.base, running.device)


async def test_accepted_message_is_published_with_our_id(client: Client) -> None:
    status, answer = await client.standard({"device_id": "dev-1", "channel": "commands", "x": 1})
    assert status == 202
    assert answer["topic"] == "devices/dev-1/commands"
    assert answer["id"].startswith("inb_")
    await wait_until(lambda: len(client.device.received) == 1, timeout=10, message="publish")
    (message,) = client.device.received
    assert message.topic == "devices/dev-1/commands"
    assert json.loads(message.payload) == {"device_id": "dev-1", "channel": "commands", "x": 1}
    assert message.properties.CorrelationData == answer["id"].encode()
    assert message.qos == 1


async def test_reference_library_signature_is_accepted(client: Client) -> None:
    body = json.dumps({"device_id": "dev-2", "channel": "commands"})
    stamp = int(time.time())
    signature = Webhook(SECRET).sign("msg_ref", _utc(stamp), body)
    headers = {"webhook-id": "msg_ref", "webhook-timestamp": str(stamp)}
    status, _ = await client.post(
        "/inbound/helpdesk", body.encode(), {**headers, "webhook-signature": signature}
    )
    assert status == 202


def _utc(stamp: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC)


async def test_bad_signature_is_401(client: Client) -> None:
    wrong = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="
    status, answer = await client.standard(
        {"device_id": "dev-1", "channel": "commands"}, secret=wrong
    )
    assert status == 401
    assert answer == {"error": "no signature matches"}
    await client.assert_nothing_published()


async def test_stale_timestamp_is_401(client: Client) -> None:
    old = int(time.time()) - 301
    status, answer = await client.standard({"device_id": "dev-1", "channel": "commands"}, stamp=old)
    assert status == 401
    assert "too old" in answer["error"]
    status, _ = await client.standard(
        {"device_id": "dev-1", "channel": "commands"}, stamp=int(time.time()) + 400
    )
    assert status == 401
    await client.assert_nothing_published()


async def test_replayed_id_is_409(client: Client) -> None:
    payload = {"device_id": "dev-1", "channel": "commands"}
    assert (await client.standard(payload, msg_id="msg_once"))[0] == 202
    await wait_until(lambda: len(client.device.received) == 1, timeout=10, message="first")
    status, answer = await client.standard(payload, msg_id="msg_once")
    assert status == 409
    assert "already received" in answer["error"]
    await client.assert_nothing_published()


async def test_topic_not_allowed_is_403(client: Client) -> None:
    status, answer = await client.standard({"device_id": "dev-1", "channel": "firmware"})
    assert status == 403
    assert "allow_topics" in answer["error"]
    await client.assert_nothing_published()


@pytest.mark.parametrize("device_id", ["a/b", "+", "#", "", None, ["x"]])
async def test_unsafe_topic_values_are_400(client: Client, device_id: Any) -> None:
    status, answer = await client.standard({"device_id": device_id, "channel": "commands"})
    assert status == 400
    assert answer["error"].startswith("topic: ")
    await client.assert_nothing_published()


async def test_not_json_is_400(client: Client) -> None:
    assert (await client.standard(None, raw=b"device_id=dev-1"))[0] == 400
    assert (await client.standard(None, raw=b"[1, 2]"))[0] == 400
    await client.assert_nothing_published()


async def test_too_large_is_413(client: Client) -> None:
    big = {"device_id": "dev-1", "channel": "commands", "pad": "x" * 2000}
    status, answer = await client.standard(big)
    assert status == 413
    assert "larger than 1024 bytes" in answer["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the read cap applies
        for _ in range(4):
            yield b" " * 400

    async with client.session.post(
        client.base + "/inbound/helpdesk", data=chunks(), headers={"webhook-id": "m"}
    ) as response:
        assert response.status == 413
    await client.assert_nothing_published()


async def test_github_signature(client: Client) -> None:
    body = json.dumps({"device_id": "dev-9"}).encode()
    headers = {"x-hub-signature-256": hub_signature(GH_SECRET, body), "x-github-delivery": "d-1"}
    status, answer = await client.post("/inbound/github", body, headers)
    assert status == 202
    assert answer["topic"] == "devices/dev-9/commands"
    await wait_until(lambda: len(client.device.received) == 1, timeout=10, message="publish")
    bad = {**headers, "x-hub-signature-256": hub_signature("wrong", body), "x-github-delivery": "2"}
    assert (await client.post("/inbound/github", body, bad))[0] == 401
    assert (await client.post("/inbound/github", body, headers))[0] == 409  # same delivery id
    await client.assert_nothing_published()


async def test_served_by_the_admin_api_without_inbound_listen(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = bridge_config(mosquitto, tmp_path, [], inbound=INBOUND, api={"listen": "127.0.0.1:0"})
    async with running_bridge(config) as bridge:
        await wait_until(lambda: bridge.ingest.connected, timeout=10, message="connected")
        assert bridge.inbound.port is None
        with Publisher(mosquitto.port) as device:
            device.subscribe("devices/#")
            async with aiohttp.ClientSession() as session:
                client = Client(session, f"http://127.0.0.1:{_admin_port(bridge)}", device)
                await client.assert_nothing_published()


def _admin_port(bridge: Bridge) -> int:
    port = bridge.admin.port
    assert port is not None
    return port
