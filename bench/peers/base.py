"""What the runner needs of a bridge under test: install it, start it, know it is ready."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "bench" / ".cache"


class PeerUnavailable(Exception):
    """The peer cannot be installed or started here; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where a peer takes messages from and sends them to, and its knobs for one run."""

    broker_port: int
    receiver_url: str
    workdir: Path
    max_in_flight: int | None = None  # None: the peer's default
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    ready_marker: str  # a line in the peer's log that says it has subscribed
    cwd: Path | None = None
    ready_topic: str | None = None  # or: a retained message it publishes once subscribed


class Peer:
    """One bridge implementation; subclasses say how to install and launch it."""

    name = "peer"
    sends_ids = False  # True: deduplicate on webhook-id, else on the payload's seq

    def store_file(self, target: Target) -> Path | None:
        """The SQLite file the peer keeps its state in, for the ``reader`` scenario."""
        return None

    def install(self) -> None:
        """Make the peer runnable (may download); raise PeerUnavailable with the reason."""

    def launch(self, target: Target) -> Launch:
        raise NotImplementedError

    def version(self) -> str:
        return "?"


def _retained(port: int, topic: str, deadline: float) -> bool:
    """True when ``topic`` holds a retained message (what a peer publishes once subscribed)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got = threading.Event()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.on_message = lambda *_a: got.set()
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=0)
    try:
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        got.wait(max(0.1, min(1.0, deadline - time.monotonic())))
    finally:
        client.disconnect()
        client.loop_stop()
    return got.is_set()


class Running:
    """A started peer process with its log."""

    def __init__(self, peer: Peer, target: Target) -> None:
        self.peer = peer
        launch = peer.launch(target)
        self.log_path = target.workdir / f"{peer.name}.log"
        self.marker = launch.ready_marker
        self.ready_topic = launch.ready_topic
        self.broker_port = target.broker_port
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                launch.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **launch.env},
                cwd=launch.cwd or REPO,
                start_new_session=True,  # its children go with it on stop
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PeerUnavailable(f"{self.peer.name} exited: {self.log()[-600:]}")
            if self.ready_topic is not None:
                if _retained(self.broker_port, self.ready_topic, deadline):
                    return
                continue
            if self.marker in self.log():
                time.sleep(0.3)  # the subscription is granted just after the marker
                return
            time.sleep(0.05)
        raise PeerUnavailable(f"{self.peer.name} not ready in {timeout:g}s: {self.log()[-600:]}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
