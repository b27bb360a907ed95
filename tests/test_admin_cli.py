"""The operator commands as real subprocesses against a running bridge; and the bridge's
own presence and SIGHUP reload as a real process."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import crm_subscription, running_bridge
from tests.support.admin import TOKEN, admin_config, api_url
from tests.support.cli import hookbridge
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.process import BridgeProcess, started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until


async def test_every_command_against_a_running_bridge(
    mosquitto: Mosquitto, receiver: Receiver, failing_receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(
        mosquitto,
        tmp_path,
        [
            crm_subscription(receiver),
            {"name": "broken", "url": failing_receiver.url, "events": ["device.*"]},
        ],
    )
    path = tmp_path / "hookbridge.yaml"
    path.write_text(yaml.safe_dump(config))
    flags = ["--url", api_url(config), "--token", TOKEN]
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("devices/d1/events", {"type": "session.started", "id": "c-1"}),
                    ("devices/d1/events", b"not json at all"),
                ]
            )
        await wait_until(lambda: len(receiver.requests) == 1)

        async def recorded() -> bool:
            return await bridge.store.queue_depth("crm") == 0

        await wait_until(recorded, message="attempt recorded")

        # -c config gives URL and token; a table on stdout.
        code, out, err = await hookbridge("deliveries", "list", "-c", str(path))
        assert code == 0, err
        assert "DELIVERY" in out
        assert "NEXT ATTEMPT" in out
        assert "delivered" in out
        code, out, _ = await hookbridge("deliveries", "list", *flags, "--json")
        assert code == 0
        (delivery,) = json.loads(out)["deliveries"]
        delivery_id = delivery["id"]

        code, out, _ = await hookbridge("deliveries", "show", delivery_id, *flags)
        assert code == 0
        assert f"delivery      {delivery_id}" in out
        assert "200" in out

        code, out, _ = await hookbridge("deliveries", "retry", delivery_id, *flags)
        assert code == 0
        assert "due now" in out
        await wait_until(lambda: len(receiver.requests) == 2, message="retried")

        env = {"HOOKBRIDGE_URL": api_url(config), "HOOKBRIDGE_ADMIN_TOKEN": TOKEN}
        code, out, _ = await hookbridge(
            "deliveries", "replay", delivery["event_id"], "--json", env=env
        )
        assert code == 0
        assert json.loads(out)["count"] == 1
        await wait_until(lambda: len(receiver.requests) == 3, message="replayed")
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1

        code, out, _ = await hookbridge("rejected", "list", *flags)
        assert code == 0
        assert "invalid_json" in out
        assert "devices/d1/events" in out

        code, out, _ = await hookbridge("test-endpoint", "crm", *flags)
        assert code == 0
        assert "crm: delivered (200)" in out
        code, out, _ = await hookbridge("test-endpoint", "broken", *flags)
        assert code == 1
        assert "broken: failed (500)" in out

        code, out, _ = await hookbridge("subscriptions", "disable", "crm", *flags)
        assert (code, out.strip()) == (0, "crm: disabled")
        code, out, _ = await hookbridge("subscriptions", "list", *flags)
        assert code == 0
        assert "crm     disabled" in out
        code, out, _ = await hookbridge("subscriptions", "enable", "crm", *flags)
        assert (code, out.strip()) == (0, "crm: enabled")
        code, out, _ = await hookbridge("subscriptions", "flush", "crm", *flags)
        assert (code, out.strip()) == (0, "crm: 0 pending deliveries due now")
        code, out, _ = await hookbridge("subscriptions", "list", *flags, "--json")
        listed: list[dict[str, Any]] = json.loads(out)["subscriptions"]
        assert [s["health"]["disabled"] for s in listed] == [False, False]

        # Failures: one clear line, exit 1, no traceback.
        for args, expected in (
            (("deliveries", "show", "dlv_nope", *flags), "no delivery 'dlv_nope' (404)"),
            (
                ("deliveries", "list", "--url", api_url(config), "--token", "wrong"),
                "refused the admin token (401)",
            ),
            (
                ("subscriptions", "list", "--url", f"http://127.0.0.1:{free_port()}"),
                "cannot reach the bridge",
            ),
            (("deliveries", "list"), "where is the bridge?"),
        ):
            code, out, err = await hookbridge(*args, env={"HOOKBRIDGE_URL": ""})
            assert code == 1, args
            assert expected in err, err
            assert "Traceback" not in err
            assert len(err.strip().splitlines()) == 1


async def test_bridge_last_will_says_offline_when_killed(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(
        mosquitto,
        tmp_path,
        [{"name": "crm", "url": receiver.url}],
        mqtt={"keepalive": "1s"},
    )
    with started_bridge(config, tmp_path) as bridge:
        with Publisher(mosquitto.port) as watcher:
            watcher.subscribe(f"hookbridge/{config['mqtt']['client_id']}/status")
            await wait_until(lambda: any(m.payload == b"online" for m in watcher.received))
            bridge.kill()
            # The broker publishes the Will once it notices the dead connection.
            await wait_until(
                lambda: watcher.received[-1].payload == b"offline",
                timeout=15,
                message="last will published",
            )
        with Publisher(mosquitto.port) as late:
            late.subscribe(f"hookbridge/{config['mqtt']['client_id']}/status")
            await wait_until(lambda: bool(late.received), message="retained status")
            assert late.received[0].payload == b"offline"


async def test_sighup_reloads_the_file_of_a_running_process(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    second = Receiver()
    await second.start()
    config = admin_config(mosquitto, tmp_path, [{"name": "crm", "url": receiver.url}])
    bridge = BridgeProcess(config, tmp_path)
    try:
        bridge.start()
        bridge.wait_subscribed()
        broken = {**config, "subscriptions": [{"name": "crm", "url": "gopher://x"}]}
        bridge.config_path.write_text(yaml.safe_dump(broken))
        assert bridge.process is not None
        bridge.process.send_signal(signal.SIGHUP)
        await wait_until(
            lambda: "reload refused" in bridge.log(), timeout=10, message="invalid file refused"
        )
        assert bridge.alive()
        added = {
            **config,
            "subscriptions": [*config["subscriptions"], {"name": "archive", "url": second.url}],
        }
        bridge.config_path.write_text(yaml.safe_dump(added))
        bridge.process.send_signal(signal.SIGHUP)
        await wait_until(lambda: "configuration reloaded" in bridge.log(), timeout=10)
        with Publisher(mosquitto.port) as device:
            device.publish_all([("devices/d1/events", {"type": "session.started", "id": "h-1"})])
        await wait_until(lambda: len(second.requests) == 1, timeout=15, message="new subscription")
        await wait_until(lambda: len(receiver.requests) == 1, timeout=15)
        assert bridge.terminate() == 0
    finally:
        bridge.ensure_stopped()
        await second.stop()
