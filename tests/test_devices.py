"""The device directory through a running bridge and a real broker: the API, the CLI and
the dashboard's Devices panel (headless Chromium)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from tests.conftest import SECRET, crm_subscription, running_bridge
from tests.support.admin import TOKEN, Admin, admin_client, admin_config, api_url
from tests.support.cli import hookbridge
from tests.support.dashboard import dashboard_page, save_screenshot
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

Fleet = tuple[dict[str, Any], Bridge, Admin]


@pytest.fixture
async def fleet(
    mosquitto: Mosquitto, receiver: Receiver, failing_receiver: Receiver, tmp_path: Path
) -> AsyncIterator[Fleet]:
    """A bridge whose devices have talked: sensor-1 online, sensor-2 came and went
    offline, pump-7 started two sessions (online from its first message). ``crm`` takes
    everything; ``ops`` takes the sessions and always fails, so they end dead."""
    config = admin_config(
        mosquitto,
        tmp_path,
        [
            crm_subscription(receiver),
            {
                "name": "ops",
                "url": failing_receiver.url,
                "secret": SECRET,
                "events": ["session.started"],
                "circuit": {"enabled": False},
            },
        ],
    )
    async with running_bridge(config) as bridge, admin_client(config) as admin:
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("devices/sensor-1/status", "online"),
                    ("devices/sensor-2/status", "online"),
                    ("devices/pump-7/events", {"type": "session.started", "id": "p-1", "v": 1}),
                    ("devices/sensor-2/status", "offline"),
                    ("devices/pump-7/events", {"type": "session.started", "id": "p-2", "v": 2}),
                ]
            )

        async def settled() -> bool:
            counts = await bridge.store.counts()
            # Five device messages; crm also gets the alerts the two dead ones raise.
            return counts["dead"] == 2 and counts["pending"] == 0 and counts["delivered"] >= 5

        await wait_until(settled, timeout=20, message="every delivery delivered or dead")
        yield config, bridge, admin


async def _every_page(admin: Admin, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        status, page = await admin.get("/api/devices", params=query)
        assert status == 200, page
        found += page["devices"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("paging did not end")


async def test_the_directory_lists_devices_with_presence_and_their_deliveries(
    mosquitto: Mosquitto, receiver: Receiver, fleet: Fleet
) -> None:
    _config, _bridge, admin = fleet
    everything = await _every_page(admin)
    assert [d["device_id"] for d in everything] == ["pump-7", "sensor-1", "sensor-2"]
    by_id = {d["device_id"]: d for d in everything}
    assert {k: d["state"] for k, d in by_id.items()} == {
        "pump-7": "online",
        "sensor-1": "online",
        "sensor-2": "offline",
    }
    pump = by_id["pump-7"]
    assert pump["last_event"]["type"] == "session.started"
    assert pump["changed_at"] <= pump["last_seen"]
    assert pump["last_event"]["received_at"] == pump["last_seen"]
    assert by_id["sensor-2"]["last_event"]["type"] == "device.offline"

    # Pages of one: the same devices, in the same order.
    assert await _every_page(admin, limit="1") == everything
    assert [d["device_id"] for d in await _every_page(admin, state="offline")] == ["sensor-2"]
    online = await _every_page(admin, state="online", limit="1")
    assert [d["device_id"] for d in online] == ["pump-7", "sensor-1"]
    sensors = await _every_page(admin, prefix="sensor-")
    assert [d["device_id"] for d in sensors] == ["sensor-1", "sensor-2"]
    assert await _every_page(admin, prefix="sensor-", state="offline") == [by_id["sensor-2"]]
    assert await _every_page(admin, prefix="nobody") == []

    status, pump_detail = await admin.get("/api/devices/pump-7")
    assert status == 200
    assert pump_detail["state"] == "online"
    sessions = pump_detail["events"]
    assert [e["type"] for e in sessions] == ["session.started", "session.started"]
    assert sessions[0]["id"] == pump["last_event"]["id"]
    for event in sessions:
        status_of = {d["subscription"]: d for d in event["deliveries"]}
        assert status_of["crm"]["status"] == "delivered"
        assert status_of["crm"]["last_status_code"] == 200
        assert status_of["ops"]["status"] == "dead"
        assert status_of["ops"]["dead_reason"] == "exhausted"
        assert status_of["ops"]["last_status_code"] == 500
    # The events crm received, newest first.
    sent = [e["id"] for e in receiver.events() if e["data"].get("device_id") == "pump-7"]
    assert sorted(sent) == sorted(e["id"] for e in sessions)
    assert sessions[0]["received_at"] >= sessions[1]["received_at"]
    _, latest = await admin.get("/api/devices/pump-7", params={"events": "1"})
    assert [e["id"] for e in latest["events"]] == [sessions[0]["id"]]
    _, sensor = await admin.get("/api/devices/sensor-2")
    assert [e["type"] for e in sensor["events"]] == ["device.offline", "device.online"]
    assert [d["subscription"] for d in sensor["events"][0]["deliveries"]] == ["crm"]

    for path, expected in (
        ("/api/devices/nobody", 404),
        ("/api/devices?state=asleep", 400),
        ("/api/devices?limit=0", 400),
        ("/api/devices?cursor=garbage!", 400),
        ("/api/devices?prefix=" + "x" * 300, 400),
        ("/api/devices/pump-7?events=0", 400),
    ):
        status, body = await admin.get(path)
        assert status == expected, (path, body)
        assert isinstance(body["error"], str)
    status, _ = await admin.get("/api/devices", token="wrong-token-of-same-size!")
    assert status == 401
    assert (await admin.call("DELETE", "/api/devices/sensor-1", token="x" * 24))[0] == 401

    # Forgotten: out of the directory, its events kept; its next message brings it back.
    assert await admin.call("DELETE", "/api/devices/sensor-1") == (
        200,
        {"device_id": "sensor-1", "forgotten": True},
    )
    assert (await admin.call("DELETE", "/api/devices/sensor-1"))[0] == 404
    assert (await admin.get("/api/devices/sensor-1"))[0] == 404
    assert [d["device_id"] for d in await _every_page(admin)] == ["pump-7", "sensor-2"]
    with Publisher(mosquitto.port) as device:
        device.publish_all([("devices/sensor-1/events", {"type": "session.ended", "id": "s-9"})])

    async def back() -> bool:
        status, found = await admin.get("/api/devices/sensor-1")
        return status == 200 and found["events"][0]["type"] == "session.ended"

    await wait_until(back, message="sensor-1 back in the directory")


async def test_the_cli_prints_the_directory_and_a_device(
    fleet: Fleet,
) -> None:
    config, _bridge, _admin = fleet
    flags = ["--url", api_url(config), "--token", TOKEN]
    code, out, err = await hookbridge("devices", *flags)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["DEVICE", "STATE", "SINCE"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["pump-7", "online"],
        ["sensor-1", "online"],
        ["sensor-2", "offline"],
    ]
    code, out, _ = await hookbridge("devices", *flags, "--state", "offline")
    assert code == 0
    assert "sensor-2" in out and "sensor-1" not in out and "pump-7" not in out
    code, out, _ = await hookbridge("devices", *flags, "--prefix", "sensor", "--limit", "1")
    assert code == 0
    assert "sensor-1" in out and "sensor-2" not in out
    cursor = out.strip().splitlines()[-1].removeprefix("more: --cursor ")
    code, out, _ = await hookbridge("devices", *flags, "--prefix", "sensor", "--cursor", cursor)
    assert code == 0
    assert "sensor-2" in out and "sensor-1" not in out and "more:" not in out
    code, out, _ = await hookbridge("devices", *flags, "--json")
    assert [d["device_id"] for d in json.loads(out)["devices"]] == [
        "pump-7",
        "sensor-1",
        "sensor-2",
    ]

    code, out, err = await hookbridge("device", "pump-7", *flags)
    assert code == 0, err
    assert "state      online" in out
    sessions = [line for line in out.splitlines() if " session.started " in line]
    assert len(sessions) == 2
    for line in sessions:
        assert "crm: delivered" in line
        assert "ops: dead (exhausted)" in line
    code, out, _ = await hookbridge("device", "sensor-2", *flags, "--events", "1", "--json")
    detail = json.loads(out)
    assert detail["state"] == "offline"
    assert [e["type"] for e in detail["events"]] == ["device.offline"]
    code, _, err = await hookbridge("device", "nobody", *flags)
    assert code == 1
    assert "no device 'nobody' (404)" in err
    code, _, err = await hookbridge("devices", *flags, "--state", "asleep")
    assert code == 1
    assert "state: must be one of online, offline" in err
    code, out, _ = await hookbridge("device", "sensor-1", "--forget", *flags)
    assert (code, out.strip()) == (0, "sensor-1: forgotten")
    code, out, _ = await hookbridge("devices", *flags)
    assert "sensor-1" not in out and "sensor-2" in out


async def test_the_dashboard_devices_panel(
    fleet: Fleet,
) -> None:
    config, _bridge, _admin = fleet
    async with dashboard_page(config, height=1000) as page:
        rows = page.locator("#devices tbody tr[data-device]")
        sensor = page.locator("#devices tr[data-device='sensor-2']")
        await sensor.wait_for(timeout=10_000)
        assert await rows.count() == 3
        assert "offline" in await sensor.locator(".pill").inner_text()
        pump = page.locator("#devices tr[data-device='pump-7']")
        assert "online" in await pump.locator(".pill").inner_text()
        assert "session.started" in await pump.inner_text()

        # Filter: offline devices only, then devices starting with "pump".
        await page.select_option("#devices-state", "offline")
        await page.click("#devices-form button")
        await pump.wait_for(state="detached", timeout=10_000)
        assert await rows.count() == 1
        await page.select_option("#devices-state", "")
        await page.fill("#devices-prefix", "pump")
        await page.click("#devices-form button")
        await sensor.wait_for(state="detached", timeout=10_000)
        await pump.wait_for(timeout=10_000)

        # A click shows the device's recent events and their deliveries.
        await pump.click()
        events = page.locator("#device-events tbody tr[data-event]")
        await events.first.wait_for(timeout=10_000)
        assert await events.count() == 2
        assert await page.locator("#device-name").inner_text() == "pump-7"
        first = events.first
        crm = first.locator(".pill[data-subscription='crm']")
        ops = first.locator(".pill[data-subscription='ops']")
        assert "delivered" in await crm.get_attribute("class")
        assert "dead" in await ops.get_attribute("class")
        assert await ops.inner_text() == "ops: dead"

        # Forget it (after the browser's confirmation): gone from the list and the detail.
        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#device-forget")
        await pump.wait_for(state="detached", timeout=10_000)
        await page.locator("#message", has_text="pump-7: forgotten").wait_for()
        assert await events.count() == 0
        await save_screenshot(page, "dashboard-devices.png")


async def test_a_silent_device_goes_offline_in_the_directory_and_comes_back(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver)],
        presence={"offline_after": "1s", "timeout_for": "all"},
    )
    async with running_bridge(config), admin_client(config) as admin:
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [("devices/quiet-3/events", {"type": "session.started", "id": "q-1"})]
            )

            async def state_of(expected: str, reason: str | None) -> bool:
                _, page = await admin.get("/api/devices", params={"prefix": "quiet-"})
                found = page["devices"]
                return bool(found) and (found[0]["state"], found[0]["reason"]) == (expected, reason)

            await wait_until(lambda: state_of("online", None), message="quiet-3 online")
            await wait_until(
                lambda: state_of("offline", "heartbeat_timeout"),
                timeout=15,
                message="quiet-3 offline after its silence",
            )
            _, offline = await admin.get("/api/devices", params={"state": "offline"})
            (listed,) = offline["devices"]
            assert listed["device_id"] == "quiet-3"
            assert listed["last_event"]["type"] == "device.offline"
            assert listed["changed_at"] > listed["last_seen"]

            device.publish_all([("devices/quiet-3/events", {"type": "session.ended", "id": "q-2"})])
            await wait_until(lambda: state_of("online", "seen_again"), message="quiet-3 back")
        _, detail = await admin.get("/api/devices/quiet-3")
        assert [e["type"] for e in detail["events"]] == [
            "session.ended",
            "device.online",
            "device.offline",
            "session.started",
        ]
        assert detail["last_seen"] == detail["events"][0]["received_at"]
