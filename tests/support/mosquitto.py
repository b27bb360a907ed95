"""A private mosquitto for tests: its own port, config and persistence directory.

Tests can stop and restart it (persistence on, so sessions survive), which
the system broker on 1883 would not allow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from tests.support.system_deps import find


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mosquitto:
    def __init__(self, workdir: Path, *, port: int | None = None, extra: str = "") -> None:
        binary = find("mosquitto")
        if binary is None:
            raise RuntimeError("mosquitto is not installed (make test installs it)")
        self.binary = binary
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_conf(self) -> None:
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 30\n"  # saved on exit; saving a deep queue every second costs
            "max_inflight_messages 1000\n"
            "max_queued_messages 1000000\n"
            "max_queued_bytes 0\n"
            "persistent_client_expiration 1d\n"
            # Started as root, mosquitto drops to its own user, which cannot write
            # into the test's private directory: persistence would silently fail.
            f"{'user root' if os.geteuid() == 0 else ''}\n"
            f"{self.extra}\n"
        )

    def start(self, timeout: float = 10.0) -> None:
        self.write_conf()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_mosquitto(workdir: Path, acl: str | None = None) -> Iterator[Mosquitto]:
    """A private mosquitto for one test, stopped after it; with ``acl``, that access
    list (``workdir/acl``, which the test may rewrite and SIGHUP the broker to reload)."""
    extra = ""
    if acl is not None:
        (workdir / "acl").write_text(acl)
        extra = f"acl_file {workdir / 'acl'}"
    broker = Mosquitto(workdir / "broker", extra=extra)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# Anonymous clients (the bridge and a watching device) may read everything and
# write the bridge's own topics and device events: commands are refused...
ACL_REFUSING_COMMANDS = "topic read #\ntopic readwrite hookbridge/#\ntopic write devices/+/events\n"
# ...until the operator fixes the ACL.
ACL_ALLOWING_COMMANDS = ACL_REFUSING_COMMANDS + "topic write devices/+/commands\n"


class AclBroker(NamedTuple):
    """A private mosquitto refusing publishes on ``devices/+/commands`` (PUBACK 0x87),
    and its ACL file."""

    broker: Mosquitto
    acl: Path

    def allow_commands(self) -> None:
        """The operator fixes the ACL: mosquitto re-reads it on SIGHUP."""
        self.acl.write_text(ACL_ALLOWING_COMMANDS)
        assert self.broker.process is not None
        self.broker.process.send_signal(signal.SIGHUP)


@contextlib.contextmanager
def refusing_commands(workdir: Path) -> Iterator[AclBroker]:
    with running_mosquitto(workdir, acl=ACL_REFUSING_COMMANDS) as broker:
        yield AclBroker(broker, workdir / "acl")
