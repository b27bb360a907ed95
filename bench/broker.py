"""A private mosquitto for one benchmark run: free port, raised limits, no persistence.

Persistence is off: every run starts from an empty broker, and the backlog
scenario keeps its queued messages in the broker's memory (a restart of the
broker is not part of any scenario). The in-flight window is 1,000 and the
queue is unbounded, so the broker never drops a QoS 1 message.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

SEARCH = "/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


class Broker:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path=SEARCH)
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_inflight_messages 1000\n"
            "max_queued_messages 0\n"  # 0 = no limit: the backlog scenario queues 1e6
            "max_queued_bytes 0\n"
            "persistent_client_expiration 1d\n"
            "log_type error\n"
        )
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        log.close()
        if not wait_port(self.port, 10):
            self.stop()
            raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None
