"""A receiver's 2xx the bridge could not record yet is not lost: the delivery goes again.

Attempt results are written lazily (bridge.delivery.recorder): they ride in the
next commit the store makes, or in one of their own within 10 ms. A real
``hookbridge run`` is killed with SIGKILL in that window, held open for the
test by another process holding the SQLite write lock from the moment the
receiver answers. On disk the delivery is still pending and leased; the
restarted instance drops its own old leases, sends it again under the same
``webhook-id``, and records it. The receiver sees the event twice, which
at-least-once allows, and never loses it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import bridge_config, crm_subscription
from tests.support.mosquitto import Mosquitto
from tests.support.process import started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Received, receiving
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_a_result_killed_before_it_was_written_is_sent_again_under_its_id(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    database = tmp_path / "hookbridge.db"
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)

    def answer(_request: Received, n: int) -> Answer:
        if n == 0:
            # From now on the bridge can commit nothing: its 2xx stays unwritten.
            holder.execute("BEGIN IMMEDIATE")
        return Answer(200)

    async with receiving(answer) as receiver:
        config = bridge_config(
            mosquitto, tmp_path, [crm_subscription(receiver)], presence={"enabled": False}
        )
        try:
            with started_bridge(config, tmp_path) as bridge:
                with Publisher(mosquitto.port) as device:
                    device.publish_all(
                        [("devices/dev-1/events", {"type": "session.started", "id": "once"})]
                    )
                await wait_until(lambda: len(receiver.requests) == 1, message="first answer")
                await wait_until(lambda: holder.in_transaction, message="the write lock taken")
                bridge.kill()
        finally:
            if holder.in_transaction:
                holder.execute("ROLLBACK")
        row = holder.execute("SELECT status, attempts FROM deliveries").fetchall()
        assert row == [("pending", 0)], "the 2xx was never written"
        with started_bridge(config, tmp_path, "again"):
            await wait_until(lambda: len(receiver.requests) == 2, message="sent again")

            def recorded() -> bool:
                found = holder.execute("SELECT status FROM deliveries").fetchall()
                return found == [("delivered",)]

            await wait_until(recorded, message="recorded as delivered")
    holder.close()
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == 2 and ids[0] == ids[1]
