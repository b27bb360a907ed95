"""The SQLite store: the conformance suite on real files, plus what only SQLite has
(schema versions, pragmas, the one thread, read-only and full databases)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import StoreSettings
from bridge.core.events import Event
from bridge.errors import ConfigError, StoreError, StoreUnavailable
from bridge.store import open_store
from bridge.store.ids import new_delivery_id, new_delivery_ids
from bridge.store.rows import AttemptOutcome, DeliveryStatus, IngestResult
from bridge.store.sqlite import queries as sqlite_queries
from bridge.store.sqlite.schema import SCHEMA_VERSION
from bridge.store.sqlite.store import SQLiteStore, sqlite_path
from tests.store_contract import T0, MakeStore, StoreContract, accepted, attempt, make_event, opened
from tests.store_contract_leases import claim_all


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "hookbridge.db"


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    async with opened(SQLiteStore(db_path)) as store:
        yield store


@pytest.fixture
def make_store(db_path: Path) -> MakeStore:
    return lambda owner: SQLiteStore(db_path, owner=owner)


class TestSQLiteStoreContract(StoreContract):
    """The shared suite against a SQLite file."""


def _read(path: Path, query: str) -> list[tuple[object, ...]]:
    """Look at the file with a separate plain connection, as an operator would."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


async def test_opening_creates_directory_wal_file_and_records_schema_version(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    assert db_path.parent.is_dir()
    assert _read(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert [row[0] for row in _read(db_path, "SELECT version FROM schema_version")] == list(
        range(1, SCHEMA_VERSION + 1)
    )
    await sqlite_store.close()
    # Reopening applies nothing twice.
    again = SQLiteStore(db_path)
    await again.open()
    await again.close()
    assert len(_read(db_path, "SELECT version FROM schema_version")) == SCHEMA_VERSION


async def test_a_newer_schema_is_refused(db_path: Path, sqlite_store: SQLiteStore) -> None:
    await sqlite_store.close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    conn.close()
    newer = SQLiteStore(db_path)
    with pytest.raises(StoreError, match="newer"):
        await newer.open()
    with pytest.raises(StoreError, match="not open"):
        await newer.counts()


@pytest.mark.parametrize(("setting", "expected"), [("NORMAL", 1), ("FULL", 2)])
async def test_synchronous_and_connection_pragmas(
    tmp_path: Path, setting: str, expected: int
) -> None:
    settings = StoreSettings(url=f"sqlite:///{tmp_path}/s.db", synchronous=setting)
    store = open_store(settings, owner="bridge-a")
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        pragmas = await store._run(
            lambda conn: [
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("synchronous", "foreign_keys", "busy_timeout")
            ],
            action="test",
            write=False,
        )
    finally:
        await store.close()
    assert pragmas == [expected, 1, 5000]


async def test_all_database_work_runs_on_one_thread(sqlite_store: SQLiteStore) -> None:
    async def thread_of_a_call(n: int) -> int:
        await sqlite_store.ingest(
            [accepted(make_event(n), "crm")], [], now=T0, owner="a", lease_until=T0
        )
        return await sqlite_store._run(lambda _conn: threading.get_ident(), action="test")

    idents = await asyncio.gather(*(thread_of_a_call(n) for n in range(20)))
    assert len(set(idents)) == 1
    assert idents[0] != threading.get_ident()
    assert (await sqlite_store.counts())["events"] == 20


async def test_read_only_database_is_unavailable_for_writes(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    # Root ignores file modes, so the read-only case is produced honestly by
    # opening the file read-only (mode=ro): SQLite itself then refuses writes.
    await sqlite_store.ingest(
        [accepted(make_event(1), "crm")], [], now=T0, owner="a", lease_until=T0
    )
    reader = SQLiteStore(db_path, read_only=True)
    await reader.open()
    try:
        assert await reader.get_event(make_event(1).id) is not None
        assert not await reader.is_writable()
        with pytest.raises(StoreUnavailable, match="ingest"):
            await reader.ingest(
                [accepted(make_event(2), "crm")], [], now=T0, owner="a", lease_until=T0
            )
        with pytest.raises(StoreUnavailable):
            await reader.requeue("dlv_x", now=T0)
    finally:
        await reader.close()
    assert await sqlite_store.is_writable()


async def test_full_database_is_unavailable_and_recovers(sqlite_store: SQLiteStore) -> None:
    # max_page_count caps this connection's file size: SQLite answers exactly as
    # on a full disk (SQLITE_FULL), without filling the machine's disk.
    pages = await sqlite_store._run(
        lambda conn: conn.execute("PRAGMA page_count").fetchone()[0], action="test", write=False
    )
    await sqlite_store._run(
        lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"), action="test", write=True
    )
    batch = [accepted(make_event(i), "crm") for i in range(300)]
    with pytest.raises(StoreUnavailable, match="full"):
        await sqlite_store.ingest(batch, [], now=T0, owner="a", lease_until=T0)
    # The failed batch left nothing behind.
    assert (await sqlite_store.counts())["events"] == 0
    await sqlite_store._run(
        lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"), action="test", write=True
    )
    result = await sqlite_store.ingest(batch, [], now=T0, owner="a", lease_until=T0)
    assert result.stored == 300


async def test_other_sqlite_errors_are_store_errors(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(StoreError) as caught:
        await sqlite_store._run(lambda conn: conn.execute("SELECT * FROM nowhere"), action="test")
    assert not isinstance(caught.value, StoreUnavailable)
    assert isinstance(caught.value.__cause__, sqlite3.Error)


def test_store_urls(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///hookbridge.db") == Path("hookbridge.db")
    assert sqlite_path("sqlite:////var/lib/hookbridge/h.db") == Path("/var/lib/hookbridge/h.db")
    with pytest.raises(StoreError):
        sqlite_path("sqlite://")
    store = open_store(StoreSettings(url=f"sqlite:///{tmp_path}/x.db"), owner="bridge-a")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "x.db"
    # The PostgreSQL backend has its own tests; here only that the scheme is not refused.
    assert not isinstance(
        open_store(StoreSettings(url="postgresql://user:pw@127.0.0.1/hb"), owner="bridge-a"),
        SQLiteStore,
    )
    with pytest.raises(ConfigError) as caught:
        open_store(StoreSettings(url="sqlite://"), owner="bridge-a")
    assert "pw" not in str(caught.value)


_MILLIS = st.integers(min_value=0, max_value=(1 << 48) - 1)


@given(_MILLIS, _MILLIS, st.binary(min_size=10, max_size=10), st.binary(min_size=10, max_size=10))
def test_delivery_ids_sort_by_creation_time(
    first: int, second: int, entropy_a: bytes, entropy_b: bytes
) -> None:
    a = new_delivery_id(first / 1000, entropy_a)
    b = new_delivery_id(second / 1000, entropy_b)
    assert re.fullmatch(r"dlv_[0-9a-hjkmnp-tv-z]{26}", a)
    if first != second:
        assert (a < b) == (first < second)


def test_delivery_ids_of_one_batch_are_distinct_and_share_the_time() -> None:
    ids = new_delivery_ids(T0, 500)
    assert len(set(ids)) == 500
    assert {i[:14] for i in ids} == {new_delivery_id(T0)[:14]}
    assert new_delivery_ids(T0, 0) == []


async def test_two_instances_on_one_file_never_claim_the_same_delivery(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    items = [accepted(make_event(i, device=f"dev-{i % 5}"), "crm") for i in range(200)]
    await sqlite_store.ingest(items, [], now=T0, owner="a", lease_until=T0 - 1)
    other = SQLiteStore(db_path)
    await other.open()
    try:
        mine, theirs = await asyncio.gather(
            claim_all(sqlite_store, "a", rounds=100), claim_all(other, "b", rounds=100)
        )
    finally:
        await other.close()
    assert not set(mine) & set(theirs)
    assert len(mine) + len(theirs) == 200


async def test_heads_of_ordered_queues_are_named_at_ingest(sqlite_store: SQLiteStore) -> None:
    """The deliveries an ordered subscription may send at once, from memory: per device,
    the first one of the batch when nothing of that device is pending before it."""

    async def ingest(*events: Event) -> IngestResult:
        items = [accepted(event, "ordered", "plain") for event in events]
        return await sqlite_store.ingest(
            items, [], now=T0, owner="a", lease_until=T0 + 60, ordered={"ordered"}
        )

    def ordered_ids(result: IngestResult) -> list[str]:
        return [d.id for d in result.deliveries if d.subscription == "ordered"]

    anonymous = make_event(4)
    anonymous.data.pop("device_id")
    first = await ingest(
        make_event(1, device="d1"),
        make_event(2, device="d1"),
        make_event(3, device="d2"),
        anonymous,
    )
    d1_first, _d1_second, d2_first, no_device = ordered_ids(first)
    # Deliveries naming no device are not held back; the plain subscription has no heads.
    assert first.heads == {d1_first, d2_first, no_device}
    # d1 still has pending deliveries: its next one waits. d2's one was delivered: its
    # next one heads the queue again.
    d2_delivery = next(d for d in first.deliveries if d.id == d2_first)
    await sqlite_store.record_attempts(
        [(attempt(d2_delivery, at=T0 + 1, code=200), AttemptOutcome(DeliveryStatus.DELIVERED))],
        now=T0 + 1,
    )
    second = await ingest(make_event(5, device="d1"), make_event(6, device="d2"))
    assert second.heads == {ordered_ids(second)[1]}
    # The queue check is one probe of the partial device index, whatever the backlog.
    plan = await sqlite_store._run(
        lambda conn: [
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN " + sqlite_queries._QUEUE_WAITING, ("o", "d")
            )
        ],
        action="test",
        write=False,
    )
    assert plan == [
        "SEARCH deliveries USING INDEX deliveries_pending_device (subscription=? AND device_id=?)"
    ]
    # Without ordered subscriptions named, nothing is a head.
    plain = await sqlite_store.ingest(
        [accepted(make_event(7, device="d3"), "ordered")], [], now=T0, owner="a", lease_until=T0
    )
    assert plain.heads == frozenset()
