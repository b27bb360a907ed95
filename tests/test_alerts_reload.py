"""Alerts reach an ops subscription as bridge.* events; reload applies or refuses a new file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import SECRET, running_bridge
from tests.support.admin import Admin, admin_config, api_url
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_until


def _alerts(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    return [e for e in receiver.events() if e["type"] == f"bridge.{kind}"]


async def test_each_alert_reaches_the_ops_subscription_never_its_subject(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    ops = Receiver()
    flaky = Receiver(lambda _r, _n: Answer(500))
    gone = Receiver(lambda _r, _n: Answer(410))
    for receiver in (ops, flaky, gone):
        await receiver.start()
    config = admin_config(
        mosquitto,
        tmp_path,
        [
            {"name": "ops", "url": ops.url, "events": ["bridge.*"], "secret": SECRET},
            # Wants everything, alerts included: but never the alerts about itself.
            {
                "name": "flaky",
                "url": flaky.url,
                "events": ["*"],
                "circuit": {"failures": 2, "cool_down": "50ms"},
            },
            {"name": "gone", "url": gone.url, "events": ["session.*"]},
        ],
    )
    try:
        async with running_bridge(config):
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [("devices/dev-9/events", {"type": "session.started", "id": "a-1"})]
                )
            await wait_until(
                lambda: all(
                    _alerts(ops, kind)
                    for kind in ("delivery_dead", "circuit_opened", "subscription_disabled")
                ),
                timeout=20,
                message="all three alerts at the ops endpoint",
            )
        # flaky also goes dead on the alert about 'gone' it wants (bridge.*): whether that
        # second delivery_dead is in before the wait ends is a matter of timing. Each dead
        # delivery is alerted once, and every one here is flaky's.
        session = next(e["id"] for e in flaky.events() if e["type"] == "session.started")
        deaths = _alerts(ops, "delivery_dead")
        assert all(d["data"]["subscription"] == "flaky" for d in deaths)
        assert len({d["data"]["delivery_id"] for d in deaths}) == len(deaths)
        (dead,) = [d for d in deaths if d["data"]["event_id"] == session]
        assert dead["data"]["subscription"] == "flaky"
        assert dead["data"]["reason"] == "exhausted"
        assert dead["data"]["delivery_id"].startswith("dlv_")
        assert dead["data"]["event_id"].startswith("evt_")
        assert "device_id" not in dead["data"]
        assert dead["source"].startswith("hookbridge://")
        circuit = _alerts(ops, "circuit_opened")[0]
        assert circuit["data"]["subscription"] == "flaky"
        disabled = _alerts(ops, "subscription_disabled")[0]
        assert disabled["data"] == {"subscription": "gone", "reason": "gone"}
        # flaky wants bridge.* too: it got the alert about 'gone', none about itself.
        about = [
            e["data"]["subscription"] for e in flaky.events() if e["type"].startswith("bridge.")
        ]
        assert "gone" in about
        assert "flaky" not in about
    finally:
        for receiver in (ops, flaky, gone):
            await receiver.stop()


async def test_reload_applies_a_valid_file_and_keeps_the_old_one_when_invalid(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    second = Receiver()
    await second.start()
    config = admin_config(mosquitto, tmp_path, [{"name": "crm", "url": receiver.url}])
    path = tmp_path / "hookbridge.yaml"
    path.write_text(yaml.safe_dump(config))
    async with running_bridge(config) as bridge:
        bridge.config_path = path
        admin = Admin(api_url(config))
        try:
            changed = {
                **config,
                "subscriptions": [
                    {"name": "crm", "url": receiver.url, "events": ["session.*"]},
                    {"name": "archive", "url": second.url, "secret": SECRET},
                ],
            }
            path.write_text(yaml.safe_dump(changed))
            status, body = await admin.post("/api/reload")
            assert status == 200, body
            assert body["applied"] is True
            assert body["added"] == ["archive"]
            assert body["changed"] == ["crm"]
            assert body["removed"] == []
            assert body["restart_needed"] == []
            _, subs = await admin.get("/api/subscriptions")
            assert [s["name"] for s in subs["subscriptions"]] == ["crm", "archive"]
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [
                        ("devices/d1/events", {"type": "session.started", "id": "r-1"}),
                        ("devices/d1/lifecycle", {"action": "added", "id": "r-2"}),
                    ]
                )
            await wait_until(lambda: len(second.requests) == 2, message="new lane delivers")
            await wait_until(lambda: len(receiver.requests) == 1, message="crm still delivers")
            assert receiver.requests[0].json()["type"] == "session.started"

            path.write_text(
                yaml.safe_dump({**changed, "subscriptions": [{"name": "crm", "url": "ftp://nope"}]})
            )
            status, body = await admin.post("/api/reload")
            assert status == 400
            assert body["applied"] is False
            assert any("subscriptions[0].url" in p for p in body["problems"])
            assert "not reloaded" in body["error"]
            _, subs = await admin.get("/api/subscriptions")
            assert [s["name"] for s in subs["subscriptions"]] == ["crm", "archive"]

            # Removing a subscription retires its lane; the others go on.
            path.write_text(
                yaml.safe_dump({**changed, "subscriptions": changed["subscriptions"][:1]})
            )
            status, body = await admin.post("/api/reload")
            assert (status, body["removed"]) == (200, ["archive"])
            with Publisher(mosquitto.port) as device:
                device.publish_all([("devices/d1/events", {"type": "session.ended", "id": "r-3"})])
            await wait_until(lambda: len(receiver.requests) == 2, message="crm after removal")
            assert len(second.requests) == 2
        finally:
            await admin.close()
            await second.stop()


async def test_a_reload_whose_store_read_fails_changes_nothing(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    second = Receiver()
    await second.start()
    config = admin_config(
        mosquitto, tmp_path, [{"name": "crm", "url": receiver.url, "events": ["session.*"]}]
    )
    path = tmp_path / "hookbridge.yaml"
    path.write_text(yaml.safe_dump(config))
    database = tmp_path / "hookbridge.db"
    async with running_bridge(config) as bridge:
        bridge.config_path = path
        admin = Admin(api_url(config))
        try:
            added = {
                **config,
                "subscriptions": [
                    *config["subscriptions"],
                    {"name": "archive", "url": second.url, "secret": SECRET},
                ],
            }
            path.write_text(yaml.safe_dump(added))
            # Another process takes the table a reload reads away for a moment.
            with sqlite3.connect(database) as other:
                other.execute("ALTER TABLE subscription_state RENAME TO state_away")
            status, body = await admin.post("/api/reload")
            assert body["applied"] is False, body
            assert any("nothing was changed" in p for p in body["problems"]), body
            # The old configuration runs in full: no archive lane, router or setting.
            assert [s.name for s in bridge.settings.subscriptions] == ["crm"]
            assert "archive" not in bridge.dispatcher.lanes
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [("devices/d1/events", {"type": "session.started", "id": "f-1"})]
                )
            await wait_until(lambda: len(receiver.requests) == 1, message="crm delivers")
            rows, _ = await bridge.store.list_deliveries(
                subscription="archive", status=None, since=None, until=None, cursor=None, limit=10
            )
            assert rows == [], "no delivery for a subscription that was not applied"

            with sqlite3.connect(database) as other:
                other.execute("ALTER TABLE state_away RENAME TO subscription_state")
            status, body = await admin.post("/api/reload")
            assert (status, body["applied"], body["added"]) == (200, True, ["archive"])
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [("devices/d1/events", {"type": "session.started", "id": "f-2"})]
                )
            await wait_until(lambda: len(second.requests) == 1, message="archive delivers")
        finally:
            await admin.close()
            await second.stop()
