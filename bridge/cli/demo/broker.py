"""The demo's private MQTT broker: mosquitto when installed, else the embedded amqtt broker.

mosquitto runs as a child process on a free port of 127.0.0.1 with a config
of its own (no persistence: the demo starts fresh each time). amqtt runs in
this event loop and speaks MQTT 3.1.1 only, so the bridge is told to use
3.1.1 with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho

from bridge.errors import BrokerError

__all__ = ["BrokerChoice", "DemoBroker", "connected", "find_mosquitto", "free_port"]

BrokerChoice = Literal["auto", "mosquitto", "embedded"]

_SEARCH = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/opt/homebrew/sbin"]


class _ClosedConnections(logging.Filter):
    """Drops amqtt's ERROR for a connection closed without a DISCONNECT packet."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No data from")


def find_mosquitto() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SEARCH])
    return shutil.which("mosquitto", path=path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def connected(client: paho.Client, port: int, who: str) -> AsyncIterator[None]:
    """``client`` connected to the demo broker on ``port``, its network loop running, and
    disconnected on the way out; ``who`` names it when the broker cannot be reached."""
    try:
        await asyncio.to_thread(client.connect, "127.0.0.1", port, 30)
    except OSError as exc:
        raise BrokerError(f"{who} cannot reach the demo broker: {exc}") from None
    client.loop_start()
    try:
        yield
    finally:
        client.disconnect()
        client.loop_stop()


class DemoBroker:
    """``async with DemoBroker(choice) as broker``: ``broker.url``, ``broker.protocol``."""

    def __init__(self, choice: BrokerChoice = "auto") -> None:
        self.choice = choice
        self.port = free_port()
        self.kind = ""
        self.protocol: Literal["5", "3.1.1"] = "5"
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._embedded: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def __aenter__(self) -> DemoBroker:
        binary = find_mosquitto() if self.choice != "embedded" else None
        if binary is not None:
            await self._start_mosquitto(binary)
        elif self.choice == "mosquitto":
            raise BrokerError("mosquitto is not installed; use --broker embedded")
        else:
            await self._start_embedded()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def _start_mosquitto(self, binary: str) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="hookbridge-demo-")
        workdir = Path(self._workdir.name)
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\nlog_type error\n"
        )
        log = (workdir / "mosquitto.log").open("wb")
        try:
            # A session of its own: Ctrl-C in the terminal reaches the demo, which
            # stops the bridge first and the broker last, not the broker under it.
            self._process = subprocess.Popen(  # noqa: ASYNC220, S603 - our own broker binary; waits are async
                [binary, "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.kind, self.protocol = f"mosquitto ({binary})", "5"
        await self._wait_listening(lambda: self._process is not None and self._process.poll())

    async def _start_embedded(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise BrokerError(
                "neither mosquitto nor amqtt is installed: pip install 'hookbridge[demo]'"
            ) from exc
        # amqtt logs every connection at INFO; the demo's screen is for events. It also
        # logs a client that leaves without DISCONNECT (the broker's own readiness probe,
        # a device simulator stopping) at ERROR: that is a normal run, not an error.
        logging.getLogger("amqtt").setLevel(logging.ERROR)
        broker_log = logging.getLogger("amqtt.broker")
        if not any(isinstance(f, _ClosedConnections) for f in broker_log.filters):
            broker_log.addFilter(_ClosedConnections())
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._embedded = Broker(config)
        await self._embedded.start()
        self.kind, self.protocol = "embedded amqtt broker (MQTT 3.1.1)", "3.1.1"
        await self._wait_listening(lambda: None)

    async def _wait_listening(self, exited: Any, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if exited() is not None:
                raise BrokerError("the demo broker exited at start")
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        raise BrokerError(f"the demo broker did not listen on port {self.port}")

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                await asyncio.wait_for(asyncio.to_thread(self._process.wait), 10)
            except TimeoutError:
                self._process.kill()
                await asyncio.to_thread(self._process.wait)
            self._process = None
        if self._embedded is not None:
            with contextlib.suppress(Exception):
                await self._embedded.shutdown()
            self._embedded = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
