"""A store from before the device directory: opening it fills the directory from the
events and presence rows already stored (schema step 6), in both backends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

from bridge.core.presence import Presence
from bridge.store.base import Store
from bridge.store.postgres import schema as pg_schema
from bridge.store.postgres.store import PostgresStore, parse_postgres_url
from bridge.store.rows import DeviceSummary
from bridge.store.sqlite import schema as sqlite_schema
from bridge.store.sqlite.store import SQLiteStore
from tests.store_contract import opened
from tests.support.postgres import PostgresDatabase

STEP = 6  # the directory's step: the database is one step behind it
EVENTS = [
    # arrival order: id, type, device, occurred_at, received_at
    ("evt_1", "device.online", "pump-1", 100.0, 101.0),
    ("evt_2", "session.started", "pump-1", 102.0, 103.0),
    ("evt_3", "session.started", None, 104.0, 105.0),
    ("evt_4", "session.started", "cam-2", 106.0, 107.0),
]
PRESENCE = [
    ("pump-1", "online", 103.0, 101.0, None),
    ("gone-3", "offline", 50.0, 60.0, "heartbeat_timeout"),  # its events were purged
]
INSERT_EVENT = """INSERT INTO events (id, type, source, device_id, occurred_at, received_at, body)
    VALUES ({})"""


async def _directory(store: Store) -> dict[str, DeviceSummary]:
    page, cursor = await store.list_devices(state=None, prefix=None, cursor=None, limit=10)
    assert cursor is None
    return {device.device_id: device for device in page}


async def _check(store: Store) -> None:
    found = await _directory(store)
    assert list(found) == ["cam-2", "gone-3", "pump-1"]
    pump = found["pump-1"]
    assert pump.state is Presence.ONLINE
    assert pump.last_event is not None
    assert (pump.last_event.id, pump.last_event.type) == ("evt_2", "session.started")
    assert (pump.last_event.timestamp, pump.last_event.received_at) == (102.0, 103.0)
    cam = found["cam-2"]
    assert (cam.state, cam.last_seen) == (None, 107.0)
    gone = found["gone-3"]
    assert (gone.state, gone.reason, gone.last_event) == (
        Presence.OFFLINE,
        "heartbeat_timeout",
        None,
    )
    detail = await store.get_device("pump-1", events=5)
    assert detail is not None
    assert [e.event.id for e in detail.events] == ["evt_2", "evt_1"]


async def test_sqlite_fills_the_directory_when_it_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    try:
        for version, statements in enumerate(sqlite_schema.MIGRATIONS[: STEP - 1], start=1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, 0)", (version,))
        for event_id, kind, device, occurred, received in EVENTS:
            conn.execute(
                INSERT_EVENT.format("?, ?, 's', ?, ?, ?, x'00'"),
                (event_id, kind, device, occurred, received),
            )
        conn.executemany("INSERT INTO presence VALUES (?, ?, ?, ?, ?)", PRESENCE)
        conn.commit()
    finally:
        conn.close()
    async with opened(SQLiteStore(path)) as store:
        await _check(store)


async def test_postgres_fills_the_directory_when_it_upgrades(postgres: PostgresDatabase) -> None:
    url = postgres.schema_url("upgrade")
    dsn, schema, _ = parse_postgres_url(url)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {pg_schema.quote_ident(schema)}")
        await conn.execute(f"SET search_path = {pg_schema.quote_ident(schema)}")
        await conn.execute(pg_schema._VERSION_TABLE)
        for version, statements in enumerate(pg_schema.MIGRATIONS[: STEP - 1], start=1):
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version VALUES ($1, 0)", version)
        for row in EVENTS:
            await conn.execute(INSERT_EVENT.format("$1, $2, 's', $3, $4, $5, '\\x00'"), *row)
        await conn.executemany("INSERT INTO presence VALUES ($1, $2, $3, $4, $5)", PRESENCE)
    finally:
        await conn.close()
    async with opened(PostgresStore(url)) as store:
        await _check(store)
