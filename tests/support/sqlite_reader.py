"""Another process reading the bridge's SQLite file, as a backup, Litestream or an
operator's ``sqlite3`` shell does: it opens a read transaction and holds it.

The reader is a separate Python process with its own connection, so SQLite's
locks between processes are what the test exercises. It answers on its
standard output (a file here, read with a deadline): ``holding <n>`` once its
transaction has its snapshot (``n`` = what ``query`` counted), ``still <n>
<in_transaction>`` when asked to count again inside that same transaction,
``left`` once it committed and closed.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.waiting import wait_until_sync

_SCRIPT = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
query = sys.argv[2]
conn.execute("BEGIN")
print("holding", conn.execute(query).fetchone()[0], flush=True)
for line in sys.stdin:
    if line.strip() == "again":
        print("still", conn.execute(query).fetchone()[0], conn.in_transaction, flush=True)
    else:
        break
conn.execute("COMMIT")
conn.close()
print("left", flush=True)
"""


class HeldReader:
    """A process holding a read transaction on ``path`` until :meth:`leave`."""

    def __init__(self, path: Path, query: str, out: Path) -> None:
        self.path = path
        self.query = query
        self.out = out
        self.process: subprocess.Popen[str] | None = None
        self.first = 0  # what the query counted when the transaction began

    def lines(self) -> list[str]:
        """The answers so far; a line still being written is not one yet."""
        return self.out.read_text().split("\n")[:-1] if self.out.exists() else []

    def _answered(self, count: int, timeout: float = 20.0) -> str:
        wait_until_sync(
            lambda: len(self.lines()) >= count or not self.alive(),
            timeout=timeout,
            message="the reader's answer",
        )
        lines = self.lines()
        assert len(lines) >= count, (lines, self.out.with_suffix(".err").read_text())
        return lines[count - 1]

    def start(self) -> int:
        """Begin the transaction; what the query counted in its snapshot."""
        with self.out.open("w") as out, self.out.with_suffix(".err").open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _SCRIPT, str(self.path), self.query],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                text=True,
            )
        word, count = self._answered(1).split()
        assert word == "holding"
        self.first = int(count)
        return self.first

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _say(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def count_again(self) -> tuple[int, bool]:
        """Count again inside the same transaction: (count, still in the transaction)."""
        asked = len(self.lines()) + 1
        self._say("again")
        word, count, inside = self._answered(asked).split()
        assert word == "still"
        return int(count), inside == "True"

    def leave(self) -> None:
        """End the transaction and the process."""
        asked = len(self.lines()) + 1
        self._say("leave")
        assert self._answered(asked) == "left"
        assert self.process is not None
        self.process.wait(10)

    def ensure_stopped(self) -> None:
        if self.process is None:
            return
        if self.alive():
            self.process.kill()
            self.process.wait(10)
        if self.process.stdin is not None:
            self.process.stdin.close()


@contextlib.contextmanager
def held_read(path: Path, query: str, out: Path) -> Iterator[HeldReader]:
    """A reader holding a transaction on ``path`` (see :class:`HeldReader`); killed at the end."""
    reader = HeldReader(path, query, out)
    try:
        reader.start()
        yield reader
    finally:
        reader.ensure_stopped()
