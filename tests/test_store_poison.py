"""An event the store itself refuses is quarantined; the rest of its batch is delivered.

The refusal is real: a SQLite trigger, added to the bridge's own database file
while it runs, aborts the insert of one device's events.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.conftest import bridge_config, crm_subscription, running_bridge
from tests.support.admin import Admin, admin_config, api_url
from tests.support.mosquitto import Mosquitto
from tests.support.process import started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

_TRIGGER = """
CREATE TRIGGER refuse_poison BEFORE INSERT ON events
WHEN NEW.device_id = 'dev-poison'
BEGIN SELECT RAISE(ABORT, 'this event cannot be stored'); END;
"""


async def test_event_the_store_refuses_is_quarantined_and_the_batch_flows(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver)],
        presence={"enabled": False},
    )
    async with running_bridge(config) as bridge:
        with sqlite3.connect(tmp_path / "hookbridge.db") as conn:
            conn.executescript(_TRIGGER)
        messages = [
            (f"devices/{device}/events", {"type": "session.started", "id": f"p-{i}"})
            for i, device in enumerate(["dev-1", "dev-poison", "dev-2", "dev-3"])
        ]
        with Publisher(mosquitto.port) as device:
            device.publish_all(messages)
            await wait_until(lambda: len(receiver.requests) >= 3, timeout=15)

            async def quarantined() -> bool:
                rejected = await bridge.store.list_rejected(limit=10)
                return any(r.reason == "store_error" for r in rejected)

            await wait_until(quarantined, timeout=10, message="poison event quarantined")
            # The bridge goes on taking messages after the refusal.
            device.publish_all([("devices/dev-4/events", {"type": "device.added", "id": "x"})])
            await wait_until(lambda: len(receiver.requests) >= 4, timeout=15)
        assert bridge.ingest.subscribed
    devices = sorted(e["data"]["device_id"] for e in receiver.events())
    assert devices == ["dev-1", "dev-2", "dev-3", "dev-4"]


async def test_a_batch_the_store_refuses_is_narrowed_down_and_the_bridge_stays_up(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    """A real ``hookbridge run`` whose store refuses two messages of one batch commits it
    in halves, quarantines the two that fail alone, delivers the rest, acknowledges all
    and takes messages on; after a restart nothing comes back from the broker."""
    config = admin_config(
        mosquitto, tmp_path, [crm_subscription(receiver)], presence={"enabled": False}
    )
    good = [
        (f"devices/dev-{i}/events", {"type": "session.started", "id": f"g-{i}"}) for i in range(18)
    ]
    poison = [
        ("devices/dev-poison/events", {"type": "session.started", "id": f"p-{i}"}) for i in range(2)
    ]
    admin = Admin(api_url(config))

    async def quarantined() -> list[dict[str, Any]]:
        _, body = await admin.get("/api/rejected")
        return [r for r in body["rejected"] if r["reason"] == "store_error"]

    try:
        with started_bridge(config, tmp_path) as bridge:
            with sqlite3.connect(tmp_path / "hookbridge.db") as conn:
                conn.executescript(_TRIGGER)
            with Publisher(mosquitto.port) as device:
                device.publish_all([*good[:6], poison[0], *good[6:12], poison[1], *good[12:]])
            await wait_until(
                lambda: len(receiver.unique_ids()) >= len(good), message="the good ones delivered"
            )
            await wait_until(lambda: _count(quarantined, 2), message="both quarantined")
            found = await quarantined()
            assert all("this event cannot be stored" in r["detail"] for r in found), found
            with Publisher(mosquitto.port) as device:
                device.publish_all([("devices/dev-x/events", {"type": "device.added", "id": "a"})])
            await wait_until(lambda: len(receiver.unique_ids()) == len(good) + 1)
            assert bridge.alive()
            assert "narrowing it down" in bridge.log()
            await bridge.stop()
        # Acknowledged: a new run gets nothing back from the broker.
        with started_bridge(config, tmp_path) as again:
            with Publisher(mosquitto.port) as device:
                device.publish_all([("devices/dev-y/events", {"type": "device.added", "id": "b"})])
            await wait_until(lambda: len(receiver.unique_ids()) == len(good) + 2)
            assert len(await quarantined()) == 2
            assert again.alive()
    finally:
        await admin.close()


async def _count(found: Callable[[], Awaitable[list[Any]]], wanted: int) -> bool:
    return len(await found()) >= wanted
