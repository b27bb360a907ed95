"""Several bridge instances on one broker and one PostgreSQL store.

Two real ``hookbridge run`` processes share the topic through a shared
subscription (``$share/<group>/…``): one speaks MQTT 5, the other MQTT 3.1.1,
so both protocols are shown to work with shared subscriptions on mosquitto.

Phase 1 proves the split: 20,000 events, each delivered, and both instances
took messages in (``deliveries.ingested_by``). Phase 2 proves the takeover:
while the receiver holds requests open, one instance is killed with SIGKILL.
The survivor sends what the dead one had committed but not delivered, once
those leases (2 s here) run out, without the dead one coming back; then the
dead one is restarted under its stable client id, so the broker hands it the
messages still queued in its session, and nothing is lost in the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bridge_config, crm_subscription
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import PostgresDatabase, fetch
from tests.support.process import started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver, receiving
from tests.support.waiting import wait_until

# 24,000 events through two processes: generous limits, because on a loaded
# machine (the whole suite on two cores) it runs several times slower than alone.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

GROUP = "hookbridge"


def _messages(start: int, count: int) -> list[tuple[str, dict[str, object]]]:
    return [
        (f"devices/dev-{i % 50}/events", {"type": "session.started", "id": f"m-{i}", "seq": i})
        for i in range(start, start + count)
    ]


async def _by_instance(url: str, where: str = "true") -> dict[str, int]:
    rows = await fetch(
        url, f"SELECT ingested_by, count(*) FROM deliveries WHERE {where} GROUP BY 1"
    )
    return {row[0]: row[1] for row in rows}


def _config(
    mosquitto: Mosquitto, tmp_path: Path, url: str, receiver: Receiver, name: str, protocol: str
) -> dict[str, Any]:
    return bridge_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver, timeout="2s")],
        mqtt={"client_id": name, "shared_group": GROUP, "protocol": protocol},
        store={"url": url, "lease": "2s"},
        presence={"enabled": False},
    )


async def test_two_instances_share_the_work_and_survive_a_kill(
    mosquitto: Mosquitto, postgres: PostgresDatabase, tmp_path: Path
) -> None:
    hanging = False
    async with receiving(
        lambda _r, _n: Answer(200, delay=30.0) if hanging else Answer(200)
    ) as receiver:
        url = postgres.schema_url("scale")
        with (
            started_bridge(
                _config(mosquitto, tmp_path, url, receiver, "hb-scale-a", "5"), tmp_path, "a"
            ) as first,
            started_bridge(
                _config(mosquitto, tmp_path, url, receiver, "hb-scale-b", "3.1.1"), tmp_path, "b"
            ) as second,
        ):
            # Phase 1: the broker splits 20,000 messages between the two.
            total = 20_000
            with Publisher(mosquitto.port) as device:
                device.publish_all(_messages(0, total), timeout=240)
            await wait_until(
                lambda: len(receiver.unique_ids()) >= total,
                timeout=300,
                interval=0.2,
                message="all 20,000 delivered",
            )
            assert len(receiver.unique_ids()) == total
            shares = await _by_instance(url)
            assert set(shares) == {"hb-scale-a", "hb-scale-b"}, shares
            assert sum(shares.values()) == total
            assert min(shares.values()) > total // 10, shares

            # Phase 2: requests hang, so deliveries are leased and in flight at the kill.
            hanging = True
            more = 4_000
            with Publisher(mosquitto.port) as device:
                device.publish_all(_messages(total, more), timeout=60)

            async def second_holds_deliveries() -> bool:
                held = await _by_instance(url, "status = 'pending' AND lease_owner = 'hb-scale-b'")
                return held.get("hb-scale-b", 0) > 0

            await wait_until(second_holds_deliveries, timeout=30, message="b holds leases")
            second.kill()
            hanging = False
            orphaned = await _by_instance(url, "status = 'pending' AND ingested_by = 'hb-scale-b'")
            assert orphaned.get("hb-scale-b", 0) > 0

            async def nothing_pending() -> bool:
                rows = await fetch(url, "SELECT count(*) FROM deliveries WHERE status = 'pending'")
                return rows[0][0] == 0

            # The survivor alone delivers everything the dead instance had committed.
            await wait_until(
                nothing_pending, timeout=120, interval=0.2, message="survivor took over"
            )
            assert not second.alive()

            # The dead instance's broker session may still hold messages it never
            # acknowledged: it comes back under its stable client id and takes them.
            second.start()
            second.wait_subscribed()
            await wait_until(
                lambda: len(receiver.unique_ids()) >= total + more,
                timeout=120,
                interval=0.2,
                message="every event delivered after the kill",
            )
            assert len(receiver.unique_ids()) == total + more
            delivered = {event["data"].get("seq") for event in receiver.events()}
            assert delivered >= set(range(total + more))
            assert first.terminate() == 0
            assert second.terminate() == 0
