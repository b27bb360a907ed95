"""An instance that cannot reach the receiver does not keep the work it holds.

Two real ``hookbridge run`` processes share the topic (``$share/…``) and one
PostgreSQL store. Each reaches the receiver through a proxy of its own; A's
proxy refuses every request, B's forwards it. A takes in about half of the
events and, with one attempt in flight at a time, holds most of them waiting
when its circuit opens. Leases follow their holder's heartbeat, and A stays
alive, so without giving them back nothing of A's would ever move: the test
shows that every event is delivered, and A's share by B, while A still runs
with its circuit open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bridge_config
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import PostgresDatabase, fetch
from tests.support.process import started_bridge
from tests.support.proxy import ForwardProxy
from tests.support.publisher import Publisher
from tests.support.receiver import receiving
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TARGET = "93.184.215.14:8080"  # the name the subscription uses; B's proxy routes it locally
TOTAL = 60


def _config(
    mosquitto: Mosquitto, tmp_path: Path, url: str, name: str, proxy: ForwardProxy
) -> dict[str, Any]:
    return bridge_config(
        mosquitto,
        tmp_path,
        [
            {
                "name": "crm",
                "url": f"http://{TARGET}/hook",
                "events": ["session.*"],
                "proxy": f"http://127.0.0.1:{proxy.port}",
                "max_in_flight": 1,
                "timeout": "2s",
                # A's circuit opens after two failures and stays open through the test.
                "circuit": {"failures": 2, "cool_down": "10m"},
            }
        ],
        mqtt={"client_id": name, "shared_group": "hookbridge"},
        store={"url": url},
        retry={"schedule": ["200ms"] * 20, "jitter": 0.0},
        presence={"enabled": False},
    )


async def test_an_instance_with_an_open_circuit_gives_its_deliveries_to_the_other(
    mosquitto: Mosquitto, postgres: PostgresDatabase, tmp_path: Path
) -> None:
    async with receiving() as receiver:
        refusing = ForwardProxy({})  # answers 502 to every target
        working = ForwardProxy({TARGET: receiver.url.removesuffix("/hook")})
        await refusing.start()
        await working.start()
        url = postgres.schema_url("unreachable")
        try:
            with (
                started_bridge(
                    _config(mosquitto, tmp_path, url, "hb-cut-off", refusing), tmp_path, "a"
                ) as cut_off,
                started_bridge(
                    _config(mosquitto, tmp_path, url, "hb-reaching", working), tmp_path, "b"
                ) as reaching,
            ):
                with Publisher(mosquitto.port) as device:
                    device.publish_all(
                        [
                            (
                                f"devices/dev-{i % 4}/events",
                                {"type": "session.started", "id": f"u-{i}"},
                            )
                            for i in range(TOTAL)
                        ]
                    )
                await wait_until(
                    lambda: len(receiver.unique_ids()) >= TOTAL,
                    timeout=120,
                    message=f"all {TOTAL} events delivered",
                )
                # Both took events in, and A's circuit opened: what A took in went
                # through B's proxy while A was alive with its circuit open.
                by_instance = {
                    row[0]: row[1]
                    for row in await fetch(
                        url, "SELECT ingested_by, count(*) FROM deliveries GROUP BY 1"
                    )
                }
                assert by_instance.get("hb-cut-off", 0) > 2, by_instance
                assert "circuit open" in cut_off.log()
                assert cut_off.alive() and reaching.alive()
                pending = await fetch(
                    url, "SELECT count(*) FROM deliveries WHERE status <> 'delivered'"
                )
                assert pending[0][0] == 0
                assert len(working.targets) >= TOTAL
                # A sent only what opened its circuit (and no probe: its cool-down runs).
                assert len(refusing.targets) <= 2 + 1, refusing.targets
        finally:
            await refusing.stop()
            await working.stop()
