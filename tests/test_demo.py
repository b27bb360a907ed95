"""``hookbridge demo`` as a newcomer runs it: a real subprocess, its screen checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from itertools import islice
from pathlib import Path

from bridge.cli.demo.receiver import describe
from bridge.cli.demo.simulator import messages
from bridge.core.events import CATALOGUE
from tests.support.waiting import wait_until_sync


def _demo(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "demo", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _check_screen(done: subprocess.CompletedProcess[str], count: int) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    # Every verified webhook is one line: the stream's and the answered request's.
    verified = [line for line in lines if "  [signature ok" in line]
    assert len(verified) == count
    assert len([line for line in verified if "answering: sync" in line]) == 1
    types = {line.split()[1] for line in verified}
    assert len(types) >= 5, types
    assert types <= set(CATALOGUE)
    assert f"{count} events received, {count} signatures verified." in done.stdout
    assert "REFUSED" not in done.stdout
    assert "Traceback" not in done.stderr
    assert "ERROR" not in done.stdout + done.stderr  # a normal run, whichever broker
    assert "127.0.0.1" in lines[1]  # the header says where things run


def test_demo_stops_after_n_verified_events() -> None:
    done = _demo("--events", "20", "--rate", "40")
    _check_screen(done, 20)
    assert "mosquitto" in done.stdout.splitlines()[1]
    # The round trip: the device's MQTT 5 request is answered on its response topic.
    (round_trip,) = [line for line in done.stdout.splitlines() if "request/response" in line]
    assert "(MQTT 5): answer on response topic demo/replies/" in round_trip
    assert '"command": "sync"' in round_trip
    assert "[correlation data matched, content type application/json" in round_trip


def test_demo_with_the_embedded_broker() -> None:
    done = _demo("--events", "15", "--rate", "40", "--broker", "embedded")
    _check_screen(done, 15)
    assert "embedded amqtt broker (MQTT 3.1.1)" in done.stdout
    # MQTT 3.1.1 has no response topic: the answer takes the subscription's reply_topic.
    (round_trip,) = [line for line in done.stdout.splitlines() if "request/response" in line]
    assert "(MQTT 3.1.1): answer on reply_topic devices/demo-requester/commands" in round_trip
    assert '"reply":{"command":"sync"' in round_trip


def test_ctrl_c_ends_the_demo_cleanly(tmp_path: Path) -> None:
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "demo", "--rate", "40"],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        wait_until_sync(
            lambda: out.read_text().count("[signature ok]") >= 3 or process.poll() is not None,
            timeout=30,
            message="a few events on screen",
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "signatures verified." in out.read_text()
    assert "Traceback" not in err.read_text()


def test_bad_options_are_refused() -> None:
    done = _demo("--events", "0")
    assert done.returncode == 2
    assert "--events must be at least 1" in done.stderr


def test_simulated_devices_walk_the_whole_catalogue() -> None:
    walked = list(islice(messages(), 3 * 14))
    types = set()
    for message in walked:
        payload = message.payload
        kind = message.topic.rsplit("/", 1)[1]
        if kind == "events":
            types.add(payload["type"])
        elif kind == "status":
            types.add(f"device.{payload['state']}")
        else:
            types.add(f"device.{payload['action']}")
        assert payload["id"] and payload["seq"] >= 1
    assert types == {t for t in CATALOGUE if not t.startswith("bridge.")}
    first = walked[0].topic.split("/")[1]
    seqs = [m.payload["seq"] for m in walked if m.topic.split("/")[1] == first]
    assert seqs == sorted(seqs) == list(range(1, len(seqs) + 1))


def test_a_line_per_event_names_its_key_fields() -> None:
    line = describe(
        {
            "type": "file_transfer.completed",
            "timestamp": "2026-11-22T04:36:14.553Z",
            "data": {"device_id": "dev-1", "seq": 7, "file_name": "log.zip", "size_bytes": 9},
        }
    )
    assert line.startswith("04:36:14.553  file_transfer.completed")
    assert "dev-1#7" in line
    assert "file_name=log.zip size_bytes=9" in line
