"""The first outage: a receiver refuses connections, then answers 503, then comes back.

Through a running ``hookbridge run`` with the default retry schedule (5 s, then
5 min, ...). Devices report while the receiver is down; the first of their
events fail twice and are given a slot five minutes away. When the receiver
answers again, every event is delivered, and those are delivered although
their stored next attempt was minutes away: the cause (the catch-up) is
asserted, not a timing. The outage here lasts seconds; the 90-s outages of
the issue, with figures, are the ``outage`` scenario of ``make bench``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bridge.admin.params import parse_time
from tests.conftest import SECRET
from tests.support.admin import Admin, admin_client, admin_config
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.process import started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_until


def _event(device: str, n: int) -> tuple[str, dict[str, Any]]:
    return f"devices/{device}/events", {"type": "session.started", "id": f"{device}-{n}"}


async def _deliveries(admin: Admin) -> dict[str, dict[str, Any]]:
    """The subscription's deliveries by event id."""
    status, page = await admin.get("/api/deliveries?subscription=crm&limit=100")
    assert status == 200, page
    return {d["event_id"]: d for d in page["deliveries"]}


async def test_every_event_goes_out_when_the_receiver_returns_not_at_its_slot(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    port = free_port()
    sub = {
        "name": "crm",
        "url": f"http://127.0.0.1:{port}/hook",
        "secret": SECRET,
        # Slow reporting devices: the circuit would open only after many failures.
        "circuit": {"failures": 50},
    }
    config = admin_config(mosquitto, tmp_path, [sub], presence={"enabled": False})
    del config["retry"]  # the default schedule: 5 s, 5 min, 30 min, ...
    answering = {"status": 503}
    receiver = Receiver(lambda _r, _n: Answer(answering["status"]))
    with started_bridge(config, tmp_path) as bridge, Publisher(mosquitto.port) as devices:
        async with admin_client(config) as admin:
            # Refused: nothing listens on the port yet.
            devices.publish_all([_event("dev-a", 1), _event("dev-b", 1)])

            async def refused_twice() -> bool:
                found = await _deliveries(admin)
                return len(found) == 2 and all(
                    d["attempts"] == 1 and d["last_error"] == "connection refused"
                    for d in found.values()
                )

            await wait_until(refused_twice, timeout=15, message="both refused")
            # Then 503, while the devices go on reporting.
            await receiver.start(port)
            try:
                devices.publish_all([_event("dev-a", 2), _event("dev-b", 2)])
                waiting: dict[str, float] = {}

                async def first_ones_wait_minutes() -> bool:
                    found = await _deliveries(admin)
                    slots = {
                        event_id: parse_time(d["next_attempt_at"], "next")
                        for event_id, d in found.items()
                        if d["status"] == "pending" and d["next_attempt_at"]
                    }
                    waiting.clear()
                    waiting.update({e: at for e, at in slots.items() if at > time.time() + 120})
                    return len(found) == 4 and len(waiting) >= 2

                await wait_until(first_ones_wait_minutes, timeout=20, message="a slot minutes away")
                before = await _deliveries(admin)
                assert all(before[e]["attempts"] == 2 for e in waiting)
                assert all(before[e]["last_status_code"] == 503 for e in waiting)

                # The receiver is back; one more event from a third device.
                answering["status"] = 200
                back = time.time()
                devices.publish_all([_event("dev-c", 1)])

                async def all_delivered() -> bool:
                    found = await _deliveries(admin)
                    return len(found) == 5 and all(
                        d["status"] == "delivered" for d in found.values()
                    )

                await wait_until(all_delivered, timeout=30, message="every event delivered")
            finally:
                await receiver.stop()
            for event_id, slot in waiting.items():
                delivery = before[event_id]
                _, shown = await admin.get(f"/api/deliveries/{delivery['id']}")
                last = shown["attempt_log"][-1]
                assert last["status_code"] == 200
                # Delivered minutes before the slot the schedule had given it.
                assert parse_time(last["started_at"], "started") < slot - 100
                assert parse_time(last["started_at"], "started") >= back - 1
            sent = {r.headers["webhook-id"] for r in receiver.requests if r.body}
            assert len(sent) == 5
            log = bridge.run_log()
            assert "endpoint answers again: catching up" in log
            assert "caught up" in log
            # An outage is no error of the bridge's: warnings, never an ERROR line.
            assert '"level": "error"' not in log
            assert '"level": "warning"' in log  # the failed attempts
            status, metrics = await admin.call("GET", "/metrics")
            assert status == 200
            assert 'hookbridge_caught_up_total{subscription="crm"}' in str(metrics)
            assert bridge.terminate() == 0
