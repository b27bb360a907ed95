"""Identical readings are two events, even when the broker redelivers the second (DUP).

Telemetry often repeats itself: the same topic and payload, no message ``id``.
A real ``hookbridge run`` commits the first reading; then another process
holds the SQLite write lock, so the second reading is received but cannot be
committed, and the bridge is killed with SIGKILL. When it comes back, the
broker sends the second reading again with DUP set. It is not a copy of the
first (another packet identifier), so both are delivered
(see bridge.store.packets).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import bridge_config, crm_subscription
from tests.support.mosquitto import Mosquitto
from tests.support.process import started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

READING = ("devices/meter-1/events", {"type": "session.started", "kwh": 21.5})


async def test_a_repeated_reading_redelivered_after_a_kill_is_delivered_again(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(
        mosquitto, tmp_path, [crm_subscription(receiver)], presence={"enabled": False}
    )
    with Publisher(mosquitto.port) as device:
        with started_bridge(config, tmp_path) as bridge:
            device.publish_all([READING])
            await wait_until(lambda: len(receiver.unique_ids()) == 1, message="first reading")
            holder = sqlite3.connect(tmp_path / "hookbridge.db", isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")  # the bridge cannot commit now
                device.publish_all([READING])
                await wait_until(
                    lambda: "store refuses writes" in bridge.log(),
                    timeout=30,
                    message="the second reading received and held uncommitted",
                )
                bridge.kill()
            finally:
                holder.execute("ROLLBACK")
                holder.close()
        with started_bridge(config, tmp_path, "again"):
            # The first reading's result may not have been recorded before the kill:
            # it may come again, under its own id (at-least-once). Two ids are two events.
            await wait_until(
                lambda: len(receiver.unique_ids()) == 2, timeout=30, message="second reading"
            )
    readings = {r.json()["id"]: r.json()["data"]["kwh"] for r in receiver.requests}
    assert list(readings.values()) == [21.5, 21.5]
