"""Messages that lead: each names what to change, the device side included.

check-config gives every problem at once (errors, then warnings); a CLI that
cannot use the admin API says which setting to set; a taken port names
``api.listen``; the API's fields agree; an empty retained status is no
rejection; a device first seen through an event is announced online.
"""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.admin import admin_client, admin_config, api_url
from tests.support.cli import hookbridge, run_cli
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until


def test_check_config_prints_the_errors_then_the_warnings(tmp_path: Path) -> None:
    path = tmp_path / "hookbridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"url": "broker.example.com"},  # an error
                "subscriptions": [
                    {"name": "local", "url": "http://127.0.0.1:9000/hook", "secret": SECRET},
                    {"name": "broken", "url": "ftp://x"},  # an error: judged by its errors
                    {"name": "pipe", "url": "https://a.example.com/h", "mode": "pipe"},
                    {"name": "raw", "url": "https://b.example.com/h", "secret": "raw-bytes-123"},
                ],
            }
        )
    )
    done = run_cli("check-config", str(path))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == "error: configuration has 2 problems"
    errors = [line for line in lines if line.startswith("  ")]
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert [e.split(":")[0].strip() for e in errors] == ["mqtt.url", "subscriptions[1].url"]
    assert lines == [lines[0], *errors, *warnings]  # errors first, then warnings
    places = [w.removeprefix("warning: ").split(":")[0] for w in warnings]
    assert places == [
        "subscriptions[0].url",  # a loopback target with the guard on
        "subscriptions[2].secret",  # unsigned, and a pipe: answers go to devices unchecked
        "subscriptions[3].secret",  # not in whsec_ form
    ]
    assert "security.allow_private_targets: true" in warnings[0]
    assert "published to devices unchecked" in warnings[1]


def test_check_config_warns_about_an_unsigned_subscription(tmp_path: Path) -> None:
    path = tmp_path / "hookbridge.yaml"
    path.write_text(
        yaml.safe_dump({"subscriptions": [{"name": "a", "url": "https://a.example/h"}]})
    )
    done = run_cli("check-config", str(path))
    assert done.returncode == 0
    assert "a: * -> https://a.example/h (push, UNSIGNED)" in done.stdout
    assert done.stderr.startswith("warning: subscriptions[0].secret: not set, so its webhooks")


async def test_the_cli_names_the_setting_when_the_api_refuses(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    sub = {"name": "crm", "url": receiver.url, "secret": SECRET}
    locked = admin_config(mosquitto, tmp_path, [sub], api={"token": None})
    async with running_bridge(locked):
        code, _, err = await hookbridge("deliveries", "list", "--url", api_url(locked))
        assert code == 1
        assert "api.token is not set in the bridge's configuration" in err
        assert "(401)" in err
    config = admin_config(mosquitto, tmp_path, [sub])
    async with running_bridge(config):
        code, _, err = await hookbridge("deliveries", "list", "--url", api_url(config))
        assert code == 1
        assert "none was given: pass --token, set HOOKBRIDGE_ADMIN_TOKEN" in err


def test_a_taken_port_names_api_listen(mosquitto: Mosquitto, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = bridge_config(mosquitto, tmp_path, [], api={"listen": f"127.0.0.1:{port}"})
        path = tmp_path / "hookbridge.yaml"
        path.write_text(yaml.safe_dump(config))
        done = run_cli("run", "-c", str(path))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} (api.listen)" in done.stderr
    assert "set api.listen to a free address" in done.stderr
    assert "Traceback" not in done.stderr


async def test_the_disable_answer_agrees_with_itself(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    sub = {"name": "crm", "url": receiver.url, "secret": SECRET}
    config = admin_config(mosquitto, tmp_path, [sub])
    async with running_bridge(config), admin_client(config) as admin:
        status, body = await admin.post("/api/subscriptions/crm/disable")
        assert status == 200
        assert (body["enabled"], body["health"]["disabled"]) == (False, True)
        status, body = await admin.post("/api/subscriptions/crm/enable")
        assert (body["enabled"], body["health"]["disabled"]) == (True, False)


async def test_an_empty_retained_status_is_taken_silently(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    sub = {"name": "crm", "url": receiver.url, "secret": SECRET}
    async with running_bridge(bridge_config(mosquitto, tmp_path, [sub])) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish("devices/gone-1/status", "online", retain=True).wait_for_publish(10)
            cleared = device.publish("devices/gone-1/status", b"", retain=True)  # how MQTT clears
            cleared.wait_for_publish(10)
            device.publish_all([("devices/gone-1/events", b"{broken")])  # a real rejection

        async def one_rejected() -> bool:
            return (await bridge.store.counts())["rejected"] == 1

        await wait_until(one_rejected, message="the broken one rejected")
        (rejected,) = await bridge.store.list_rejected(limit=10)
        assert rejected.topic == "devices/gone-1/events"
        assert bridge.metrics.rejected.labels("unknown_type")._value.get() == 0


async def test_a_device_first_seen_through_an_event_is_announced_online(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    sub = {"name": "crm", "url": receiver.url, "secret": SECRET}
    config = bridge_config(mosquitto, tmp_path, [sub], presence={"announce_first_seen": True})
    async with running_bridge(config):
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("devices/new-1/events", {"type": "session.started", "id": "f-1"}),
                    ("devices/new-1/events", {"type": "session.ended", "id": "f-2"}),
                    ("devices/new-2/status", "online"),  # says so itself: no extra online
                ]
            )
        await wait_until(lambda: len(receiver.requests) == 4, message="four webhooks")
    seen = [(e["type"], e["data"]["device_id"], e["data"].get("reason")) for e in receiver.events()]
    assert seen[:3] == [
        ("device.online", "new-1", "first_seen"),
        ("session.started", "new-1", None),
        ("session.ended", "new-1", None),
    ]
    assert seen[3] == ("device.online", "new-2", None)


def test_the_default_announces_first_sight() -> None:
    from bridge.config import parse_config

    assert parse_config({}).presence.announce_first_seen is True
