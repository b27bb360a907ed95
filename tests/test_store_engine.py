"""The SQLite writer's group commit: writes queued behind a busy writer share one
transaction, each in a savepoint; one that fails takes nothing else with it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.errors import StoreError, StoreUnavailable
from bridge.store.sqlite.checkpoint import JOURNAL_SIZE_LIMIT
from bridge.store.sqlite.engine import SQLiteEngine
from tests.support.waiting import wait_until


def _prepare(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY)")


async def _engine(path: Path, *, read_only: bool = False) -> SQLiteEngine:
    engine = SQLiteEngine(path, busy_timeout=1.0, read_only=read_only)
    await engine.open(_prepare if not read_only else lambda _conn: None)
    return engine


async def test_queued_writes_share_a_commit_and_a_failing_one_is_rolled_back_alone(
    tmp_path: Path,
) -> None:
    engine = await _engine(tmp_path / "s.db")
    begins: list[str] = []
    await engine.call(
        lambda: engine._writer_conn().set_trace_callback(
            lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None
        )
    )

    def insert(k: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t (k) VALUES (?)", (k,))
            if k == 13:
                raise ValueError("thirteen")  # after its insert: the savepoint undoes it
            return k

        return work  # type: ignore[return-value]

    results = await asyncio.gather(
        *(engine.write(insert(k), action="insert") for k in range(40)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], ValueError)
    assert [r for r in results if not isinstance(r, BaseException)] == [
        k for k in range(40) if k != 13
    ]
    stored = await engine.read(lambda c: [r[0] for r in c.execute("SELECT k FROM t")], action="r")
    assert sorted(stored) == [k for k in range(40) if k != 13]
    assert 1 <= len(begins) < 40  # queued behind the first, the rest went together
    await engine.close(None)


async def test_a_commit_the_store_refuses_fails_every_write_in_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await (await _engine(path)).close(None)
    engine = await _engine(path, read_only=True)

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k) VALUES (1)")

    results = await asyncio.gather(
        *(engine.write(insert, action="insert") for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    await engine.close(None)


async def _queued_behind_a_busy_writer(
    engine: SQLiteEngine, works: list[Callable[[sqlite3.Connection], object]]
) -> list[object]:
    """Run ``works`` as one coalesced transaction: the writer is held on a first write
    until all of them are queued, so they go together into the next one."""
    gate = threading.Event()
    first = asyncio.create_task(engine.write(lambda _c: gate.wait(10), action="hold"))
    await wait_until(lambda: engine._draining, message="the writer busy")
    tasks = [asyncio.create_task(engine.write(work, action="job")) for work in works]
    await wait_until(lambda: len(engine._jobs) == len(works), message="every write queued")
    gate.set()
    await first
    return list(await asyncio.gather(*tasks, return_exceptions=True))


@pytest.mark.parametrize(
    ("statement", "unavailable", "text"),
    [
        # Past max_page_count SQLite answers SQLITE_FULL and rolls the whole transaction back.
        ("INSERT INTO t (k, v) VALUES (1000, zeroblob(200000))", True, "full"),
        # OR ROLLBACK: a conflict ends the whole transaction, whatever savepoint is open.
        ("INSERT OR ROLLBACK INTO t (k) VALUES (1)", False, "UNIQUE constraint failed"),
    ],
)
async def test_a_job_whose_error_ends_the_transaction_hands_that_error_to_every_job(
    tmp_path: Path, statement: str, unavailable: bool, text: str
) -> None:
    engine = await _engine(tmp_path / "s.db")
    await engine.call(lambda: engine._writer_conn().execute("ALTER TABLE t ADD COLUMN v BLOB"))
    await engine.write(lambda c: c.execute("INSERT INTO t (k) VALUES (1)"), action="seed")
    pages = await engine.call(
        lambda: engine._writer_conn().execute("PRAGMA page_count").fetchone()[0]
    )
    await engine.call(lambda: engine._writer_conn().execute(f"PRAGMA max_page_count = {pages + 8}"))

    def insert(k: int) -> Callable[[sqlite3.Connection], object]:
        return lambda conn: conn.execute("INSERT INTO t (k) VALUES (?)", (k,))

    works = [insert(10), insert(11), lambda conn: conn.execute(statement), insert(12)]
    results = await _queued_behind_a_busy_writer(engine, works)
    assert all(isinstance(r, StoreError) for r in results), results
    for result in results:
        assert isinstance(result, StoreUnavailable) == unavailable, result
        assert text in str(result) and "savepoint" not in str(result), result
    # Nothing of the transaction stands, and the writer goes on.
    stored = await engine.read(lambda c: [r[0] for r in c.execute("SELECT k FROM t")], action="r")
    assert stored == [1]
    await engine.write(insert(13), action="after")
    await engine.close(None)


async def test_a_cancelled_caller_does_not_stop_its_write(tmp_path: Path) -> None:
    engine = await _engine(tmp_path / "s.db")

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k) VALUES (7)")

    task = asyncio.create_task(engine.write(insert, action="insert"))
    await asyncio.sleep(0)  # the task runs up to its await: the write is queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The next write runs after it on the one writer thread: by then it is committed.
    await engine.write(lambda c: None, action="noop")
    stored = await engine.read(lambda c: [r[0] for r in c.execute("SELECT k FROM t")], action="r")
    assert stored == [7]
    await engine.close(None)


async def test_wal_checkpoints_run_off_the_writer_and_stop_with_the_store(tmp_path: Path) -> None:
    engine = await _engine(tmp_path / "s.db")
    autocheckpoint = await engine.call(
        lambda: engine._writer_conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    )
    # No COMMIT copies the log back: the checkpointer does (tests/test_store_checkpoints.py).
    assert autocheckpoint == 0
    limit = await engine.call(
        lambda: engine._writer_conn().execute("PRAGMA journal_size_limit").fetchone()[0]
    )
    assert limit == JOURNAL_SIZE_LIMIT  # a log the writer starts over is cut back
    for k in range(50):
        await engine.write(
            lambda conn, k=k: conn.execute("INSERT INTO t (k) VALUES (?)", (k,)), action="insert"
        )
    stats = engine.checkpoints
    assert stats is not None
    # Every frame copied back by a PASSIVE checkpoint; a log this short is not emptied
    # but started over by the writer's next commit (the file reused, not grown).
    rounds = stats.runs  # the second round from now began after the last commit
    await wait_until(
        lambda: stats.runs >= rounds + 2 and stats.checkpointed == stats.wal_frames > 0,
        message="the log checkpointed",
    )
    size = engine.log_bytes()
    await engine.write(lambda conn: conn.execute("INSERT INTO t (k) VALUES (50)"), action="insert")
    assert engine.log_bytes() == size
    assert stats.truncations == 0
    assert stats.failures == 0
    await engine.close(None)
    assert engine.checkpoints is None
    assert "hookbridge-store-checkpoint" not in {t.name for t in threading.enumerate()}


async def test_a_read_only_engine_runs_no_checkpointer(tmp_path: Path) -> None:
    await (await _engine(tmp_path / "s.db")).close(None)
    engine = await _engine(tmp_path / "s.db", read_only=True)
    assert engine.checkpoints is None
    await engine.close(None)
