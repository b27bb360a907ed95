"""``hookbridge receive`` as a newcomer runs it: a real process behind a real bridge.

The demo's device stream goes through a bridge to the receiver, which prints
one verified line per webhook; a tampered request is refused with 401 and
said; with ``--answer`` a verified request gets that JSON body back (what a
pipe subscription sends to the device); Ctrl-C ends it with a summary.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import aiohttp

from bridge.cli.demo.simulator import messages
from bridge.core.signing import sign
from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.publisher import Publisher
from tests.support.waiting import wait_until, wait_until_sync


class Receiving:
    def __init__(self, process: subprocess.Popen[bytes], out: Path, port: int) -> None:
        self.process, self.out, self.port = process, out, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/iot"

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def verified(self) -> list[str]:
        return [line for line in self.text().splitlines() if "  [signature ok" in line]


@contextmanager
def receive(tmp_path: Path, *args: str) -> Iterator[Receiving]:
    port = free_port()
    out = tmp_path / f"receive-{port}.txt"
    command = [sys.executable, "-m", "bridge.cli", "receive", "--port", str(port), *args]
    with out.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    receiving = Receiving(process, out, port)
    try:
        wait_until_sync(
            lambda: "listening on" in receiving.text() or process.poll() is not None,
            message="the receiver listening",
        )
        assert process.poll() is None, receiving.text()
        yield receiving
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    stamp = int(time.time())
    return {
        "webhook-id": "evt_receive1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, "evt_receive1", stamp, body),
        "content-type": "application/json",
    }


async def test_receive_verifies_a_demo_stream(mosquitto: Mosquitto, tmp_path: Path) -> None:
    with receive(tmp_path, "--secret", SECRET) as receiver:
        sub = {"name": "crm", "url": receiver.url, "secret": SECRET}
        config = bridge_config(mosquitto, tmp_path, [sub], presence={"enabled": False})
        stream = list(islice(messages(), 20))
        async with running_bridge(config) as bridge:
            with Publisher(mosquitto.port) as devices:
                devices.publish_all([(m.topic, m.payload) for m in stream])

            async def all_sent() -> bool:
                counts = await bridge.store.counts()
                return counts["delivered"] >= 20 and counts["pending"] == 0

            await wait_until(all_sent, timeout=20, message="the stream delivered")
        lines = receiver.verified()
        assert len(lines) == 20, receiver.text()
        assert {line.split()[1] for line in lines} >= {"device.added", "device.online"}
        async with aiohttp.ClientSession() as http:
            body = b'{"type": "session.started", "data": {"device_id": "dev-1"}}'
            async with http.post(receiver.url, data=body + b" ", headers=_signed(body)) as bad:
                assert bad.status == 401
        await wait_until(lambda: "REFUSED  evt_receive1" in receiver.text())
        receiver.process.send_signal(signal.SIGINT)
        assert receiver.process.wait(10) == 0
        assert "20 webhooks verified, 1 refused." in receiver.text()
        assert "Traceback" not in receiver.text()


async def test_receive_answers_a_pipe_request_with_the_given_body(tmp_path: Path) -> None:
    answer = {"command": "sync"}
    with receive(tmp_path, "--secret", SECRET, "--answer", json.dumps(answer)) as receiver:
        body = b'{"type": "device.online", "data": {"device_id": "dev-9"}}'
        async with aiohttp.ClientSession() as http:
            async with http.post(receiver.url, data=body, headers=_signed(body)) as good:
                assert good.status == 200
                assert await good.json() == answer
            other = _signed(body, "whsec_" + "A" * 32)
            async with http.post(receiver.url, data=body, headers=other) as bad:
                assert bad.status == 401
        await wait_until(lambda: len(receiver.verified()) == 1)
        assert "device.online" in receiver.verified()[0]
        assert receiver.verified()[0].endswith("[signature ok, answered]")


def test_receive_refuses_an_answer_that_is_not_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "receive", "--secret", SECRET, "--answer", "{nope"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--answer is not JSON" in done.stderr
