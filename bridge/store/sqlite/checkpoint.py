"""WAL checkpoints off the commit path.

In WAL mode every commit appends the pages it changed to the ``-wal`` file,
and a checkpoint copies them back into the database file and syncs it. Left
to SQLite, the connection whose commit crosses ``wal_autocheckpoint`` pages
runs the checkpoint inside that COMMIT: with ``synchronous = NORMAL`` this
is the only ``fsync`` of the whole path, and it lands on the writer thread,
where it holds back the ingest commit that PUBACKs wait for. A busy bridge
crosses the mark many times a second.

:class:`Checkpointer` runs them on a thread and connection of its own:
a commit wakes it, it waits ``interval`` so that one checkpoint covers many
commits (a page changed by several commits is copied once), then runs a
PASSIVE checkpoint, which never blocks readers or the writer. A PASSIVE
checkpoint copies what the log held when it began, so behind a writer that
never pauses (a backlog arriving) it never catches up, and the log is only
written from its start again once all of it is copied. Past
:data:`RESTART_PAGES` the checkpointer therefore runs a RESTART checkpoint:
it waits for the writer's current transaction, holds the next one back while
it copies the rest, and the commit after it writes the log from its start (and
truncates the file to the writer's ``journal_size_limit``). The writer's own
automatic checkpoint stays as a backstop at :data:`BACKSTOP_PAGES`, should
this thread fail.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from bridge.logs import get_logger

__all__ = [
    "BACKSTOP_PAGES",
    "JOURNAL_SIZE_LIMIT",
    "RESTART_PAGES",
    "CheckpointStats",
    "Checkpointer",
]

log = get_logger("hookbridge.store")

# The writer's wal_autocheckpoint: 8,000 pages of 4 KiB is a WAL of about 32 MB.
BACKSTOP_PAGES = 8000
# A log this long (about 16 MB) is copied back whole and started again.
RESTART_PAGES = 4000
# What a restarted log file is cut back to (the writer's journal_size_limit).
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024
# How long a woken checkpointer lets commits gather before it copies them back.
INTERVAL = 0.1
# After a failed checkpoint (a full disk, an I/O error): wait this long first.
RETRY_AFTER = 1.0


@dataclass(slots=True)
class CheckpointStats:
    """What the checkpointer has done, for tests and diagnostics."""

    runs: int = 0
    restarts: int = 0  # RESTART checkpoints run because the log grew past the mark
    failures: int = 0
    # The last PASSIVE result: frames in the WAL, and how many of them are now
    # in the database file.
    wal_frames: int = 0
    checkpointed: int = 0


class Checkpointer:
    """One thread that checkpoints the WAL after commits (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        interval: float = INTERVAL,
        restart_pages: int = RESTART_PAGES,
    ) -> None:
        self._connect = connect
        self._interval = interval
        self._restart_pages = restart_pages
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = CheckpointStats()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="hookbridge-store-checkpoint", daemon=True
        )
        self._thread.start()

    def note_commit(self) -> None:
        """Called by the writer after a commit: there are frames to copy back."""
        self._wake.set()

    def stop(self) -> None:
        """Stop and wait for the thread (a checkpoint under way runs to its end)."""
        self._stopping.set()
        self.note_commit()  # wakes the thread, which then sees the stop
        if (thread := self._thread) is not None:
            self._thread = None
            thread.join()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except Exception as exc:  # noqa: BLE001 - the backstop keeps the WAL bounded
            log.warning("the WAL checkpointer cannot open the store", error=str(exc))
            return
        try:
            while not self._stopping.is_set():
                self._wake.wait()
                self._wake.clear()
                # Let the commits of a busy moment gather into one checkpoint; a
                # stop cuts the wait short.
                if self._stopping.wait(self._interval):
                    break
                if not self._checkpoint(conn) and self._stopping.wait(RETRY_AFTER):
                    break
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> bool:
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if row is not None and int(row[1]) >= self._restart_pages:
                # Waits (busy_timeout) for the writer's transaction, then holds the next.
                row = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                self.stats.restarts += 1
        except sqlite3.Error as exc:
            self.stats.failures += 1
            log.warning(
                "WAL checkpoint failed; the writer's own checkpoint is the backstop", error=str(exc)
            )
            self._wake.set()  # the frames are still there: try again after the pause
            return False
        self.stats.runs += 1
        if row is not None:
            self.stats.wal_frames, self.stats.checkpointed = int(row[1]), int(row[2])
        return True
