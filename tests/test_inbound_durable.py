"""Durable inbound through real processes: a bridge (``hookbridge run``), a private
mosquitto that is stopped and started again, and a device on a persistent
MQTT 5 session that sees what reaches the broker.

An inbound request accepted while the broker is down is answered 202 (it is
committed to the outbox) and published once the broker is back, also when
the bridge itself is stopped or killed in between.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho
import pytest

from tests.conftest import bridge_config, running_bridge
from tests.support.inbound import command_route, signed_request
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.postgres import PostgresDatabase
from tests.support.process import BridgeProcess
from tests.support.sessions import persistent_client
from tests.support.waiting import wait_until
from tests.test_faults_readiness import fill, small_disk

INBOUND = [command_route("helpdesk")]


class Watcher:
    """A device on a persistent session: what the broker queued for it while it was
    away (a broker restart) arrives when it is back."""

    def __init__(self, port: int, client_id: str) -> None:
        self.received: list[paho.MQTTMessage] = []
        self.client = persistent_client(port, client_id, on_message=self.received.append)
        result, _mid = self.client.subscribe("devices/#", qos=1)
        assert result == 0

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _config(broker: Mosquitto, tmp_path: Path, port: int) -> dict[str, Any]:
    return bridge_config(
        broker,
        tmp_path,
        [],
        inbound=INBOUND,
        mqtt={"reconnect_max": "1s"},
        api={"listen": None, "inbound_listen": f"127.0.0.1:{port}"},
    )


async def _send(
    session: aiohttp.ClientSession, port: int, request: tuple[bytes, dict[str, str]]
) -> tuple[int, dict[str, Any]]:
    body, headers = request
    url = f"http://127.0.0.1:{port}/inbound/helpdesk"
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()


async def _post(
    session: aiohttp.ClientSession, port: int, payload: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    return await _send(session, port, signed_request(payload))


async def _wait_listening(session: aiohttp.ClientSession, port: int, bridge: BridgeProcess) -> None:
    async def answers() -> bool:
        assert bridge.alive(), bridge.log()[-3000:]
        try:
            async with session.get(f"http://127.0.0.1:{port}/inbound/helpdesk") as response:
                return response.status == 405  # POST only: the listener is up
        except aiohttp.ClientConnectionError:
            return False

    await wait_until(answers, timeout=20, interval=0.1, message="inbound listener up")


@contextlib.asynccontextmanager
async def _outage(
    broker: Mosquitto, tmp_path: Path, session: aiohttp.ClientSession
) -> AsyncIterator[tuple[BridgeProcess, int, Watcher]]:
    """A bridge process listening for inbound requests on its port, a watching device,
    and the broker stopped (the bridge has seen it go); both are stopped afterwards."""
    port = free_port()
    bridge = BridgeProcess(_config(broker, tmp_path, port), tmp_path)
    watcher = Watcher(broker.port, f"watcher-{tmp_path.name}")
    try:
        bridge.start()
        bridge.wait_subscribed()
        await _wait_listening(session, port, bridge)
        broker.stop()
        await wait_until(
            lambda: "disconnected from broker" in bridge.log(), timeout=20, message="outage seen"
        )
        yield bridge, port, watcher
    finally:
        watcher.close()
        bridge.ensure_stopped()


async def test_accepted_while_the_broker_is_down_and_published_after_it_returns(
    broker: Mosquitto, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with _outage(broker, tmp_path, session) as (_bridge, port, watcher):
        answers = [await _post(session, port, {"device_id": "dev-1", "n": n}) for n in range(3)]
        assert [status for status, _ in answers] == [202, 202, 202]
        broker.start()
        await wait_until(lambda: len(watcher.received) >= 3, timeout=30, message="published")
        # One topic: acceptance order, each message once, with its stable id.
        assert [p["n"] for p in watcher.payloads()] == [0, 1, 2]
        ids = [m.properties.CorrelationData.decode() for m in watcher.received]
        assert ids == [answer["id"] for _, answer in answers]


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_accepted_while_the_broker_is_down_survives_a_bridge_restart(
    broker: Mosquitto, tmp_path: Path, session: aiohttp.ClientSession, how: str
) -> None:
    async with _outage(broker, tmp_path, session) as (bridge, port, watcher):
        status, answer = await _post(session, port, {"device_id": "dev-2", "n": 1})
        assert status == 202
        if how == "sigkill":
            bridge.kill()
        else:
            assert await bridge.stop() == 0
        broker.start()
        bridge.start()
        bridge.wait_subscribed()
        await wait_until(lambda: len(watcher.received) >= 1, timeout=30, message="published")
        (message,) = watcher.received
        assert message.topic == "devices/dev-2/commands"
        assert message.properties.CorrelationData == answer["id"].encode()
        assert json.loads(message.payload) == {"device_id": "dev-2", "n": 1}


async def test_a_store_that_cannot_commit_is_503_and_accepts_nothing(
    broker: Mosquitto, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    with small_disk(tmp_path / "disk") as disk:
        config = _config(broker, tmp_path, port)
        config["store"] = {"url": f"sqlite:///{disk}/hookbridge.db"}
        bridge = BridgeProcess(config, tmp_path)
        watcher = Watcher(broker.port, f"watcher-{tmp_path.name}")
        try:
            bridge.start()
            bridge.wait_subscribed()
            await _wait_listening(session, port, bridge)
            filler = fill(disk)
            pad = "x" * 150_000  # fresh pages for every message: a full disk refuses them
            answers: list[int] = []
            request = signed_request({"device_id": "dev-3", "n": 0, "pad": pad})
            for n in range(20):  # bounded: the disk is full long before
                request = signed_request({"device_id": "dev-3", "n": n, "pad": pad})
                answers.append((await _send(session, port, request))[0])
                if answers[-1] != 202:
                    break
            assert answers[-1] == 503, answers
            accepted = answers.count(202)
            filler.unlink()
            # Nothing of the refused request was kept: the very same request is taken now.
            status, answer = await _send(session, port, request)
            assert status == 202
            await wait_until(
                lambda: len(watcher.received) >= accepted + 1, timeout=30, message="published"
            )
            assert [p["n"] for p in watcher.payloads()] == list(range(accepted + 1))
            last = watcher.received[-1]
            assert last.properties.CorrelationData == answer["id"].encode()
        finally:
            watcher.close()
            bridge.ensure_stopped()


async def test_two_instances_on_one_postgres_publish_each_message_once_in_topic_order(
    mosquitto: Mosquitto, postgres: PostgresDatabase, tmp_path: Path
) -> None:
    url = postgres.schema_url("outbox")
    ports = [free_port(), free_port()]
    configs = [
        bridge_config(
            mosquitto,
            tmp_path,
            [],
            inbound=INBOUND,
            mqtt={"client_id": f"hb-outbox-{name}-{tmp_path.name}"},
            store={"url": url},
            presence={"enabled": False},
            api={"listen": None, "inbound_listen": f"127.0.0.1:{port}"},
        )
        for name, port in zip("ab", ports, strict=True)
    ]
    watcher = Watcher(mosquitto.port, f"watcher-{tmp_path.name}")
    total = 40
    try:
        async with (
            running_bridge(configs[0]) as first,
            running_bridge(configs[1]) as second,
            aiohttp.ClientSession() as session,
        ):
            for bridge in (first, second):
                await wait_until(lambda b=bridge: b.ingest.connected, timeout=10)
            # Accepted alternately by the two instances, on four topics.
            answers = []
            for n in range(total):
                payload = {"device_id": f"dev-{n % 4}", "n": n}
                status, answer = await _post(session, ports[n % 2], payload)
                assert status == 202
                answers.append(answer)
            await wait_until(
                lambda: len(watcher.received) >= total, timeout=30, message="all published"
            )
            ids = [m.properties.CorrelationData.decode() for m in watcher.received]
            assert sorted(ids) == sorted(a["id"] for a in answers)  # each once
            for device in range(4):
                topic = f"devices/dev-{device}/commands"
                seen = [
                    p["n"]
                    for m, p in zip(watcher.received, watcher.payloads(), strict=True)
                    if m.topic == topic
                ]
                assert seen == list(range(device, total, 4)), topic  # acceptance order
    finally:
        watcher.close()
