"""The PostgreSQL store: the shared durable outbox for several bridge instances.

Every instance holds an asyncpg connection pool on one database. Each public
method is one transaction on one pooled connection. Work is shared through
leases: ``claim_due`` picks due rows with ``FOR UPDATE SKIP LOCKED`` (two
instances claiming at once get disjoint rows, neither waits) and stamps them
with the claimer's name and a lease expiry; deliveries held by an instance
that was killed become claimable by the others when the lease runs out, and
at once when the killed instance itself starts again (opening for an owner
drops that owner's old leases). An ``ingest`` batch is one transaction of a
few array statements (``unnest``), so group commit costs one WAL flush and a
handful of round trips per batch, not per message.

URL: ``postgresql://user:password@host:5432/db``; libpq-style query options
asyncpg understands (``sslmode``, ``connect_timeout``…) pass through, and two
are ours: ``schema=name`` keeps the tables in that schema (created if needed;
default ``public``) and ``pool_size=N`` caps the pool (default 10).

asyncpg and socket errors are translated here: a refused or lost connection,
a read-only transaction (a hot standby), a full disk or too many connections
or a transient refusal (lock or statement timeout, deadlock, serialization
failure, shutdown) is :class:`StoreUnavailable` (the bridge stops acknowledging,
backs off and tries again); anything else is :class:`StoreError`. The password in the URL never
reaches a message or a repr.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import asyncpg

from bridge.config import StoreSettings, redact_url
from bridge.errors import StoreError
from bridge.store import statements as shared
from bridge.store.base import Store
from bridge.store.postgres import accounts, batches, catchup, directory, leases, ops, outbox
from bridge.store.postgres import queries as sql
from bridge.store.postgres.connect import FOREIGN_ERRORS, parse_postgres_url, translate
from bridge.store.postgres.schema import SCHEMA_VERSION, migrate
from bridge.store.statements import numbered as pg

__all__ = ["PostgresStore", "parse_postgres_url"]


T = TypeVar("T")

_READ_POOL_SIZE = 2


# Where the store's operations are written, one module per part (bridge.store.base).
_OPERATIONS = (ops, sql, directory, batches, outbox, catchup, accounts)


class PostgresStore(Store):
    """The durable outbox in a PostgreSQL database (see the module docstring).

    ``read_only=True`` opens every session with ``default_transaction_read_only``:
    reads work, writes raise :class:`StoreUnavailable`, exactly as against a hot
    standby. ``owner`` is the bridge instance the store is opened for; see
    ``Store.open`` for what opening does with it.
    """

    _sources: ClassVar[tuple[ModuleType, ...]] = _OPERATIONS

    def __init__(
        self,
        url: str,
        *,
        owner: str = "",
        read_only: bool = False,
        connect_timeout: float = 10.0,
        acquire_timeout: float = 30.0,
    ) -> None:
        self._dsn, self.schema, self.pool_size = parse_postgres_url(url)
        self.url = redact_url(url)
        self.owner = owner
        self.read_only = read_only
        self.connect_timeout = connect_timeout
        self.acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None
        # Reads (dashboard, metrics, API, next-due lookups) on connections of their
        # own, so a slow count never waits for, nor holds, a writer connection.
        self._read_pool: asyncpg.Pool | None = None

    @classmethod
    def from_settings(cls, settings: StoreSettings, *, owner: str = "") -> PostgresStore:
        store = cls(settings.url, owner=owner)
        store.takeover_after = settings.takeover_after
        return store

    def __repr__(self) -> str:
        return (
            f"PostgresStore(url={self.url!r}, schema={self.schema!r}, read_only={self.read_only})"
        )

    # -- connections ------------------------------------------------------------------

    async def _run(
        self,
        work: Callable[[Any], Awaitable[T]],
        *,
        action: str,
        write: bool = True,
        lazy: bool = False,  # every transaction has its own connection here: nothing to ride in
    ) -> T:
        """Run ``work`` as one transaction on a pooled connection (reads on the read pool)."""
        pool = self._pool if write else self._read_pool
        if pool is None:
            raise StoreError("the store is not open")
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                # Reads get one snapshot for all their queries (counts add up).
                isolation = "read_committed" if write else "repeatable_read"
                async with conn.transaction(isolation=isolation, readonly=not write):
                    return await work(conn)
        except FOREIGN_ERRORS as exc:
            raise translate(exc, action) from exc

    async def _create_pool(self, size: int, *, read_only: bool) -> asyncpg.Pool:
        settings = {"search_path": self.schema, "application_name": "hookbridge"}
        if read_only:
            settings["default_transaction_read_only"] = "on"
        try:
            return await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=size,
                timeout=self.connect_timeout,
                server_settings=settings,
            )
        except FOREIGN_ERRORS as exc:
            raise translate(exc, "open") from exc

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = await self._create_pool(self.pool_size, read_only=self.read_only)
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                await self._prepare(conn)
            self._read_pool = await self._create_pool(_READ_POOL_SIZE, read_only=True)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, FOREIGN_ERRORS):
                raise translate(exc, "open") from exc
            raise
        self._pool = pool

    async def _prepare(self, conn: Any) -> None:
        """Bring the schema to the current version; drop this owner's old leases."""
        if self.read_only:
            found = await conn.fetchval(
                "SELECT to_regclass('schema_version') IS NOT NULL"
                " AND (SELECT max(version) FROM schema_version) = $1",
                SCHEMA_VERSION,
            )
            if not found:
                raise StoreError(f"the database is not at schema version {SCHEMA_VERSION}")
            return
        await migrate(conn, self.schema)
        if self.owner:
            # Without this a restarted instance would wait for its own work.
            await conn.execute(pg(shared.RELEASE_OWNER), self.owner)
            await conn.execute(leases.HEARTBEAT, self.owner)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        read_pool, self._read_pool = self._read_pool, None
        if pool is None:
            return
        try:
            if self.owner and not self.read_only:
                # Leaving: our leases go back at once and our heartbeat row goes.
                with contextlib.suppress(*FOREIGN_ERRORS):
                    async with pool.acquire(timeout=self.acquire_timeout) as conn:
                        await conn.execute(pg(shared.RELEASE_OWNER), self.owner)
                        await conn.execute(leases.FORGET_INSTANCE, self.owner)
            if read_pool is not None:
                await read_pool.close()
            await pool.close()
        except FOREIGN_ERRORS as exc:
            raise translate(exc, "close") from exc
