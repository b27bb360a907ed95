"""User rules end to end: a device with its own topic layout, through a real broker."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import bridge_config, crm_subscription, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until


async def test_rule_maps_a_foreign_topic_layout_to_catalogue_events(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    rules = [
        {
            "topic": "site/{site}/rdp/{device_id}/{action}",
            "type": {
                "from": "topic.action",
                "map": {"connect": "session.started", "disconnect": "session.ended"},
            },
            "data": {
                "device_id": "topic.device_id",
                "site": "topic.site",
                "technician": "payload.user",
                "session_id": "payload.sid",
            },
            "id": "payload.msg",
        }
    ]
    config = bridge_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver, filter="data.site == 'jkt'")],
        rules=rules,
    )
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("site/jkt/rdp/pc-9/connect", {"user": "ayu", "sid": "r-1", "msg": "a1"}),
                    ("site/sby/rdp/pc-3/connect", {"user": "budi", "sid": "r-2", "msg": "b1"}),
                    ("site/jkt/rdp/pc-9/reboot", {"user": "ayu", "msg": "a2"}),
                    ("site/jkt/rdp/pc-9/disconnect", {"user": "ayu", "sid": "r-1", "msg": "a3"}),
                    ("site/jkt/rdp/pc-9/connect", {"user": "ayu", "sid": "r-1", "msg": "a1"}),
                ]
            )
            await wait_until(lambda: len(receiver.requests) >= 2, timeout=15)

            async def rejected() -> bool:
                return len(await bridge.store.list_rejected(limit=10)) >= 1

            await wait_until(rejected, timeout=10, message="the unmapped action rejected")
            counts = await bridge.store.counts()
    events = receiver.events()
    assert [(e["type"], e["data"]["device_id"]) for e in events] == [
        ("session.started", "pc-9"),
        ("session.ended", "pc-9"),
    ]
    assert events[0]["data"] == {
        "device_id": "pc-9",
        "site": "jkt",
        "technician": "ayu",
        "session_id": "r-1",
    }
    assert events[0]["source"].endswith("/site/jkt/rdp/pc-9/connect")
    assert counts["events"] == 3  # the resent message a1 is the same event, stored once
