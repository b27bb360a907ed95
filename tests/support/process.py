"""The bridge as a real subprocess (``hookbridge run``), for kill -9 and signal tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.waiting import wait_until, wait_until_sync


class BridgeProcess:
    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "bridge") -> None:
        self.workdir = workdir
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where this run's output begins in the (appended) log

    def start(self, *extra: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge.cli", "run", "-c", str(self.config_path), *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_subscribed(self, timeout: float = 20.0) -> None:
        # Only this run's lines count: a restarted bridge must not be taken as
        # connected on the strength of what its previous run logged.
        wait_until_sync(
            lambda: "connected to broker" in self.run_log() or not self.alive(),
            timeout=timeout,
            message="bridge process connected",
        )
        assert self.alive(), self.log()[-3000:]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def run_log(self) -> str:
        """What the current run has logged so far."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait without blocking the loop: receivers on it must go on answering."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        await wait_until(lambda: not self.alive(), timeout=timeout, message="bridge exited")
        return self.process.wait(1)

    def ensure_stopped(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def started_bridge(
    config: dict[str, Any], workdir: Path, name: str = "bridge"
) -> Iterator[BridgeProcess]:
    """A bridge process connected to its broker; killed if still alive when the block ends."""
    bridge = BridgeProcess(config, workdir, name)
    try:
        bridge.start()
        bridge.wait_subscribed()
        yield bridge
    finally:
        bridge.ensure_stopped()
