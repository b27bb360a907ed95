"""The ordered batch claim stays cheap with a large backlog: it walks indexes, never scans.

Each backend's planner is asked (EXPLAIN) how it runs ``claim_due(ordered=True,
per_device=k)`` over a store with many devices and many pending deliveries. It
may not read the deliveries (or events) table whole: devices are found by a
walk of the partial index ``deliveries_pending_device``, each device's first
``k`` by probes of the same index, and the rows themselves by key.
"""

from __future__ import annotations

from pathlib import Path

from bridge.store.postgres import batches as pg_batches
from bridge.store.sqlite import batches as sqlite_batches
from tests.support.plans import migrated_postgres, migrated_sqlite, sqlite_plan
from tests.support.postgres import PostgresDatabase

DEVICES = 2_000
PENDING = 60_000
DELIVERED = 60_000


async def test_sqlite_ordered_batch_claim_walks_indexes(tmp_path: Path) -> None:
    path = tmp_path / "plans.db"
    async with migrated_sqlite(path) as conn:
        total = PENDING + DELIVERED
        conn.execute(
            f"""WITH RECURSIVE g (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {total})
            INSERT INTO events (id, type, source, device_id, occurred_at, received_at, body)
            SELECT 'evt_' || n, 't', 's', 'dev-' || (n % {DEVICES}), n, n, x'00' FROM g"""
        )
        conn.execute(
            f"""INSERT INTO deliveries (id, event_id, subscription, device_id, status,
                next_attempt_at, created_at, updated_at)
            SELECT 'dlv_' || substr(id, 5), id, 'crm', device_id,
              CASE WHEN received_at > {DELIVERED} THEN 'pending' ELSE 'delivered' END,
              received_at, received_at, received_at
            FROM events"""
        )
        conn.execute("ANALYZE")
        params = {"sub": "crm", "now": 1e12, "owner": "x", "stale": 30.0, "limit": 500, "k": 10}
        query = sqlite_batches.CLAIMABLE_RUNS
        plan, scans = sqlite_plan(conn, query, params, _TABLES)
        assert not scans, plan
        assert any("deliveries_pending_device" in step for step in plan), plan
        # And it answers: the first 10 of every device, up to the limit.
        found = conn.execute(query, params).fetchall()
        assert len(found) == 500


_TABLES = {"events", "deliveries", "d", "e", "h", "n"}  # the stored tables and their aliases


async def test_postgres_ordered_batch_claim_walks_indexes(postgres: PostgresDatabase) -> None:
    async with migrated_postgres(postgres, "batchplans") as conn:
        total = PENDING + DELIVERED
        await conn.execute(
            f"""INSERT INTO events (id, type, source, device_id, occurred_at, received_at, body)
            SELECT 'evt_' || n, 't', 's', 'dev-' || (n % {DEVICES}), n, n, '\\x00'
            FROM generate_series(1, {total}) AS n"""
        )
        await conn.execute(
            f"""INSERT INTO deliveries (id, event_id, subscription, device_id, status,
                next_attempt_at, created_at, updated_at)
            SELECT 'dlv_' || substr(id, 5), id, 'crm', device_id,
              CASE WHEN received_at > {DELIVERED} THEN 'pending' ELSE 'delivered' END,
              received_at, received_at, received_at
            FROM events ORDER BY received_at"""
        )
        await conn.execute("ANALYZE")
        args = ["crm", 1e12, "x", 2e12, 500, 30.0, 10]
        plan = [row[0] for row in await conn.fetch("EXPLAIN " + pg_batches.CLAIM_RUNS, *args)]
        # (instances, one row per bridge instance, may well be read whole)
        scans = [s for s in plan if "Seq Scan on deliveries" in s or "Seq Scan on events" in s]
        assert not scans, plan
        assert any("deliveries_pending_device" in step for step in plan), plan
