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
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from bridge.config import StoreSettings, redact_url
from bridge.core.events import Event
from bridge.core.presence import Presence, PresenceState
from bridge.errors import StoreError
from bridge.store import common
from bridge.store.base import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    DeviceDetail,
    DeviceSummary,
    IngestResult,
    PresencePolicy,
    Rejection,
    SubscriptionState,
)
from bridge.store.leases import TAKEOVER_AFTER
from bridge.store.postgres import device, directory, leases
from bridge.store.postgres import queries as sql
from bridge.store.postgres.connect import FOREIGN_ERRORS, parse_postgres_url, translate
from bridge.store.postgres.outbox import PostgresOutbox
from bridge.store.postgres.schema import SCHEMA_VERSION, migrate

__all__ = ["PostgresStore", "parse_postgres_url"]


T = TypeVar("T")

_READ_POOL_SIZE = 2

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


class PostgresStore(PostgresOutbox):
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
        self.takeover_after = TAKEOVER_AFTER
        self._pool: asyncpg.Pool | None = None
        # Reads (dashboard, metrics, API, next-due lookups) on connections of their
        # own, so a slow count never waits for, nor holds, a writer connection.
        self._read_pool: asyncpg.Pool | None = None
        self._inbound_table_ready = False

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
        self, work: Callable[[Any], Awaitable[T]], *, action: str, write: bool = True
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
            await conn.execute(sql.RELEASE_OWNER, self.owner)
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
                        await conn.execute(sql.RELEASE_OWNER, self.owner)
                        await conn.execute(leases.FORGET_INSTANCE, self.owner)
            if read_pool is not None:
                await read_pool.close()
            await pool.close()
        except FOREIGN_ERRORS as exc:
            raise translate(exc, "close") from exc

    async def heartbeat(self) -> None:
        if not self.owner:
            return
        await self._run(lambda conn: conn.execute(leases.HEARTBEAT, self.owner), action="heartbeat")

    async def oldest_pending(self, subscriptions: Sequence[str]) -> dict[str, float]:
        async def work(conn: Any) -> dict[str, float]:
            rows = await conn.fetch(leases.OLDEST_PENDING, list(subscriptions))
            return {row[0]: float(row[1]) for row in rows if row[1] is not None}

        return await self._run(work, action="oldest_pending", write=False)

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
            rows = await conn.fetch(
                query, subscription, now, owner, lease_until, limit, self.takeover_after
            )
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
            row = await conn.fetchrow(sql.GET_EVENT, event_id)
            return None if row is None else common.event_from_body(row[0], row[1])

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

    async def list_devices(
        self,
        *,
        state: Presence | None,
        prefix: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[DeviceSummary], str | None]:
        return await self._run(
            lambda conn: directory.list_devices(
                conn, state=state, prefix=prefix, cursor=cursor, limit=limit
            ),
            action="list_devices",
            write=False,
        )

    async def get_device(self, device_id: str, *, events: int) -> DeviceDetail | None:
        return await self._run(
            lambda conn: directory.get_device(conn, device_id, events=events),
            action="get_device",
            write=False,
        )

    # -- operator and housekeeping writes ---------------------------------------------

    async def forget_device(self, device_id: str) -> bool:
        return await self._run(
            lambda conn: directory.forget_device(conn, device_id), action="forget_device"
        )

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
        # One bounded chunk per transaction: no long transaction for ingest to wait on.
        removed = 0
        for _ in range(leases.PURGE_MAX_CHUNKS):
            done, chunk = await self._run(
                lambda conn: sql.purge_chunk(conn, delivered_before, dead_before),
                action="purge",
            )
            removed += chunk
            if done:
                break
        return removed

    async def expire_older_than(
        self, *, received_before: float, now: float, paused: Sequence[str] = ()
    ) -> dict[str, int]:
        async def work(conn: Any) -> dict[str, int]:
            rows = await conn.fetch(sql.EXPIRE, now, received_before, list(paused))
            return dict(Counter(row[0] for row in rows))

        return await self._run(work, action="expire_older_than")

    async def resume_age(self, subscription: str, *, paused_for: float) -> int:
        async def work(conn: Any) -> int:
            return sql.rowcount(await conn.execute(sql.RESUME_AGE, paused_for, subscription))

        return await self._run(work, action="resume_age")

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
