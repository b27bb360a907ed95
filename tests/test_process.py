"""The bridge as a real process: kill -9 loses nothing, SIGTERM stops cleanly, the CLI."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from bridge.cli import settle_memory
from tests.conftest import bridge_config, crm_subscription
from tests.support.mosquitto import Mosquitto
from tests.support.process import BridgeProcess, started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_until


def _messages(count: int) -> list[tuple[str, dict[str, object]]]:
    return [
        (f"devices/dev-{i % 7}/events", {"type": "session.started", "id": f"k-{i}", "seq": i})
        for i in range(count)
    ]


async def test_sigkill_before_delivery_loses_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    hanging = True
    receiver = Receiver(lambda _r, _n: Answer(200, delay=30.0) if hanging else Answer(200))
    await receiver.start()
    bridge = BridgeProcess(
        bridge_config(
            mosquitto,
            tmp_path,
            [crm_subscription(receiver, timeout="60s")],
        ),
        tmp_path,
    )
    try:
        bridge.start()
        bridge.wait_subscribed()
        total = 300
        with Publisher(mosquitto.port) as device:
            device.publish_all(_messages(total))
        # The receiver holds the first attempts open: they are in flight when we kill.
        # A fresh lane starts with several requests in flight (slow start grows on answers).
        await wait_until(lambda: len(receiver.requests) >= 8, timeout=20)
        bridge.kill()
        # Requests sent just before the kill may still be on their way in: count
        # them once the receiver's count has stopped moving.
        seen: list[int] = []

        def settled() -> bool:
            seen.append(len(receiver.requests))
            return len(seen) >= 5 and len(set(seen[-5:])) == 1

        await wait_until(settled, timeout=10, message="the requests sent before the kill")
        in_flight_at_kill = len(receiver.requests)
        hanging = False
        bridge.start()
        await wait_until(
            lambda: len(receiver.unique_ids()) >= total, timeout=60, message="all delivered"
        )
        assert bridge.terminate() == 0
        ids = receiver.unique_ids()
        assert len(ids) == total
        # Duplicates only for the attempts that were in flight at the kill.
        assert len(receiver.requests) - total <= in_flight_at_kill
    finally:
        bridge.ensure_stopped()
        await receiver.stop()


async def test_sigterm_exits_zero_and_publishes_offline(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(mosquitto, tmp_path, [{"name": "crm", "url": receiver.url}])
    with started_bridge(config, tmp_path) as bridge, Publisher(mosquitto.port) as watcher:
        watcher.subscribe(f"hookbridge/{config['mqtt']['client_id']}/status")
        await wait_until(lambda: any(m.payload == b"online" for m in watcher.received))
        assert bridge.terminate() == 0
        await wait_until(lambda: watcher.received[-1].payload == b"offline", timeout=10)


def _check_config(
    path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_check_config_reports_every_problem_with_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mqtt:\n  url: http://nope\nretry:\n  schedule: [5s, 5 parsecs]\n"
        "subscriptions:\n"
        "  - {name: a, url: 'https://a.example/h', secret: whsec_topsecretvalue1}\n"
        "  - {name: b, url: 'https://b.example/h', colour: red}\n"
        "  - {name: c, url: 'ftp://c.example', secret: whsec_topsecretvalue2}\n"
    )
    done = _check_config(bad)
    assert done.returncode == 2
    assert "mqtt.url:" in done.stderr
    assert "retry.schedule[1]:" in done.stderr
    assert "subscriptions[1].colour: Extra inputs are not permitted" in done.stderr
    assert "subscriptions[2].url:" in done.stderr
    assert "topsecretvalue" not in done.stdout + done.stderr


def test_check_config_summary_for_a_valid_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "subscriptions:\n"
        "  - name: crm\n    url: https://crm.example.com/hooks\n"
        "    events: ['device.*', session.started]\n    secret: ${HB_TEST_SECRET}\n"
        "    headers: {Authorization: 'Bearer ${HB_TEST_TOKEN:-tok_hidden_123}'}\n"
    )
    done = _check_config(
        good, env={"HB_TEST_SECRET": "whsec_abcdefghijklmnop", "PATH": "/usr/bin:/bin"}
    )
    assert done.returncode == 0, done.stderr
    assert "crm: device.*, session.started -> https://crm.example.com/hooks" in done.stdout
    assert "abcdefghijklmnop" not in done.stdout
    assert "tok_hidden_123" not in done.stdout


def test_missing_env_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    missing.write_text("mqtt:\n  password: ${HB_SURELY_UNSET_VAR}\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("mqtt: [unclosed\n")
    for path, expected in (
        (missing, "HB_SURELY_UNSET_VAR is not set"),
        (broken, "not valid YAML at line"),
    ):
        done = _check_config(path)
        assert done.returncode == 2
        assert expected in done.stderr


def test_the_run_command_freezes_what_start_up_made_and_collects_young_objects_rarely() -> None:
    threshold = gc.get_threshold()
    try:
        settle_memory()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (50_000, 50, 100)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
