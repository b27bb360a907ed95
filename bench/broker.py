"""A private mosquitto for one benchmark run: free port, no persistence, stock or tuned.

Persistence is off: every run starts from an empty broker, and the backlog
scenario keeps its queued messages in the broker's memory (a restart of the
broker is not part of any scenario).

* ``stock``: mosquitto's defaults (20 messages in flight towards an MQTT
  3.1.1 client; an MQTT 5 client's Receive Maximum is honoured) except
  ``max_queued_messages 0``, so the queue is unbounded;
* ``tuned``: as before, ``max_inflight_messages 1000`` and unbounded queues.

Both publish ``$SYS`` every second (monitoring only) so that the harness
reads the broker's count of dropped messages after each run.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
SEARCH = "/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def end_process(process: subprocess.Popen[Any]) -> None:
    """Ask a child to stop (SIGTERM); kill it if it has not within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def wait_port(port: int, timeout: float) -> bool:
    """True once something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return True
        time.sleep(0.02)
    return False


STOCK_OVERRIDES = {"max_queued_messages": "0"}  # 0 = no limit: nothing is dropped
TUNED_OVERRIDES = {
    "max_inflight_messages": "1000",
    "max_queued_messages": "0",  # the backlog scenario queues 1e6
    "max_queued_bytes": "0",
    "persistent_client_expiration": "1d",
}


def config_text(port: int, kind: str) -> str:
    """mosquitto.conf of one run; ``kind`` is ``stock`` or ``tuned``."""
    overrides = STOCK_OVERRIDES if kind == "stock" else TUNED_OVERRIDES
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "sys_interval 1",  # $SYS once a second: the drop counter is read after each run
        "log_type error",
        *(f"{key} {value}" for key, value in overrides.items()),
    ]
    return "\n".join(lines) + "\n"


def describe(kind: str) -> str:
    overrides = STOCK_OVERRIDES if kind == "stock" else TUNED_OVERRIDES
    return "defaults except " + ", ".join(f"{k} {v}" for k, v in overrides.items())


class Broker:
    def __init__(self, workdir: Path, kind: str = "tuned") -> None:
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path=SEARCH)
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        self.binary = binary
        self.workdir = workdir
        self.kind = kind
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(config_text(self.port, self.kind))
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        log.close()
        if not wait_port(self.port, 10):
            self.stop()
            raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process)
        self.process = None

    def dropped(self, timeout: float = 6.0) -> int | None:
        """The broker's ``$SYS`` count of messages it dropped (None when unreadable)."""
        import threading

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        found: dict[str, int] = {}
        got = threading.Event()

        def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
            try:
                found[msg.topic] = int(msg.payload)
            except ValueError:
                return
            got.set()

        client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        client.on_message = on_message
        client.on_connect = lambda c, *_a: c.subscribe(DROPPED_TOPIC, qos=0)
        try:
            client.connect("127.0.0.1", self.port, keepalive=10)
            client.loop_start()
            got.wait(timeout)
        except OSError:
            return None
        finally:
            client.disconnect()
            client.loop_stop()
        return found.get(DROPPED_TOPIC)
