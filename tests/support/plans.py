"""Query plans: what a store's planner does with a statement, for tests that show
a query walks an index instead of reading a table whole."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bridge.store.postgres.store import PostgresStore, parse_postgres_url
from bridge.store.sqlite.store import SQLiteStore
from tests.store_contract import opened
from tests.support.postgres import PostgresDatabase

__all__ = ["migrated_postgres", "migrated_sqlite", "sqlite_plan"]


def sqlite_plan(
    conn: sqlite3.Connection,
    query: str,
    params: Sequence[Any] | Mapping[str, Any],
    tables: Collection[str],
) -> tuple[list[str], list[str]]:
    """SQLite's plan of ``query``, and its steps that SCAN one of ``tables`` (stored
    tables or their aliases: not a CTE, a subquery or a constant row)."""
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, params)]
    scans = [step for step in plan if step.startswith("SCAN") and step.split()[1] in tables]
    return plan, scans


@contextlib.asynccontextmanager
async def migrated_postgres(
    postgres: PostgresDatabase, schema_name: str
) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a fresh schema the PostgreSQL store has migrated."""
    url = postgres.schema_url(schema_name)
    async with opened(PostgresStore(url)):
        pass
    dsn, schema, _ = parse_postgres_url(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def migrated_sqlite(path: Path) -> AsyncIterator[sqlite3.Connection]:
    """A plain connection to a new SQLite file the store has migrated."""
    async with opened(SQLiteStore(path)):
        pass
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()
