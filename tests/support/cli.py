"""The ``hookbridge`` command line as a real subprocess, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "check_config_refuses",
    "hookbridge",
    "run_cli",
    "run_refuses_like_check_config",
]

COMMAND = [sys.executable, "-m", "bridge.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``hookbridge *args`` to its end, its output kept as text (a failure is not raised)."""
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


async def hookbridge(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``hookbridge *args`` without blocking the loop a bridge under test runs in:
    its exit code, standard output and standard error."""
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def check_config_refuses(path: Path, expected: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """``check-config -c path`` exits 2 counting ``len(expected)`` problems and printing
    each of ``expected``; the finished process is returned for further checks."""
    done = run_cli("check-config", "-c", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"configuration has {len(expected)} problem" in done.stderr, done.stderr
    for line in expected:
        assert line in done.stderr, done.stderr
    return done


def run_refuses_like_check_config(path: Path, section: str, problems: int) -> None:
    """``run -c path`` and ``check-config`` both exit 2, and each of the ``problems``
    lines ``check-config`` prints about ``section`` stands in what ``run`` prints."""
    checked = run_cli("check-config", str(path))
    run = run_cli("run", "-c", str(path))
    assert checked.returncode == run.returncode == 2
    lines = [line for line in checked.stderr.splitlines() if line.startswith(f"  {section}[")]
    assert len(lines) == problems, checked.stderr
    for line in lines:
        assert line in run.stderr.splitlines(), run.stderr
