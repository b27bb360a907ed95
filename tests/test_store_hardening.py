"""Store behaviour under load and faults that only one backend can show directly:
transient refusals classified as unavailable, reads on their own connections,
retention in bounded chunks, and ordered claims that walk an index."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bridge.errors import StoreError, StoreUnavailable
from bridge.store.postgres import device as postgres_device
from bridge.store.postgres import queries as pg_sql
from bridge.store.postgres.connect import translate
from bridge.store.postgres.leases import PURGE_CHUNK as PG_CHUNK
from bridge.store.postgres.store import PostgresStore
from bridge.store.rows import Accepted, AttemptOutcome, AttemptRecord, DeliveryStatus
from bridge.store.sqlite import device as sqlite_device
from bridge.store.sqlite import queries as sqlite_sql
from bridge.store.sqlite.store import SQLiteStore
from tests.store_contract import T0, make_event, opened
from tests.support.postgres import PostgresDatabase

PENDING_BACKLOG = 50_000
DEVICES = 20


def _backlog(start: int, count: int) -> list[Accepted]:
    return [
        Accepted(make_event(i, device=f"dev-{i % DEVICES}"), ("crm",), T0)
        for i in range(start, start + count)
    ]


async def _fill(store: SQLiteStore | PostgresStore, count: int) -> None:
    for start in range(0, count, 5000):
        await store.ingest(
            _backlog(start, min(5000, count - start)), [], now=T0, owner="x", lease_until=T0 - 1
        )


# -- transient refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.LockNotAvailableError,
        asyncpg.exceptions.QueryCanceledError,
        asyncpg.exceptions.DeadlockDetectedError,
        asyncpg.exceptions.SerializationError,
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.ConnectionDoesNotExistError,
    ],
)
def test_transient_postgres_refusals_are_unavailable(error: type[Exception]) -> None:
    assert isinstance(translate(error("refused"), "ingest"), StoreUnavailable)


def test_a_refusal_of_the_data_itself_is_not_unavailable() -> None:
    found = translate(asyncpg.exceptions.UniqueViolationError("dup"), "ingest")
    assert isinstance(found, StoreError) and not isinstance(found, StoreUnavailable)


async def test_postgres_lock_timeout_is_unavailable_not_a_bad_batch(
    postgres: PostgresDatabase,
) -> None:
    url = postgres.schema_url() + "&lock_timeout=300ms"
    async with opened(PostgresStore(url)) as store:
        await _fill(store, 10)
        dsn = url.split("?", 1)[0]
        holder = await asyncpg.connect(dsn, server_settings={"search_path": store.schema})
        try:
            async with holder.transaction():
                await holder.execute("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(StoreUnavailable, match="lock timeout"):
                    await store.ingest(_backlog(100, 5), [], now=T0, owner="x", lease_until=T0)
        finally:
            await holder.close()
        result = await store.ingest(_backlog(100, 5), [], now=T0, owner="x", lease_until=T0)
        assert result.stored == 5


async def test_sqlite_busy_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    async with opened(SQLiteStore(path, busy_timeout=0.2)) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StoreUnavailable):
                await store.ingest(_backlog(0, 3), [], now=T0, owner="x", lease_until=T0)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert (await store.ingest(_backlog(0, 3), [], now=T0, owner="x", lease_until=T0)).stored


# -- reads on their own connections ---------------------------------------------------


async def test_sqlite_reads_do_not_wait_for_the_writer(tmp_path: Path) -> None:
    async with opened(SQLiteStore(tmp_path / "r.db")) as store:
        await _fill(store, 10)
        gate = threading.Event()
        # The writer thread is busy (a long commit, a purge chunk): reads still answer.
        busy = asyncio.ensure_future(store._run(lambda _conn: gate.wait(30), action="test"))
        try:
            counts = await asyncio.wait_for(store.counts(), 10)
            oldest = await asyncio.wait_for(store.oldest_pending(["crm"]), 10)
        finally:
            gate.set()
            await busy
        assert counts["pending"] == 10
        assert oldest == {"crm": T0}


async def test_postgres_reads_do_not_wait_for_the_writers(postgres: PostgresDatabase) -> None:
    async with opened(PostgresStore(postgres.schema_url() + "&pool_size=1")) as store:
        await _fill(store, 10)
        release = asyncio.Event()

        async def hold(_conn: Any) -> None:
            await asyncio.wait_for(release.wait(), 30)

        busy = asyncio.ensure_future(store._run(hold, action="test"))
        try:
            counts = await asyncio.wait_for(store.counts(), 10)
        finally:
            release.set()
            await busy
        assert counts["pending"] == 10


# -- retention in chunks ----------------------------------------------------------------


def _delivered(deliveries: list[Any]) -> list[tuple[AttemptRecord, AttemptOutcome]]:
    return [
        (
            AttemptRecord(d.id, 1, T0, 1.0, 200, None, None, d.lease_token),
            AttemptOutcome(DeliveryStatus.DELIVERED),
        )
        for d in deliveries
    ]


async def test_sqlite_purge_chunk_is_bounded(tmp_path: Path) -> None:
    async with opened(SQLiteStore(tmp_path / "p.db")) as store:
        result = await store.ingest(_backlog(0, 2500), [], now=T0, owner="x", lease_until=T0 + 9)
        await store.record_attempts(_delivered(result.deliveries), now=T0 + 1)
        done, removed = await store._run(
            lambda conn: sqlite_sql.purge_chunk(conn, T0 + 2, T0 + 2), action="test"
        )
        assert not done
        # One chunk of deliveries, no more (each a first success: its attempt on its row).
        assert removed == sqlite_sql.PURGE_CHUNK
        assert (await store.counts())["delivered"] == 2500 - sqlite_sql.PURGE_CHUNK


async def test_postgres_purge_chunk_is_bounded(postgres: PostgresDatabase) -> None:
    async with opened(PostgresStore(postgres.schema_url())) as store:
        result = await store.ingest(_backlog(0, 2500), [], now=T0, owner="x", lease_until=T0 + 9)
        await store.record_attempts(_delivered(result.deliveries), now=T0 + 1)
        done, removed = await store._run(
            lambda conn: pg_sql.purge_chunk(conn, T0 + 2, T0 + 2), action="test"
        )
        assert not done
        assert removed == PG_CHUNK
        assert (await store.counts())["delivered"] == 2500 - PG_CHUNK


# -- ordered claims walk an index -----------------------------------------------------


@pytest.mark.slow
async def test_sqlite_ordered_claim_uses_the_device_index_at_50000_pending(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    async with opened(SQLiteStore(path)) as store:
        await _fill(store, PENDING_BACKLOG)
        params = {"sub": "crm", "now": T0 + 1, "owner": "y", "stale": 30.0, "limit": 100}
        plan = await store._run(
            lambda conn: [
                row[3]
                for row in conn.execute(
                    "EXPLAIN QUERY PLAN " + sqlite_device.CLAIMABLE_ORDERED, params
                )
            ],
            action="test",
            write=False,
        )
        claimed = await store.claim_due(
            "crm", now=T0 + 1, owner="y", lease_until=T0 + 60, limit=100, ordered=True
        )
    # The deliveries are reached by walking the device index and then by key, never by a
    # range over the backlog (the due index) or a scan.
    assert any("deliveries_pending_device" in step for step in plan), plan
    assert "SEARCH d USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
    assert not [step for step in plan if "deliveries_due" in step or step.startswith("SCAN d ")], (
        plan
    )
    assert not [step for step in plan if step.startswith("SCAN deliveries")], plan
    # One head per device, each its device's oldest.
    assert sorted(d.event.data["seq"] for d in claimed) == list(range(DEVICES))


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found.extend(_plan_nodes(child))
    return found


@pytest.mark.slow
async def test_postgres_ordered_claim_uses_the_device_index_at_50000_pending(
    postgres: PostgresDatabase,
) -> None:
    url = postgres.schema_url()
    async with opened(PostgresStore(url)) as store:
        await _fill(store, PENDING_BACKLOG)
        dsn = url.split("?", 1)[0]
        conn = await asyncpg.connect(dsn, server_settings={"search_path": store.schema})
        try:
            await conn.execute("ANALYZE deliveries")  # what autovacuum does after a burst
            raw = await conn.fetchval(
                "EXPLAIN (FORMAT JSON) " + postgres_device.CLAIM_ORDERED,
                "crm",
                T0 + 1,
                "y",
                T0 + 60,
                100,
                30.0,
            )
        finally:
            await conn.close()
        claimed = await store.claim_due(
            "crm", now=T0 + 1, owner="y", lease_until=T0 + 60, limit=100, ordered=True
        )
    nodes = _plan_nodes(json.loads(raw)[0]["Plan"])
    on_deliveries = [
        n for n in nodes if n.get("Relation Name") == "deliveries" and "Scan" in n["Node Type"]
    ]
    # Reached by walking the device index and then by key: no range over the
    # backlog (the due index), no sequential or bitmap scan.
    used = {(n["Node Type"], n.get("Index Name")) for n in on_deliveries}
    allowed = {"deliveries_pending_device", "deliveries_pkey"}
    assert {index for _, index in used} <= allowed, used
    assert any(index == "deliveries_pending_device" for _, index in used), used
    assert sorted(d.event.data["seq"] for d in claimed) == list(range(DEVICES))
