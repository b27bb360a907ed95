"""WAL checkpoints that never hold up ingest.

In WAL mode every commit appends the pages it changed to the ``-wal`` file,
and a checkpoint copies them back into the database file and syncs it. Two
kinds of checkpoint would hold up the ingest commit that PUBACKs wait for:
the one SQLite runs inside the COMMIT that crosses ``wal_autocheckpoint``
pages, and one that waits for readers (RESTART, or TRUNCATE with a busy
timeout): it holds the write lock while it waits, so another process reading
the file (an operator's ``sqlite3`` shell, a backup, Litestream) stalls every
commit for as long as it reads. Seen: a read held for 25 s at 200 ev/s made
events up to 9.3 s late.

So the writer never checkpoints (``wal_autocheckpoint = 0``, see
:mod:`bridge.store.sqlite.engine`) and, in ``auto`` mode, :class:`Checkpointer`
runs one round on a thread and connection of its own ``interval`` after
commits (so that one round covers many of them) and at least every ``period``
(so that a reader leaving an idle bridge still gets the log cut back). A
round is:

* a PASSIVE checkpoint. It takes no lock that a commit waits for and copies
  every frame no reader still needs; a reader that stays keeps the rest, and
  the log grows behind it until the reader leaves;
* only when that copied every frame and the log is longer than
  :data:`JOURNAL_SIZE_LIMIT` (it grew behind a reader or a backlog), a
  TRUNCATE checkpoint with a busy timeout of 0, which empties the file. If the
  writer is in a transaction or a reader is still on the log it gives up at
  once, and a later round tries again. It never waits for anyone. A shorter log
  is left as it is: once every frame is copied the writer starts it over from
  its beginning by itself, reusing the file, where emptying it every round
  would make each commit grow it again (an ``ftruncate`` and a sync a round).

Behind a writer that never pauses (a backlog arriving) the TRUNCATE may find
the writer busy round after round; the log then grows until a pause, when a
round empties it. Besides, the writer starts the log over at its next
transaction once every frame is copied and no reader is on it, and cuts the
file back to :data:`JOURNAL_SIZE_LIMIT` then.

In ``external`` mode nothing here runs: Litestream or the like checkpoints.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bridge.observe.logs import get_logger

__all__ = [
    "JOURNAL_SIZE_LIMIT",
    "CheckpointMode",
    "CheckpointStats",
    "Checkpointer",
    "checkpoint_round",
]

log = get_logger("hookbridge.store")

CheckpointMode = Literal["auto", "external"]

# What a log file the writer starts over is cut back to (its journal_size_limit).
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024
_PAGE = 4096  # SQLite's default page size: a frame of the log holds one page
# How long a woken checkpointer lets commits gather before it copies them back.
INTERVAL = 0.1
# A round at least this often, commits or not: a reader that leaves while the
# bridge is idle must not leave the log at its size.
PERIOD = 1.0
# After a failed round (a full disk, an I/O error), or without a connection: wait this long.
RETRY_AFTER = 1.0


@dataclass(slots=True)
class CheckpointStats:
    """What the checkpointer has done, for tests and diagnostics."""

    runs: int = 0  # rounds run, one PASSIVE checkpoint each
    truncations: int = 0  # TRUNCATE checkpoints that emptied the log
    refused: int = 0  # TRUNCATE checkpoints that found the writer or a reader and gave up
    failures: int = 0
    # The last PASSIVE result: frames in the log, and how many of them are now
    # in the database file.
    wal_frames: int = 0
    checkpointed: int = 0


def checkpoint_round(
    conn: sqlite3.Connection, stats: CheckpointStats, *, truncate_over: int = JOURNAL_SIZE_LIMIT
) -> None:
    """One round (see the module docstring) on ``conn``, whose busy timeout is 0; the
    log is emptied when every frame was copied and it holds over ``truncate_over`` bytes.

    Raises sqlite3.Error when a checkpoint fails.
    """
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    stats.runs += 1
    stats.wal_frames, stats.checkpointed = int(frames), int(copied)
    # busy: another connection (Litestream's, say) is checkpointing; frames is -1
    # when the file is not in WAL mode. Nothing to cut back in either case.
    if busy or frames <= 0 or copied < frames or frames * _PAGE <= truncate_over:
        return
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        stats.refused += 1
    else:
        stats.truncations += 1


class Checkpointer:
    """One thread that checkpoints the WAL after commits (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        interval: float = INTERVAL,
        period: float = PERIOD,
        truncate_over: int = JOURNAL_SIZE_LIMIT,
    ) -> None:
        self._connect = connect
        self._interval = interval
        self._period = period
        self._truncate_over = truncate_over
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
        """Stop and wait for the thread (a round under way runs to its end; none waits)."""
        self._stopping.set()
        self.note_commit()  # wakes the thread, which then sees the stop
        if (thread := self._thread) is not None:
            self._thread = None
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopping.is_set():
                # Woken by a commit, let the commits of a busy moment gather into one
                # round; a stop cuts either wait short.
                if self._wake.wait(self._period) and self._stopping.wait(self._interval):
                    break
                self._wake.clear()
                if self._stopping.is_set():
                    break
                if conn is None:
                    conn = self._open()
                if (conn is None or not self._round(conn)) and self._stopping.wait(RETRY_AFTER):
                    break
        finally:
            if conn is not None:
                conn.close()

    def _open(self) -> sqlite3.Connection | None:
        try:
            conn = self._connect()
            # Never wait for a lock: a checkpoint that waits holds the write lock meanwhile.
            conn.execute("PRAGMA busy_timeout = 0")
        except Exception as exc:  # noqa: BLE001 - tried again; the log-size alert says if it lasts
            self.stats.failures += 1
            log.warning("the WAL checkpointer cannot open the store; will retry", error=str(exc))
            return None
        return conn

    def _round(self, conn: sqlite3.Connection) -> bool:
        try:
            checkpoint_round(conn, self.stats, truncate_over=self._truncate_over)
        except sqlite3.Error as exc:
            self.stats.failures += 1
            log.warning("WAL checkpoint failed; will retry", error=str(exc))
            return False
        return True
