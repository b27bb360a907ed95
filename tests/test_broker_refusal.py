"""A broker that refuses the CONNECT is asked again with backoff, never at a fixed pace.

A real mosquitto with a password file refuses the bridge's wrong password; the
bridge (a real ``hookbridge run``) logs each refusal with the wait before its
next try, and the waits grow: 0.5 s, 1 s, 2 s... up to ``mqtt.reconnect_max``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import bridge_config
from tests.support.mosquitto import Mosquitto
from tests.support.process import BridgeProcess
from tests.support.system_deps import find
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def _refusals(log: str) -> list[float]:
    waits = []
    for line in log.splitlines():
        if line.startswith("{") and '"broker refused the connection"' in line:
            waits.append(float(json.loads(line)["retry_in"]))
    return waits


def _password_file(tmp_path: Path) -> Path:
    passwd = find("mosquitto_passwd")
    if passwd is None:
        pytest.fail("mosquitto_passwd is not installed (it comes with mosquitto)")
    passwords = tmp_path / "passwords"
    subprocess.run([passwd, "-b", "-c", str(passwords), "hb", "the-right-one"], check=True)
    passwords.chmod(0o600)
    return passwords


async def test_refused_connects_back_off(tmp_path: Path) -> None:
    passwords = _password_file(tmp_path)
    broker = Mosquitto(tmp_path / "broker", extra=f"password_file {passwords}")
    broker.start()
    bridge = BridgeProcess(
        bridge_config(
            broker,
            tmp_path,
            [],
            mqtt={"username": "hb", "password": "a-wrong-one", "reconnect_max": "2s"},
        ),
        tmp_path,
    )
    try:
        bridge.start()
        await wait_until(
            lambda: len(_refusals(bridge.log())) >= 4, timeout=30, message="four refusals"
        )
        assert _refusals(bridge.log())[:4] == [0.5, 1.0, 2.0, 2.0]
        assert "a-wrong-one" not in bridge.log()
    finally:
        bridge.ensure_stopped()
        broker.stop()
