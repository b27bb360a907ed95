"""SQLite checkpoints never hold up ingest: what a round does beside another process
that holds a read transaction on the file, the ``external`` mode, and the alert on
the log's size (bridge.store.sqlite.checkpoint, bridge.store.logsize).

Every reader here is a separate process (tests.support.sqlite_reader), so the
locks exercised are SQLite's own between processes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.store.logsize import LogAlarm, watch_log
from bridge.store.sqlite.checkpoint import Checkpointer, CheckpointStats, checkpoint_round
from bridge.store.sqlite.engine import SQLiteEngine
from bridge.store.sqlite.store import SQLiteStore
from tests.support.sqlite_reader import held_read
from tests.support.waiting import wait_until, wait_until_sync

ROW = 4000  # bytes per filler row: about one log page each


def _connect(path: Path, *, busy_ms: int = 5000) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    return conn


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """The only writer of ``t.db``, which, like the store's, never checkpoints itself."""
    conn = _connect(tmp_path / "t.db")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    try:
        yield conn
    finally:
        conn.close()


def _fill(conn: sqlite3.Connection, start: int, count: int) -> None:
    for k in range(start, start + count):  # one commit each, as the bridge's are
        conn.execute("INSERT INTO t (k, v) VALUES (?, zeroblob(?))", (k, ROW))


def _traced_checkpointer(path: Path) -> tuple[sqlite3.Connection, list[str]]:
    """A checkpointer that waits for no lock, and the statements it runs."""
    checkpointer = _connect(path, busy_ms=0)
    statements: list[str] = []
    checkpointer.set_trace_callback(statements.append)
    return checkpointer, statements


def _log_size(path: Path) -> int:
    log = path.with_name(path.name + "-wal")
    return log.stat().st_size if log.exists() else 0


def test_truncate_comes_only_after_a_passive_checkpoint_copied_every_frame(
    tmp_path: Path, writer: sqlite3.Connection
) -> None:
    path = tmp_path / "t.db"
    _fill(writer, 0, 50)
    checkpointer, statements = _traced_checkpointer(path)
    stats = CheckpointStats()
    with held_read(path, "SELECT count(*) FROM t", tmp_path / "reader.out") as reader:
        _fill(writer, 50, 50)  # frames the reader's snapshot does not see
        checkpoint_round(checkpointer, stats)
        # The reader still needs the database file as it was: those frames stay in the log.
        assert 0 < stats.checkpointed < stats.wal_frames
        assert statements == ["PRAGMA wal_checkpoint(PASSIVE)"]
        assert stats.truncations == stats.refused == 0
        assert reader.count_again() == (50, True)
        held_size = _log_size(path)
        reader.leave()
    statements.clear()
    checkpoint_round(checkpointer, stats, truncate_over=0)
    assert stats.checkpointed == stats.wal_frames > 0
    assert statements == ["PRAGMA wal_checkpoint(PASSIVE)", "PRAGMA wal_checkpoint(TRUNCATE)"]
    assert stats.truncations == 1
    assert held_size > 100 * ROW and _log_size(path) == 0
    checkpointer.close()


def test_a_short_log_copied_back_is_left_for_the_writer_to_start_over(
    tmp_path: Path, writer: sqlite3.Connection
) -> None:
    path = tmp_path / "t.db"
    _fill(writer, 0, 50)
    checkpointer, statements = _traced_checkpointer(path)
    stats = CheckpointStats()
    checkpoint_round(checkpointer, stats)
    assert stats.checkpointed == stats.wal_frames > 0
    assert statements == ["PRAGMA wal_checkpoint(PASSIVE)"]  # no TRUNCATE: under the limit
    size = _log_size(path)
    # Every frame was copied: the next commit writes the log from its beginning again.
    _fill(writer, 50, 1)
    assert _log_size(path) == size
    checkpointer.close()


def test_truncate_never_waits_for_a_reader_and_is_tried_again_without_a_commit(
    tmp_path: Path, writer: sqlite3.Connection
) -> None:
    path = tmp_path / "t.db"
    _fill(writer, 0, 50)
    # The connection waits a minute for locks: the checkpointer must not.
    checkpointer = Checkpointer(lambda: _connect(path, busy_ms=60_000), period=0.1, truncate_over=0)
    checkpointer.start()
    try:
        with held_read(path, "SELECT count(*) FROM t", tmp_path / "reader.out") as reader:
            # The snapshot holds every frame, so PASSIVE copies them all; TRUNCATE
            # then finds the reader on the log. Waiting for it would take a minute.
            checkpointer.note_commit()
            wait_until_sync(lambda: checkpointer.stats.refused >= 1, message="a refused truncate")
            assert checkpointer.stats.checkpointed == checkpointer.stats.wal_frames > 0
            assert checkpointer.stats.truncations == 0
            assert _log_size(path) > 0
            assert reader.count_again() == (50, True)
            # Nor does it keep the write lock: a writer that will not wait commits.
            writer.execute("PRAGMA busy_timeout = 0")
            _fill(writer, 50, 1)
            reader.leave()
        # No commit wakes it: the periodic round cuts the log back once the reader left.
        wait_until_sync(
            lambda: checkpointer.stats.truncations >= 1 and _log_size(path) == 0,
            message="the log truncated",
        )
        assert checkpointer.stats.failures == 0
    finally:
        checkpointer.stop()


def test_behind_a_writer_that_never_pauses_the_log_is_cut_back_at_the_pause(
    tmp_path: Path, writer: sqlite3.Connection
) -> None:
    path = tmp_path / "t.db"
    checkpointer = Checkpointer(lambda: _connect(path), interval=0.01, period=0.1, truncate_over=0)
    checkpointer.start()
    try:
        for k in range(3000):  # a backlog arriving: commit after commit, no pause
            _fill(writer, k, 1)
            checkpointer.note_commit()
        wait_until_sync(lambda: _log_size(path) == 0, message="the log cut back at the pause")
        assert checkpointer.stats.failures == 0
    finally:
        checkpointer.stop()
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 3000


async def test_external_mode_runs_no_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    engine = SQLiteEngine(path, busy_timeout=1.0, read_only=False, checkpoints="external")
    await engine.open(lambda conn: conn.execute("PRAGMA journal_mode = WAL"))
    try:
        assert engine.checkpoints is None
        assert "hookbridge-store-checkpoint" not in {t.name for t in threading.enumerate()}
        assert await engine.call(
            lambda: engine._writer_conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        )
        await engine.write(lambda c: c.execute("CREATE TABLE t (k, v)"), action="create")
        database_size = path.stat().st_size
        for k in range(1500):  # past SQLite's default of 1,000 pages for a COMMIT's checkpoint
            await engine.write(
                lambda c, k=k: c.execute("INSERT INTO t VALUES (?, zeroblob(?))", (k, ROW)),
                action="insert",
            )
        # Not one page was copied back into the database file: it is all in the log.
        assert path.stat().st_size == database_size
        assert engine.log_bytes() > 1500 * ROW
    finally:
        await engine.close(None)


def test_the_alarm_goes_once_per_crossing() -> None:
    alarm = LogAlarm(limit=100)
    sizes = [0, 50, 101, 500, 900, 100, 99, 150, 150, 20]
    assert [alarm.crossed(size) for size in sizes] == [
        False, False, True, False, False, False, False, True, False, False,
    ]  # fmt: skip


async def test_the_log_alert_fires_once_while_a_reader_stays_and_again_after_it_fell_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    limit = 256 * 1024
    store = SQLiteStore(path, log_alert=limit)
    await store.open()
    sizes: list[int] = []
    alerts: list[int] = []

    async def alerted(size: int) -> None:
        alerts.append(size)

    async def grow(rows: int) -> None:
        for _ in range(rows):
            await store._run(
                lambda c: c.execute("INSERT INTO filler (v) VALUES (zeroblob(?))", (ROW,)),
                action="fill",
            )

    await store._run(lambda c: c.execute("CREATE TABLE filler (v BLOB)"), action="create")
    stopping = asyncio.Event()
    watch = asyncio.create_task(
        watch_log(
            store,
            limit=limit,
            stopping=stopping,
            on_size=sizes.append,
            on_large=alerted,
            interval=0.02,
        )
    )
    try:
        for round_no in (1, 2):
            with held_read(path, "SELECT count(*) FROM filler", tmp_path / f"r{round_no}.out"):
                await grow(150)  # 600 KB of log the checkpointer cannot copy past the reader
                await wait_until(lambda n=round_no: len(alerts) == n, message="the alert")
                measured = len(sizes)
                await wait_until(lambda m=measured: len(sizes) >= m + 5, message="more sizes")
                assert len(alerts) == round_no  # measured past the limit again: no new alert
                assert all(size > limit for size in sizes[measured:])
            # The reader left: the log is cut back below the limit, which re-arms the alarm.
            await wait_until(lambda: sizes[-1] <= limit, message="the log cut back")
        assert all(size > limit for size in alerts)
    finally:
        stopping.set()
        await watch
        await store.close()


async def test_a_store_without_a_log_of_its_own_is_not_watched() -> None:
    class NoLog:
        async def log_bytes(self) -> int | None:
            return None

    stopping = asyncio.Event()
    sizes: list[int] = []

    async def never(_size: int) -> None:
        raise AssertionError("no alert without a log")

    # Returns by itself, without being stopped.
    await asyncio.wait_for(
        watch_log(NoLog(), limit=1, stopping=stopping, on_size=sizes.append, on_large=never), 10
    )
    assert sizes == []
