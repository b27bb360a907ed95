"""A private PostgreSQL database per test run, on the server at 127.0.0.1:5432.

Each run (each xdist worker) creates ``hb_test_<random>`` and drops it at the
end, so runs never see each other's rows; tests inside a run isolate further
with a schema of their own (``?schema=`` on the store URL).
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg

from bridge.store.postgres.store import parse_postgres_url

__all__ = ["PostgresDatabase", "fetch"]

SERVER = os.environ.get("HOOKBRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
ADMIN_DB = "test"


class PostgresDatabase:
    """One throw-away database; ``url`` is its store URL."""

    def __init__(self) -> None:
        self.name = f"hb_test_{uuid.uuid4().hex[:12]}"
        self.url = f"{SERVER}/{self.name}"

    async def _admin(self, statement: str) -> None:
        conn = await asyncpg.connect(f"{SERVER}/{ADMIN_DB}", timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def create(self) -> PostgresDatabase:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        return self

    def drop(self) -> None:
        # FORCE: a bridge process killed with SIGKILL may leave a session behind.
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    def schema_url(self, prefix: str = "t") -> str:
        """The URL of a fresh, empty schema in this database (created on first open)."""
        return f"{self.url}?schema={prefix}_{uuid.uuid4().hex[:12]}"


async def fetch(url: str, query: str) -> list[asyncpg.Record]:
    """Look at a store's database with a separate plain connection, as an operator would."""
    dsn, schema, _ = parse_postgres_url(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()
