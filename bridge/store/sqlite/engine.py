"""The threads and connections of the SQLite store.

Writes go to ONE thread that owns the writer connection, so the asyncio loop
never blocks on disk and SQLite never sees two writers from this process.
Reads (the dashboard, metrics scrapes, API lookups, the dispatcher's "when is
the next one due") go to a small pool of reader threads, each with its own
connection: in WAL mode readers never wait for the writer nor make it wait,
so a slow count never holds back an ingest commit and its PUBACKs.

sqlite3 errors are translated here: a read-only file, an I/O error, a full
disk or a lock held past ``busy_timeout`` (busy or locked) is
:class:`StoreUnavailable` (the bridge stops acknowledging, backs off and tries
again); anything else is :class:`StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar, cast
from urllib.parse import quote

from bridge.errors import StoreError, StoreUnavailable
from bridge.store.sqlite.checkpoint import (
    JOURNAL_SIZE_LIMIT,
    Checkpointer,
    CheckpointMode,
    CheckpointStats,
)

__all__ = ["SQLiteEngine", "translate"]

T = TypeVar("T")

_Job = tuple[Callable[[sqlite3.Connection], object], str, "asyncio.Future[object]"]
_Outcome = tuple["asyncio.Future[object]", object, BaseException | None]

# Busy and locked (another writer, a reader holding a shared-cache lock) pass:
# the same transaction succeeds when tried again.
_UNAVAILABLE_CODES = (
    "SQLITE_READONLY",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
)
_UNAVAILABLE_TEXT = (
    "readonly database",
    "disk i/o error",
    "database or disk is full",
    "database is locked",
    "database table is locked",
)
_READERS = 2
LAZY_WAIT = 0.010
"""The longest a lazy write waits for another transaction to ride in (seconds)."""


def translate(exc: sqlite3.Error, action: str) -> StoreError:
    code = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if code.startswith(_UNAVAILABLE_CODES) or any(t in text.lower() for t in _UNAVAILABLE_TEXT):
        return StoreUnavailable(f"the store cannot take writes ({action}): {text}")
    return StoreError(f"the store failed ({action}): {text}")


def _transaction(
    conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], action: str, write: bool
) -> T:
    try:
        # A deferred BEGIN for reads still gives every query of the call one snapshot.
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise translate(exc, action) from exc
    return result


def _settle(outcomes: list[tuple[asyncio.Future[object], object, BaseException | None]]) -> None:
    """Hand each coalesced write its result (on the loop's thread)."""
    for future, result, error in outcomes:
        if future.done():  # its caller was cancelled; the write happened all the same
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _coalesced(conn: sqlite3.Connection, jobs: list[_Job]) -> list[_Outcome]:
    """Several writes in one transaction, each in a savepoint of its own: one that
    fails is rolled back alone and gets its error; a failed COMMIT fails them all."""
    outcomes: list[_Outcome] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for work, action, future in jobs:
            conn.execute("SAVEPOINT job")
            try:
                result = work(conn)
            except Exception as exc:  # noqa: BLE001 - the job's own failure, handed to its caller
                if not _rolled_back_alone(conn):
                    return _all_failed(conn, jobs, exc, future)
                error = translate(exc, action) if isinstance(exc, sqlite3.Error) else exc
                outcomes.append((future, None, error))
            else:
                outcomes.append((future, result, None))
            conn.execute("RELEASE job")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:  # the transaction itself failed: nothing of it stands
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return [(future, None, translate(exc, action)) for _, action, future in jobs]
    return outcomes


def _rolled_back_alone(conn: sqlite3.Connection) -> bool:
    """Undo a failed job's savepoint; False when its error has ended the whole
    transaction already (SQLite does so on SQLITE_FULL, some I/O errors, an
    ``OR ROLLBACK`` conflict), which leaves no savepoint to go back to."""
    if not conn.in_transaction:
        return False
    try:
        conn.execute("ROLLBACK TO job")
    except sqlite3.Error:
        return False
    return True


def _all_failed(
    conn: sqlite3.Connection, jobs: list[_Job], exc: Exception, failed: asyncio.Future[object]
) -> list[_Outcome]:
    """One job's error ended the transaction: nothing of it stands, and every job gets
    that error, classified as the job's own would be (unavailable for a full disk),
    so that their callers back off and try again as they would for it."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # the error has left nothing to keep
            conn.execute("ROLLBACK")
    outcomes: list[_Outcome] = []
    for _, action, future in jobs:
        error: BaseException
        if isinstance(exc, sqlite3.Error):
            error = translate(exc, action)
            error.__cause__ = exc
        elif future is failed:
            error = exc
        else:
            error = StoreError(f"the store failed ({action}): a write beside it failed: {exc}")
            error.__cause__ = exc
        outcomes.append((future, None, error))
    return outcomes


class SQLiteEngine:
    """The writer thread and the reader threads of one database file.

    Writes are *coalesced*: those that arrive while the writer is busy with a
    transaction go together into the next one (group commit), each in a
    savepoint of its own, so a busy bridge pays one commit and one thread
    wake-up for an ingest batch, the recorder's results and a claim together.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float,
        read_only: bool,
        synchronous: str = "NORMAL",
        checkpoints: CheckpointMode = "auto",
        log_alert: int | None = None,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self.read_only = read_only
        self.checkpoint_mode = checkpoints
        # A log cut back only past the writer's own limit would stay over a lower
        # store.log_alert once a reader left: cut it back under half the alert too.
        self._truncate_over = (
            JOURNAL_SIZE_LIMIT if log_alert is None else min(JOURNAL_SIZE_LIMIT, log_alert // 2)
        )
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._jobs: list[_Job] = []  # writes waiting for the writer thread
        self._riders: list[_Job] = []  # lazy writes waiting for a transaction to ride in
        self._riders_due = False  # they waited long enough: the next drain takes them alone
        self._kick: asyncio.TimerHandle | None = None  # starts lazy writes nobody took
        self._draining = False  # a drain is queued or running on the writer thread
        self._checkpointer: Checkpointer | None = None

    def connect(self, *, check_same_thread: bool = True) -> sqlite3.Connection:
        """A new connection to the file (``mode=ro`` for a read-only store)."""
        try:
            if self.read_only:
                uri = f"file:{quote(str(self.path.absolute()))}?mode=ro"
                conn = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=check_same_thread
                )
            else:
                self.path.absolute().parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=check_same_thread
                )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            # Statement journals (a savepoint per grouped write) in memory, not in a
            # temporary file opened and unlinked for every few commits.
            conn.execute("PRAGMA temp_store = MEMORY")
            if not self.read_only:
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except OSError as exc:
            raise StoreError(f"cannot create the directory of the store: {exc}") from exc
        except sqlite3.Error as exc:
            raise translate(exc, "open") from exc
        return conn

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    @property
    def checkpoints(self) -> CheckpointStats | None:
        """What the WAL checkpointer has done; None while closed, read-only or external."""
        return None if self._checkpointer is None else self._checkpointer.stats

    @property
    def log_path(self) -> Path:
        """The write-ahead log beside the database file."""
        return self.path.with_name(self.path.name + "-wal")

    def log_bytes(self) -> int:
        """The size of the write-ahead log's file now (0 when there is none); blocks on disk."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Start the threads; ``prepare`` sets the writer connection up (on its thread)."""
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookbridge-store")
        self._readers = ThreadPoolExecutor(
            max_workers=_READERS, thread_name_prefix="hookbridge-store-read"
        )
        try:
            await self.call(lambda: self._open_writer(prepare))
        except BaseException:
            await self.close(None)
            raise

    def _open_writer(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        conn = self.connect()
        try:
            prepare(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise translate(exc, "open") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        if not self.read_only:
            # No COMMIT copies the log back: checkpoints run on a thread of their own
            # (bridge.store.sqlite.checkpoint), or in another process (external).
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            if self.checkpoint_mode == "auto":
                self._checkpointer = Checkpointer(self.connect, truncate_over=self._truncate_over)
                self._checkpointer.start()

    async def close(self, last: Callable[[sqlite3.Connection], None] | None) -> None:
        """Run ``last`` on the writer (best effort), then close every connection."""
        writer, readers = self._writer, self._readers
        self._writer = self._readers = None
        if readers is not None:
            readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._local = threading.local()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)  # a checkpoint under way ends first
        if writer is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(writer, lambda: self._close_writer(last))
        finally:
            writer.shutdown(wait=True)

    def _close_writer(self, last: Callable[[sqlite3.Connection], None] | None) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if last is not None:
                _transaction(conn, last, "close", write=True)
        except StoreError:
            pass  # closing anyway: what ``last`` tidies runs out on its own
        finally:
            conn.close()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread."""
        if self._writer is None:
            raise StoreError("the store is not open")
        # If the awaiting task is cancelled the transaction still runs to its end on
        # the thread; callers only act on what they saw committed, so that is safe.
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def write(
        self, work: Callable[[sqlite3.Connection], T], *, action: str, lazy: bool = False
    ) -> T:
        """Run ``work`` in a write transaction on the writer thread, with the writes
        that queue up beside it (see the class docstring).

        A ``lazy`` write does not wake the writer: it rides in the next transaction
        anything else starts, or starts one itself after :data:`LAZY_WAIT`. Attempt
        results are written so (they need no commit of their own, and at a steady
        rate an ingest commit comes within a few milliseconds); a lazy write still
        has its own savepoint, so its failure never touches the ingest beside it.
        """
        writer = self._writer
        if writer is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        with self._lock:
            (self._riders if lazy else self._jobs).append((work, action, future))
            start = not self._draining and not lazy
            if start:
                self._draining = True
        if start:
            writer.submit(self._drain, loop)
        elif lazy and self._kick is None:
            self._kick = loop.call_later(LAZY_WAIT, self._start_lazy, loop)
        # If the awaiting task is cancelled the write still runs to its end on the
        # thread; callers only act on what they saw committed, so that is safe.
        return cast("T", await future)

    def _start_lazy(self, loop: asyncio.AbstractEventLoop) -> None:
        """Lazy writes waited long enough: they go in the next transaction, alone if
        nothing else comes."""
        self._kick = None
        writer = self._writer
        with self._lock:
            self._riders_due = True
            start = bool(self._riders) and not self._draining and writer is not None
            if start:
                self._draining = True
        if start and writer is not None:
            writer.submit(self._drain, loop)

    def _take(self) -> list[_Job]:
        """Under the lock: the next transaction's jobs. Lazy ones ride with others, or
        go alone once they have waited :data:`LAZY_WAIT`."""
        jobs, self._jobs = self._jobs, []
        if self._riders and (jobs or self._riders_due):
            jobs = [*jobs, *self._riders]
            self._riders = []
            self._riders_due = False
        return jobs

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the writer thread: run queued writes until none is left."""
        while True:
            with self._lock:
                jobs = self._take()
                if not jobs:
                    self._draining = False
                    return
            try:
                conn = self._writer_conn()
                if len(jobs) == 1:
                    work, action, future = jobs[0]
                    try:
                        outcomes: list[_Outcome] = [
                            (future, _transaction(conn, work, action, True), None)
                        ]
                    except Exception as exc:  # noqa: BLE001 - handed to its caller
                        outcomes = [(future, None, exc)]
                else:
                    outcomes = _coalesced(conn, jobs)
            except Exception as exc:  # noqa: BLE001 - no writer connection: all fail alike
                outcomes = [(future, None, exc) for _, _, future in jobs]
            if self._checkpointer is not None:
                self._checkpointer.note_commit()
            loop.call_soon_threadsafe(_settle, outcomes)

    async def read(self, work: Callable[[sqlite3.Connection], T], *, action: str) -> T:
        """Run ``work`` as one read transaction on a reader thread's own connection."""
        readers = self._readers
        if readers is None:
            raise StoreError("the store is not open")
        return await asyncio.get_running_loop().run_in_executor(
            readers, lambda: _transaction(self._reader_conn(), work, action, False)
        )

    def _writer_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Closed from the closing thread once the readers have stopped.
            conn = self.connect(check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn
