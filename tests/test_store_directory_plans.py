"""The device directory stays cheap with many devices: its queries use indexes, never scan.

Each backend's planner is asked (EXPLAIN) how it runs a page of the directory
and a device's detail over a store holding many devices and events. None may
read the devices, presence or events tables whole: a page is one index range
(by id, or by state and id; for one account, the same within that account) and
a device's history one index probe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.core.presence import Presence
from bridge.store.postgres import directory as pg_directory
from bridge.store.sqlite import directory as sqlite_directory
from tests.support.plans import migrated_postgres, migrated_sqlite, sqlite_plan
from tests.support.postgres import PostgresDatabase

DEVICES = 20_000
EVENTS = 100_000
# The directory rows of those events (what ingest writes), as the migration fills them.
_FILL_DEVICES = """INSERT INTO devices (device_id, first_seen, last_event_id, last_event_type,
        last_event_at, last_received_at)
    SELECT device_id, min(received_at), max(id), 't', max(occurred_at), max(received_at)
    FROM events GROUP BY device_id"""
_SQLITE_DEVICES = _POSTGRES_DEVICES = _FILL_DEVICES


async def test_sqlite_directory_queries_use_indexes(tmp_path: Path) -> None:
    path = tmp_path / "plans.db"
    async with migrated_sqlite(path) as conn:
        conn.execute(
            f"""WITH RECURSIVE g (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {EVENTS})
            INSERT INTO events (id, type, source, device_id, occurred_at, received_at, body)
            SELECT 'evt_' || n, 't', 's', 'dev-' || (n % {DEVICES}), n, n, x'00' FROM g"""
        )
        conn.execute(
            f"""WITH RECURSIVE g (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {DEVICES})
            INSERT INTO presence (device_id, state, last_seen, changed_at, reason)
            SELECT 'dev-' || n,
              CASE WHEN n % 2 = 0 THEN 'online' ELSE 'offline' END, n, n, NULL FROM g"""
        )
        conn.execute(_SQLITE_DEVICES)
        conn.execute("ANALYZE")
        params = {"low": "dev-1", "high": "dev-2", "after": "dev-15", "n": 26}
        params |= {"after_account": "", "account": None}
        one = {**params, "account": "acme"}
        queries: list[tuple[str, Any]] = [
            (sqlite_directory._page_query(state=None, after=True, bounded=True), params),
            (
                sqlite_directory._page_query(state=Presence.ONLINE, after=False, bounded=False),
                {**params, "low": "", "state": "online"},
            ),
            (
                sqlite_directory._page_query(state=None, after=True, bounded=True, account=True),
                one,
            ),
            (
                sqlite_directory._page_query(
                    state=Presence.OFFLINE, after=True, bounded=False, account=True
                ),
                {**one, "state": "offline"},
            ),
            (sqlite_directory._SUMMARY, ("", "dev-7")),
            (sqlite_directory._EVENTS, ("", "dev-7", 20)),
            (sqlite_directory._DELIVERIES, ('["evt_1"]', None)),
            (sqlite_directory._DELIVERIES, ('["evt_1"]', "acme")),
        ]
        for query, bound in queries:
            plan, scans = sqlite_plan(conn, query, bound, _TABLES)
            assert not scans, (query, plan)


_TABLES = {"events", "presence", "deliveries", "devices", "d", "p"}  # stored tables, aliases


async def test_postgres_directory_queries_use_indexes(postgres: PostgresDatabase) -> None:
    async with migrated_postgres(postgres, "plans") as conn:
        await conn.execute(
            f"""INSERT INTO events (id, type, source, device_id, occurred_at, received_at, body)
            SELECT 'evt_' || n, 't', 's', 'dev-' || (n % {DEVICES}), n, n, '\\x00'
            FROM generate_series(1, {EVENTS}) AS n"""
        )
        await conn.execute(
            f"""INSERT INTO presence (device_id, state, last_seen, changed_at, reason)
            SELECT 'dev-' || n,
              CASE WHEN n % 2 = 0 THEN 'online' ELSE 'offline' END, n, n, NULL
            FROM generate_series(1, {DEVICES}) AS n"""
        )
        await conn.execute(_POSTGRES_DEVICES)
        await conn.execute("ANALYZE")
        queries: list[tuple[str, list[Any]]] = [
            (
                pg_directory._page_query(state=None, after=True, bounded=True),
                ["dev-1", 26, "dev-2", "dev-15", ""],
            ),
            (
                pg_directory._page_query(state=Presence.ONLINE, after=False, bounded=False),
                ["", 26, "online"],
            ),
            (
                pg_directory._page_query(state=Presence.OFFLINE, after=True, bounded=True),
                ["d", 26, "e", "dev-2", "", "offline"],
            ),
            (
                pg_directory._page_query(state=None, after=True, bounded=True, account=True),
                ["dev-1", 26, "dev-2", "dev-15", "acme"],
            ),
            (
                pg_directory._page_query(
                    state=Presence.ONLINE, after=False, bounded=False, account=True
                ),
                ["", 26, "acme", "online"],
            ),
            (pg_directory._SUMMARY, ["", "dev-7"]),
            (pg_directory._EVENTS, ["", "dev-7", 20]),
        ]
        for query, args in queries:
            plan = [row[0] for row in await conn.fetch("EXPLAIN " + query, *args)]
            scans = [step for step in plan if "Seq Scan" in step]
            assert not scans, (query, plan)
