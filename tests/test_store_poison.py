"""An event the store itself refuses is quarantined; the rest of its batch is delivered.

The refusal is real: a SQLite trigger, added to the bridge's own database file
while it runs, aborts the insert of one device's events.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import bridge_config, crm_subscription, running_bridge
from tests.support.mosquitto import Mosquitto
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
