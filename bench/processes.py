"""The receiver and the publisher as child processes of the harness."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from bench.broker import end_process, wait_port
from bench.peers.base import REPO
from bench.receiver import STATS_PATH


class ReceiverProcess:
    def __init__(
        self,
        port: int,
        workdir: Path,
        *,
        delay: float,
        fail_rate: float,
        lifetime: float = 3600.0,
    ) -> None:
        """``lifetime``: the receiver exits by itself after this many seconds (a
        harness that dies leaves nothing behind); a run must end well before."""
        self.port = port
        self.log_path = workdir / "receiver.log"
        self.argv = [
            sys.executable, "-m", "bench.receiver", "--port", str(port),
            "--delay", str(delay), "--fail-rate", str(fail_rate), "--lifetime", str(lifetime),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        if not wait_port(self.port, 15):
            self.stop()
            raise RuntimeError(f"receiver did not start: {self.log_path.read_text()[-500:]}")

    def stats(self, *, latencies: bool = False) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}{STATS_PATH}{'?latencies=1' if latencies else ''}"
        with urllib.request.urlopen(url, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process)
        self.process = None


def start_publisher(
    port: int, count: int, rate: float, run: str, timeout: float
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.publisher",
            "--port",
            str(port),
            "--count",
            str(count),
            "--rate",
            str(rate),
            "--run",
            run,
            "--timeout",
            str(timeout),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def publisher_result(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate(timeout=10)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError("the publisher reported nothing")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
