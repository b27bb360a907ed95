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
is :class:`StoreUnavailable` (the bridge stops acknowledging and reports not
ready); anything else is :class:`StoreError`. The password in the URL never
reaches a message or a repr.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bridge.config import StoreSettings, redact_url
from bridge.errors import StoreError, StoreUnavailable
from bridge.events import Event
from bridge.presence import PresenceState
from bridge.store import common
from bridge.store import postgres_device as device
from bridge.store import postgres_queries as sql
from bridge.store.base import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    IngestResult,
    PresencePolicy,
    Rejection,
    SubscriptionState,
)
from bridge.store.postgres_schema import SCHEMA_VERSION, migrate

__all__ = ["PostgresStore", "parse_postgres_url"]

T = TypeVar("T")

# SQLSTATE classes and codes that mean "cannot write now", not "this request is wrong":
# 08 connection exceptions, 53 insufficient resources (53100 disk full, 53300 too
# many connections), 57P01-57P03 shutdown / starting up, 25006 read-only transaction.
_UNAVAILABLE_CLASSES = ("08", "53")
_UNAVAILABLE_CODES = ("25006", "57P01", "57P02", "57P03")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_OUR_OPTIONS = ("schema", "pool_size")


def parse_postgres_url(url: str) -> tuple[str, str, int]:
    """Split a store URL into (the DSN for asyncpg, schema, pool size)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.netloc:
        raise StoreError("a PostgreSQL store URL looks like postgresql://user@host:5432/db")
    options = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in options if key in _OUR_OPTIONS}
    schema = ours.get("schema", "public")
    if not _SCHEMA_NAME.match(schema):
        raise StoreError("store.url: schema must be a plain SQL name (letters, digits, _)")
    pool_text = ours.get("pool_size", "10")
    if not pool_text.isdigit() or not 1 <= int(pool_text) <= 1000:
        raise StoreError("store.url: pool_size must be a whole number from 1 to 1000")
    rest = urlencode([(k, v) for k, v in options if k not in _OUR_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), schema, int(pool_text)


def _translate(exc: BaseException, action: str) -> StoreError:
    text = str(exc) or type(exc).__name__
    code = getattr(exc, "sqlstate", None) or ""
    unavailable = (
        isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresConnectionError))
        or code.startswith(_UNAVAILABLE_CLASSES)
        or code in _UNAVAILABLE_CODES
        # The pool or connection was closed under us (e.g. the server went away).
        or (isinstance(exc, asyncpg.InterfaceError) and "closed" in text.lower())
    )
    if unavailable:
        return StoreUnavailable(f"the store cannot take writes ({action}): {text}")
    return StoreError(f"the store failed ({action}): {text}")


_FOREIGN_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


_INBOUND_IDS_TABLE = """CREATE TABLE IF NOT EXISTS inbound_ids (
    source TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (source, msg_id)
)"""
# Inserts a new id, or renews one whose time ran out; an unexpired one returns no row.
_REMEMBER_INBOUND_ID = """INSERT INTO inbound_ids (source, msg_id, expires_at) VALUES ($1, $2, $3)
    ON CONFLICT (source, msg_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE inbound_ids.expires_at < $4
    RETURNING 1"""


class PostgresStore:
    """The durable outbox in a PostgreSQL database (see the module docstring).

    ``read_only=True`` opens every session with ``default_transaction_read_only``:
    reads work, writes raise :class:`StoreUnavailable`, exactly as against a hot
    standby. ``owner`` is the bridge instance the store is opened for; see
    ``Store.open`` for what opening does with it.
    """

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
        self._inbound_table_ready = False

    @classmethod
    def from_settings(cls, settings: StoreSettings, *, owner: str = "") -> PostgresStore:
        return cls(settings.url, owner=owner)

    def __repr__(self) -> str:
        return (
            f"PostgresStore(url={self.url!r}, schema={self.schema!r}, read_only={self.read_only})"
        )

    # -- connections ------------------------------------------------------------------

    async def _run(
        self, work: Callable[[Any], Awaitable[T]], *, action: str, write: bool = True
    ) -> T:
        """Run ``work`` as one transaction on a pooled connection."""
        pool = self._pool
        if pool is None:
            raise StoreError("the store is not open")
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                # Reads get one snapshot for all their queries (counts add up).
                isolation = "read_committed" if write else "repeatable_read"
                async with conn.transaction(isolation=isolation, readonly=not write):
                    return await work(conn)
        except _FOREIGN_ERRORS as exc:
            raise _translate(exc, action) from exc

    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = {"search_path": self.schema, "application_name": "hookbridge"}
        if self.read_only:
            settings["default_transaction_read_only"] = "on"
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                server_settings=settings,
            )
        except _FOREIGN_ERRORS as exc:
            raise _translate(exc, "open") from exc
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                await self._prepare(conn)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, _FOREIGN_ERRORS):
                raise _translate(exc, "open") from exc
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
            # Without this a restarted instance would wait a whole lease for its own work.
            await conn.execute(sql.RELEASE_OWNER, self.owner)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except _FOREIGN_ERRORS as exc:
                raise _translate(exc, "close") from exc

    # -- the hot path -----------------------------------------------------------------

    async def ingest(
        self,
        accepted: Sequence[Accepted],
        rejected: Sequence[Rejection],
        *,
        now: float,
        owner: str,
        lease_until: float,
        presence: PresencePolicy | None = None,
    ) -> IngestResult:
        return await self._run(
            lambda conn: sql.ingest(
                conn,
                accepted=accepted,
                rejected=rejected,
                now=now,
                owner=owner,
                lease_until=lease_until,
                presence=presence,
            ),
            action="ingest",
        )

    async def claim_presence_timeouts(
        self,
        *,
        now: float,
        policy: PresencePolicy,
        owner: str,
        lease_until: float,
        limit: int,
    ) -> IngestResult:
        async def work(conn: Any) -> IngestResult:
            announced = await device.timed_out(conn, policy, now, limit)
            fresh, deliveries = await sql.store_items(
                conn, announced, now=now, owner=owner, lease_until=lease_until
            )
            return IngestResult(deliveries, stored=len(fresh), duplicates=0)

        return await self._run(work, action="claim_presence_timeouts")

    async def get_presence(self, device_id: str) -> PresenceState | None:
        async def work(conn: Any) -> PresenceState | None:
            row = await conn.fetchrow(device.GET_PRESENCE, device_id)
            return None if row is None else common.presence_from_row(row)

        return await self._run(work, action="get_presence", write=False)

    async def claim_due(
        self,
        subscription: str,
        *,
        now: float,
        owner: str,
        lease_until: float,
        limit: int,
        ordered: bool = False,
    ) -> list[Delivery]:
        query = device.CLAIM_ORDERED if ordered else sql.CLAIM

        async def work(conn: Any) -> list[Delivery]:
            rows = await conn.fetch(query, subscription, now, owner, lease_until, limit)
            return [common.delivery_from_row(row) for row in rows]

        return await self._run(work, action="claim_due")

    async def next_due_at(self, subscription: str, *, ordered: bool = False) -> float | None:
        query = device.NEXT_DUE_ORDERED if ordered else sql.NEXT_DUE

        async def work(conn: Any) -> float | None:
            found = await conn.fetchval(query, subscription)
            return None if found is None else float(found)

        return await self._run(work, action="next_due_at", write=False)

    async def record_attempts(
        self, results: Sequence[tuple[AttemptRecord, AttemptOutcome]], *, now: float
    ) -> None:
        await self._run(
            lambda conn: sql.record_attempts(conn, results, now), action="record_attempts"
        )

    async def release(self, delivery_ids: Sequence[str]) -> None:
        if not delivery_ids:
            return
        ids = list(delivery_ids)
        await self._run(lambda conn: conn.execute(sql.RELEASE, ids), action="release")

    # -- reading ----------------------------------------------------------------------

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        async def work(conn: Any) -> Delivery | None:
            row = await conn.fetchrow(sql.GET_DELIVERY, delivery_id)
            return None if row is None else common.delivery_from_row(row)

        return await self._run(work, action="get_delivery", write=False)

    async def attempts(self, delivery_id: str) -> list[AttemptRecord]:
        async def work(conn: Any) -> list[AttemptRecord]:
            return [AttemptRecord(*row) for row in await conn.fetch(sql.ATTEMPTS, delivery_id)]

        return await self._run(work, action="attempts", write=False)

    async def get_event(self, event_id: str) -> Event | None:
        async def work(conn: Any) -> Event | None:
            body = await conn.fetchval(sql.GET_EVENT, event_id)
            return None if body is None else common.event_from_body(body)

        return await self._run(work, action="get_event", write=False)

    async def queue_depth(self, subscription: str) -> int:
        async def work(conn: Any) -> int:
            return int(await conn.fetchval(sql.QUEUE_DEPTH, subscription))

        return await self._run(work, action="queue_depth", write=False)

    async def subscription_states(self) -> dict[str, SubscriptionState]:
        async def work(conn: Any) -> dict[str, SubscriptionState]:
            return {
                row[0]: common.subscription_state_from_row(row)
                for row in await conn.fetch(sql.SUBSCRIPTION_STATES)
            }

        return await self._run(work, action="subscription_states", write=False)

    async def list_rejected(self, *, limit: int) -> list[Rejection]:
        async def work(conn: Any) -> list[Rejection]:
            rows = await conn.fetch(sql.LIST_REJECTED, limit)
            return [common.rejection_from_row(row) for row in rows]

        return await self._run(work, action="list_rejected", write=False)

    async def counts(self) -> dict[str, int]:
        async def work(conn: Any) -> dict[str, int]:
            return common.delivery_counts(
                await conn.fetch(sql.COUNT_BY_STATUS),
                events=await conn.fetchval(sql.COUNT_EVENTS),
                rejected=await conn.fetchval(sql.COUNT_REJECTED),
            )

        return await self._run(work, action="counts", write=False)

    async def list_deliveries(
        self,
        *,
        subscription: str | None,
        status: DeliveryStatus | None,
        since: float | None,
        until: float | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Delivery], str | None]:
        common.check_page_limit(limit)
        # Delivery ids sort by creation time (COLLATE "C"), so the key alone pages.
        filters = common.delivery_filters(
            subscription=subscription, status=status, since=since, until=until, cursor=cursor
        )
        query, params = sql.list_deliveries_query(filters, limit=limit + 1)

        async def work(conn: Any) -> list[Delivery]:
            return [common.delivery_from_row(row) for row in await conn.fetch(query, *params)]

        rows = await self._run(work, action="list_deliveries", write=False)
        return common.page_and_cursor(rows, limit)

    # -- operator and housekeeping writes ---------------------------------------------

    async def save_subscription_state(self, state: SubscriptionState) -> None:
        params = common.subscription_state_values(state)
        await self._run(
            lambda conn: conn.execute(sql.SAVE_SUBSCRIPTION_STATE, *params),
            action="save_subscription_state",
        )

    async def requeue(self, delivery_id: str, *, now: float) -> bool:
        async def work(conn: Any) -> bool:
            return sql.rowcount(await conn.execute(sql.REQUEUE, now, delivery_id)) > 0

        return await self._run(work, action="requeue")

    async def create_deliveries(
        self, event: Event, subscriptions: Sequence[str], *, now: float
    ) -> list[Delivery]:
        return await self._run(
            lambda conn: sql.create_deliveries(conn, event, subscriptions, now),
            action="create_deliveries",
        )

    async def purge(self, *, delivered_before: float, dead_before: float) -> int:
        return await self._run(
            lambda conn: sql.purge(conn, delivered_before, dead_before), action="purge"
        )

    async def expire_older_than(self, *, occurred_before: float, now: float) -> int:
        async def work(conn: Any) -> int:
            return sql.rowcount(await conn.execute(sql.EXPIRE, now, occurred_before))

        return await self._run(work, action="expire_older_than")

    async def remember_inbound_id(
        self, source: str, msg_id: str, *, now: float, ttl: float
    ) -> bool:
        async def work(conn: Any) -> bool:
            # Created on first use: a side table of the inbound feature, outside the outbox schema.
            if not self._inbound_table_ready:
                await conn.execute(_INBOUND_IDS_TABLE)
            await conn.execute("DELETE FROM inbound_ids WHERE expires_at < $1", now)
            inserted = await conn.fetchval(_REMEMBER_INBOUND_ID, source, msg_id, now + ttl, now)
            return inserted is not None

        remembered = await self._run(work, action="remember_inbound_id")
        self._inbound_table_ready = True
        return remembered

    async def confirm_inbound_id(self, source: str, msg_id: str, *, expires_at: float) -> None:
        async def work(conn: Any) -> None:
            if not self._inbound_table_ready:
                await conn.execute(_INBOUND_IDS_TABLE)
            await conn.execute(
                "UPDATE inbound_ids SET expires_at = $1 WHERE source = $2 AND msg_id = $3",
                expires_at,
                source,
                msg_id,
            )

        await self._run(work, action="confirm_inbound_id")
        self._inbound_table_ready = True

    async def forget_inbound_id(self, source: str, msg_id: str) -> None:
        async def work(conn: Any) -> None:
            if not self._inbound_table_ready:
                await conn.execute(_INBOUND_IDS_TABLE)
            await conn.execute(
                "DELETE FROM inbound_ids WHERE source = $1 AND msg_id = $2", source, msg_id
            )

        await self._run(work, action="forget_inbound_id")
        self._inbound_table_ready = True

    async def is_writable(self) -> bool:
        async def work(conn: Any) -> None:
            for statement in sql.PROBE:
                await conn.execute(statement)

        try:
            await self._run(work, action="write probe")
        except StoreError:
            return False
        return True
