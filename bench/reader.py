"""Another process reading the bridge's SQLite file, for the ``reader`` scenario.

``python -m bench.reader --db FILE --hold SECONDS`` opens the file, begins a
read transaction (as a backup, Litestream or an operator's ``sqlite3`` shell
does), keeps it for ``--hold`` seconds, then commits and exits.

:class:`HeldRead` is the harness's side: it starts that process ``after``
seconds into the run, samples the ``-wal`` file's size while the reader holds
and after it left, and reports the peak and how long the log took to be cut
back.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.peers.base import REPO

MB = 1024 * 1024
SAMPLE = 0.25  # seconds between two measurements of the log
CUT_BACK = 16 * MB  # "cut back": the log's file at most this size again


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reader", description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--hold", type=float, required=True)
    args = parser.parse_args(argv)
    conn = sqlite3.connect(args.db, isolation_level=None)
    conn.execute("BEGIN")
    count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    print(f"holding {count}", flush=True)
    time.sleep(args.hold)
    print(f"still {conn.execute('SELECT count(*) FROM events').fetchone()[0]}", flush=True)
    conn.execute("COMMIT")
    conn.close()
    print("left", flush=True)


def _log_bytes(database: Path) -> int:
    log = database.with_name(database.name + "-wal")
    try:
        return log.stat().st_size
    except FileNotFoundError:
        return 0


class HeldRead:
    """The reader process and the log's sizes around it (one run; a thread of its own)."""

    def __init__(self, database: Path, *, after: float, hold: float, out: Path) -> None:
        self.database = database
        self.after = after
        self.hold = hold
        self.out = out
        self.sizes: list[tuple[float, int]] = []  # (seconds since the reader left or -held, bytes)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop sampling; what the reader saw and what the log did."""
        self._stop.set()
        self._thread.join(self.after + self.hold + 60)
        held = [size for at, size in self.sizes if at < 0]
        after = [(at, size) for at, size in self.sizes if at >= 0]
        cut = next((at for at, size in after if size <= CUT_BACK), None)
        return {
            "reader_hold_s": self.hold,
            "reader_error": self.error,
            "reader_said": self.out.read_text().split() if self.out.exists() else [],
            "log_peak_mb": round(max(held, default=0) / MB, 1),
            "log_end_mb": round(after[-1][1] / MB, 1) if after else None,
            "log_cut_back_s": None if cut is None else round(cut, 2),
        }

    def _run(self) -> None:
        if self._stop.wait(self.after):
            return
        with self.out.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.reader", "--db", str(self.database),
                 "--hold", str(self.hold)],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
        try:
            started = time.monotonic()
            while process.poll() is None and time.monotonic() - started < self.hold + 30:
                self.sizes.append((-1.0, _log_bytes(self.database)))
                time.sleep(SAMPLE)
            if process.poll() is None:
                self.error = "the reader did not leave"
                return
            left = time.monotonic()
            while not self._stop.is_set() and time.monotonic() - left < 120:
                self.sizes.append((time.monotonic() - left, _log_bytes(self.database)))
                self._stop.wait(SAMPLE)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


if __name__ == "__main__":
    main(sys.argv[1:])
