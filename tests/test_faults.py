"""Faults around a bridge in this process, with a real mosquitto and real receivers.

A slow endpoint next to a fast one, a store that refuses writes (disk full,
read-only), a message that crashes processing, a broker redelivery (DUP) of
a committed message, and input over every configured limit.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.core.events import Event
from bridge.core.normalise import Message
from bridge.store.sqlite.store import SQLiteStore
from tests.conftest import SECRET, bridge_config, crm_subscription, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_until


def _stamped(count: int, *, device: str = "dev-1") -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            f"devices/{device}/events",
            {"type": "session.started", "id": f"m-{i}", "seq": i, "sent_at": time.time()},
        )
        for i in range(count)
    ]


async def _publish_paced(port: int, count: int, rate: float) -> None:
    """Publish at a steady rate without blocking the loop the receivers answer on."""
    with Publisher(port) as device:
        started = time.monotonic()
        for i, (topic, payload) in enumerate(_stamped(count)):
            payload["sent_at"] = time.time()
            device.publish(topic, payload)
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))


async def test_slow_endpoint_does_not_delay_a_fast_one(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The fast receiver gets everything while the slow one still holds its first requests."""
    fast = Receiver()
    # It answers only after the test is over (however loaded the machine), so the
    # count of its requests below stays its lane's first window.
    slow = Receiver(lambda _r, _n: Answer(200, delay=120.0))
    await fast.start()
    await slow.start()
    count, rate = 200, 100.0
    subscriptions = [
        {"name": "fast", "url": fast.url, "secret": SECRET},
        {"name": "slow", "url": slow.url, "secret": SECRET, "timeout": "150s", "max_in_flight": 4},
    ]
    try:
        async with running_bridge(bridge_config(mosquitto, tmp_path, subscriptions)):
            await _publish_paced(mosquitto.port, count, rate)
            await wait_until(lambda: len(fast.requests) >= count, timeout=30)
            # No answer from the slow receiver has come back yet: its lane is full and
            # waiting, and every fast delivery went past it.
            assert 0 < len(slow.requests) <= 4
            assert sorted(int(r.json()["data"]["seq"]) for r in fast.requests) == list(range(count))
    finally:
        await fast.stop()
        await slow.stop()


async def _page_count(store: SQLiteStore) -> int:
    pages: int = await store._run(
        lambda conn: conn.execute("PRAGMA page_count").fetchone()[0], action="test", write=False
    )
    return pages


async def _set_max_pages(store: SQLiteStore, pages: int) -> None:
    # max_page_count caps this connection's file: SQLite answers SQLITE_FULL
    # exactly as on a full disk, without filling the machine's disk.
    await store._run(
        lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"), action="test", write=True
    )


async def test_full_disk_stops_acks_reports_not_ready_then_recovers(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    total = 400
    with capture_logs() as logs:
        async with running_bridge(config) as bridge:
            assert await bridge.ready()
            store = bridge.store
            assert isinstance(store, SQLiteStore)
            await _set_max_pages(store, await _page_count(store))
            with Publisher(mosquitto.port) as device:
                device.publish_all(_stamped(total))
            await wait_until(lambda: bridge.ingest.store_blocked, timeout=15, message="blocked")
            assert not await bridge.ready()
            assert len(receiver.requests) == 0
            # Unacknowledged meanwhile: the read-only test below shows the broker
            # keeps such messages across a restart of the bridge.
            await _set_max_pages(store, 1_073_741_823)
            await wait_until(lambda: len(receiver.unique_ids()) >= total, timeout=30)
            await wait_until(bridge.ready, timeout=10, message="ready again")
    refusals = [e for e in logs if e["event"] == "store refuses writes; not acknowledging messages"]
    assert refusals and "full" in str(refusals[0]["error"]).lower()
    assert any(e["event"] == "store is writable again; acknowledging" for e in logs)


async def test_read_only_store_leaves_messages_with_the_broker(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    settings = parse_config(config)
    # Create the database, then run a bridge on it opened read-only.
    first = SQLiteStore.from_settings(settings.store, owner=settings.mqtt.client_id)
    await first.open()
    await first.close()
    total = 150
    read_only = Bridge(
        settings, store=SQLiteStore(first.path, read_only=True, owner=settings.mqtt.client_id)
    )
    task = asyncio.create_task(read_only.run(grace=2.0))
    try:
        await wait_until(lambda: read_only.ingest.subscribed, timeout=15)
        with Publisher(mosquitto.port) as device:
            device.publish_all(_stamped(total))
        await wait_until(lambda: read_only.ingest.store_blocked, timeout=15, message="blocked")
        assert not await read_only.ready()
    finally:
        read_only.stop()
        await asyncio.wait_for(task, 20)
    assert len(receiver.requests) == 0
    # The broker kept every unacknowledged message in our persistent session:
    # a bridge with a writable store gets them all.
    async with running_bridge(settings):
        await wait_until(lambda: len(receiver.unique_ids()) >= total, timeout=30)
    assert len(receiver.unique_ids()) == total


async def test_message_that_crashes_processing_is_quarantined(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    async with running_bridge(config) as bridge:
        # The normaliser never raises and the router contains filter errors; a
        # crash here stands for a bug in routing that only one message triggers.
        real_match = bridge.router.match
        calls: list[str] = []

        def crashing_match(event: Event) -> list[Any]:
            calls.append(event.id)
            if event.data.get("poison"):
                raise RuntimeError("routing bug")
            return real_match(event)

        bridge.router.match = crashing_match  # type: ignore[method-assign]
        good = _stamped(30)
        poison = ("devices/dev-9/events", {"type": "session.started", "id": "p-1", "poison": True})
        with Publisher(mosquitto.port) as device:
            device.publish_all([*good[:15], poison, *good[15:]])
        await wait_until(lambda: len(receiver.unique_ids()) >= 30, timeout=20)
        await wait_until(
            lambda: _rejected_reasons(bridge), timeout=10, message="quarantined message stored"
        )
        rejected = await bridge.store.list_rejected(limit=10)
        assert [r.reason for r in rejected] == ["processing_error"]
        assert "3 times: RuntimeError" in rejected[0].detail
        assert json.loads(rejected[0].payload)["id"] == "p-1"
        assert bridge.ingest.connected and not bridge.ingest.store_blocked
    assert not any(json.loads(r.body)["data"].get("poison") for r in receiver.requests)


async def _rejected_reasons(bridge: Bridge) -> bool:
    return bool(await bridge.store.list_rejected(limit=1))


async def test_broker_redelivery_of_a_committed_message_is_stored_once(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    """The connection dies after the commit, before the PUBACK: mosquitto sends it again (DUP)."""
    config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    async with running_bridge(config) as bridge:
        real_commit = bridge.ingest._commit
        seen: list[Message] = []

        async def commit_then_lose_the_connection(messages: Sequence[Message]) -> None:
            await real_commit(messages)
            seen.extend(messages)
            if len(seen) == len(messages):  # the first batch only
                sock = bridge.ingest._client.socket()
                assert isinstance(sock, socket.socket)
                sock.shutdown(socket.SHUT_RDWR)  # the PUBACK cannot leave any more

        bridge.ingest._commit = commit_then_lose_the_connection
        # No message id from the device: only the content hash can recognise it.
        with Publisher(mosquitto.port) as device:
            device.publish("devices/dev-7/events", {"type": "session.ended", "session_id": "s-1"})
            await wait_until(
                lambda: any(m.dup for m in seen), timeout=20, message="broker redelivered (DUP)"
            )
        await wait_until(lambda: bridge.metrics.events_duplicate._value.get() >= 1, timeout=10)
        counts = await bridge.store.counts()
        assert counts["events"] == 1
    assert len(receiver.requests) == 1
    assert [m.dup for m in seen] == [False, True]


async def test_a_lane_survives_a_cancel_nobody_asked_for(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    """A cancel left pending on the lane's task (what asyncio.timeout on Python 3.11
    leaves when its timer and the awaited thing end in one loop turn) does not end
    the lane: the next event is still sent."""
    config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    async with running_bridge(config):
        lane_task = next(t for t in asyncio.all_tasks() if t.get_name() == "lane-crm")
        lane_task.cancel()
        lane_task.uncancel()  # requested by nobody: cancelling() is back to 0
        with capture_logs() as logs:
            await wait_until(
                lambda: any("without a stop" in e["event"] for e in logs),
                timeout=10,
                message="the lane noticed the stray cancel",
            )
        assert not lane_task.done()
        with Publisher(mosquitto.port) as device:
            device.publish("devices/dev-8/events", {"type": "session.ended", "session_id": "s"})
        await wait_until(lambda: len(receiver.requests) == 1, timeout=10, message="delivered")


async def test_input_over_each_limit_is_rejected_with_its_reason(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    limits = {
        "max_payload": "2KB",
        "max_topic_length": 64,
        "max_json_depth": 4,
        "max_fields": 20,
    }
    config = bridge_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver)],
        limits=limits,
    )
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(6):
        deep = {"n": deep}
    over = [
        ("devices/big/events", {"type": "session.started", "blob": "x" * 3000}),
        (f"devices/{'t' * 80}/events", {"type": "session.started"}),
        ("devices/deep/events", {"type": "session.started", "nested": deep}),
        ("devices/wide/events", {"type": "session.started", **{f"f{i}": i for i in range(30)}}),
    ]
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all([*over, ("devices/ok/events", {"type": "session.started"})])
        await wait_until(lambda: len(receiver.requests) >= 1, timeout=15)
        await wait_until(lambda: _count_rejected(bridge, 4), timeout=10, message="4 rejections")
        rejected = await bridge.store.list_rejected(limit=10)
        assert bridge.ingest.connected
    reasons = {r.reason: r.detail for r in rejected}
    assert set(reasons) == {"too_large", "topic_too_long", "too_deep", "too_many_fields"}
    assert "limits.max_payload" in reasons["too_large"]
    assert "limits.max_topic_length" in reasons["topic_too_long"]
    assert "limits.max_json_depth" in reasons["too_deep"]
    assert "limits.max_fields" in reasons["too_many_fields"]
    assert all(len(r.payload) <= 2048 for r in rejected)
    assert [json.loads(r.body)["data"]["device_id"] for r in receiver.requests] == ["ok"]


async def _count_rejected(bridge: Bridge, count: int) -> bool:
    return len(await bridge.store.list_rejected(limit=count + 1)) >= count
