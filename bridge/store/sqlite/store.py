"""The SQLite store: the embedded durable outbox.

One file in WAL mode, written by ONE thread: every write is handed to a
single-worker executor that owns the writer connection, so the asyncio loop
never blocks on disk and SQLite never sees two writers from this process. Each
public method is one transaction (``BEGIN IMMEDIATE`` for writes, so the write
lock is taken up front and another process sharing the file waits on
``busy_timeout`` instead of failing half-way). A whole ``ingest`` batch is one
commit built from ``executemany``: the hot path never pays one fsync per message.

Reads run on reader threads with connections of their own (see
:mod:`bridge.store.sqlite_engine`, which also translates sqlite3 errors).

URLs follow the common convention: ``sqlite:///hookbridge.db`` is relative to
the working directory, ``sqlite:////var/lib/hookbridge/hookbridge.db`` absolute.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal, TypeVar

import orjson

from bridge.config import StoreSettings
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
from bridge.store.sqlite import device as per_device
from bridge.store.sqlite import directory, leases
from bridge.store.sqlite import queries as sql
from bridge.store.sqlite.engine import SQLiteEngine
from bridge.store.sqlite.outbox import SQLiteOutbox
from bridge.store.sqlite.schema import SCHEMA_VERSION, migrate, schema_version

__all__ = ["SQLiteStore", "sqlite_path"]

T = TypeVar("T")


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///…`` URL names (three slashes relative, four absolute)."""
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise StoreError("a SQLite store URL looks like sqlite:///hookbridge.db")
    return Path(url[len("sqlite:///") :])


_INBOUND_IDS_TABLE = """CREATE TABLE IF NOT EXISTS inbound_ids (
    source TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (source, msg_id)
)"""
# Inserts a new id, or renews one whose time ran out; an unexpired one changes no row.
_REMEMBER_INBOUND_ID = """INSERT INTO inbound_ids (source, msg_id, expires_at) VALUES (?, ?, ?)
    ON CONFLICT (source, msg_id) DO UPDATE SET expires_at = excluded.expires_at
    WHERE inbound_ids.expires_at < ?"""


class SQLiteStore(SQLiteOutbox):
    """The durable outbox in one SQLite file (see the module docstring).

    ``read_only=True`` opens the file with ``mode=ro``: reads work, every write
    raises :class:`StoreUnavailable`. It serves inspection of a live database
    and is how the tests produce a real read-only store (file permissions do
    not stop root).

    ``owner`` is the bridge instance the store is opened for; see ``Store.open``
    for what opening does with it. Tools beside a running bridge leave it empty.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 5.0,
        read_only: bool = False,
        owner: str = "",
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.owner = owner
        self.takeover_after = TAKEOVER_AFTER
        self._engine = SQLiteEngine(
            self.path, busy_timeout=busy_timeout, read_only=read_only, synchronous=synchronous
        )

    @classmethod
    def from_settings(cls, settings: StoreSettings, *, owner: str = "") -> SQLiteStore:
        store = cls(sqlite_path(settings.url), synchronous=settings.synchronous, owner=owner)
        store.takeover_after = settings.takeover_after
        return store

    def __repr__(self) -> str:
        return f"SQLiteStore(path={str(self.path)!r}, read_only={self.read_only})"

    async def _run(
        self, work: Callable[[sqlite3.Connection], T], *, action: str, write: bool = True
    ) -> T:
        """Run ``work`` as one transaction: writes on the writer thread, reads on a reader."""
        if write:
            return await self._engine.write(work, action=action)
        return await self._engine.read(work, action=action)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Bring the schema to the current version; drop this owner's old leases."""
        if self.read_only:
            version = schema_version(conn)
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"the database is at schema version {version}, not {SCHEMA_VERSION}"
                )
            return
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"the database refused WAL mode (got {mode})")
        migrate(conn)
        if self.owner:
            # Without this a restarted instance would wait for its own work. Autocommit
            # mode: each statement is its own transaction.
            conn.execute(sql.RELEASE_OWNER, (self.owner,))
            conn.execute(leases.HEARTBEAT, (self.owner,))

    def _leave(self, conn: sqlite3.Connection) -> None:
        """An instance closing: its leases go back at once and its heartbeat row goes."""
        conn.execute(sql.RELEASE_OWNER, (self.owner,))
        conn.execute(leases.FORGET_INSTANCE, (self.owner,))

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._engine.is_open:
            return
        await self._engine.open(self._prepare)

    async def close(self) -> None:
        leave = self._leave if self.owner and not self.read_only else None
        await self._engine.close(leave)

    async def heartbeat(self) -> None:
        if not self.owner:
            return
        await self._run(
            lambda conn: conn.execute(leases.HEARTBEAT, (self.owner,)), action="heartbeat"
        )

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
        def work(conn: sqlite3.Connection) -> IngestResult:
            # BEGIN IMMEDIATE holds the write lock: no other instance claims the same rows.
            announced = per_device.timed_out(conn, policy, now, limit)
            return sql.ingest(
                conn, accepted=announced, rejected=(), now=now, owner=owner, lease_until=lease_until
            )

        return await self._run(work, action="claim_presence_timeouts")

    async def get_presence(self, device_id: str) -> PresenceState | None:
        def work(conn: sqlite3.Connection) -> PresenceState | None:
            row = conn.execute(per_device.GET_PRESENCE, (device_id,)).fetchone()
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
        query = per_device.CLAIMABLE_ORDERED if ordered else sql.CLAIMABLE
        params = {
            "sub": subscription,
            "now": now,
            "owner": owner,
            "stale": self.takeover_after,
            "limit": limit,
        }

        def work(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(query, params).fetchall()
            if not rows:
                return []
            ids = orjson.dumps([row[0] for row in rows]).decode()
            lease = {"owner": owner, "until": lease_until, "now": now, "ids": ids}
            tokens = dict(conn.execute(leases.LEASE, lease).fetchall())
            claimed = [common.delivery_from_row(row) for row in rows]
            return [replace(d, lease_token=tokens.get(d.id, d.lease_token)) for d in claimed]

        return await self._run(work, action="claim_due")

    async def next_due_at(self, subscription: str, *, ordered: bool = False) -> float | None:
        query = per_device.NEXT_DUE_ORDERED if ordered else sql.NEXT_DUE

        def work(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(query, {"sub": subscription}).fetchone()
            return None if row is None or row[0] is None else float(row[0])

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
        ids = orjson.dumps(list(delivery_ids))
        await self._run(lambda conn: conn.execute(sql.RELEASE, (ids,)), action="release")

    # -- reading ----------------------------------------------------------------------

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        def work(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(sql.GET_DELIVERY, (delivery_id,)).fetchone()
            return None if row is None else common.delivery_from_row(row)

        return await self._run(work, action="get_delivery", write=False)

    async def attempts(self, delivery_id: str) -> list[AttemptRecord]:
        def work(conn: sqlite3.Connection) -> list[AttemptRecord]:
            rows = conn.execute(sql.ATTEMPTS, (delivery_id,)).fetchall()
            return [AttemptRecord(*row) for row in rows]

        return await self._run(work, action="attempts", write=False)

    async def get_event(self, event_id: str) -> Event | None:
        def work(conn: sqlite3.Connection) -> Event | None:
            row = conn.execute(sql.GET_EVENT, (event_id,)).fetchone()
            return None if row is None else common.event_from_body(row[0], row[1])

        return await self._run(work, action="get_event", write=False)

    async def queue_depth(self, subscription: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return int(conn.execute(sql.QUEUE_DEPTH, (subscription,)).fetchone()[0])

        return await self._run(work, action="queue_depth", write=False)

    async def subscription_states(self) -> dict[str, SubscriptionState]:
        def work(conn: sqlite3.Connection) -> dict[str, SubscriptionState]:
            return {
                row[0]: common.subscription_state_from_row(row)
                for row in conn.execute(sql.SUBSCRIPTION_STATES)
            }

        return await self._run(work, action="subscription_states", write=False)

    async def list_rejected(self, *, limit: int) -> list[Rejection]:
        def work(conn: sqlite3.Connection) -> list[Rejection]:
            rows = conn.execute(sql.LIST_REJECTED, (limit,)).fetchall()
            return [common.rejection_from_row(row) for row in rows]

        return await self._run(work, action="list_rejected", write=False)

    async def counts(self) -> dict[str, int]:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            return common.delivery_counts(
                conn.execute(sql.COUNT_BY_STATUS),
                events=conn.execute(sql.COUNT_EVENTS).fetchone()[0],
                rejected=conn.execute(sql.COUNT_REJECTED).fetchone()[0],
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
        filters = common.delivery_filters(
            subscription=subscription, status=status, since=since, until=until, cursor=cursor
        )
        query, params = sql.list_deliveries_query(filters, limit=limit + 1)

        def work(conn: sqlite3.Connection) -> list[Delivery]:
            return [common.delivery_from_row(row) for row in conn.execute(query, params)]

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
        # sqlite3 binds the bool ``disabled`` as the integer 0 or 1.
        params = common.subscription_state_values(state)
        await self._run(
            lambda conn: conn.execute(sql.SAVE_SUBSCRIPTION_STATE, params),
            action="save_subscription_state",
        )

    async def requeue(self, delivery_id: str, *, now: float) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql.REQUEUE, (now, now, delivery_id)).rowcount > 0

        return await self._run(work, action="requeue")

    async def create_deliveries(
        self, event: Event, subscriptions: Sequence[str], *, now: float
    ) -> list[Delivery]:
        return await self._run(
            lambda conn: sql.create_deliveries(conn, event, subscriptions, now),
            action="create_deliveries",
        )

    async def purge(self, *, delivered_before: float, dead_before: float) -> int:
        # One bounded chunk per transaction: ingest commits get the writer in between.
        removed = 0
        for _ in range(sql.PURGE_MAX_CHUNKS):
            done, chunk = await self._run(
                lambda conn: sql.purge_chunk(conn, delivered_before, dead_before),
                action="purge",
            )
            removed += chunk
            if done:
                break
        return removed

    async def oldest_pending(self, subscriptions: Sequence[str]) -> dict[str, float]:
        def work(conn: sqlite3.Connection) -> dict[str, float]:
            found: dict[str, float] = {}
            for name in subscriptions:
                row = conn.execute(leases.OLDEST_PENDING, (name,)).fetchone()
                if row is not None and row[0] is not None:
                    found[name] = float(row[0])
            return found

        return await self._run(work, action="oldest_pending", write=False)

    async def expire_older_than(
        self, *, received_before: float, now: float, paused: Sequence[str] = ()
    ) -> dict[str, int]:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(sql.EXPIRE, (now, received_before, orjson.dumps(list(paused))))
            return dict(Counter(row[0] for row in rows))

        return await self._run(work, action="expire_older_than")

    async def resume_age(self, subscription: str, *, paused_for: float) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(sql.RESUME_AGE, (paused_for, subscription)).rowcount

        return await self._run(work, action="resume_age")

    async def remember_inbound_id(
        self, source: str, msg_id: str, *, now: float, ttl: float
    ) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            # Created on first use: a side table of the inbound feature, outside the outbox schema.
            conn.execute(_INBOUND_IDS_TABLE)
            conn.execute("DELETE FROM inbound_ids WHERE expires_at < ?", (now,))
            cursor = conn.execute(_REMEMBER_INBOUND_ID, (source, msg_id, now + ttl, now))
            return cursor.rowcount == 1

        return await self._run(work, action="remember_inbound_id")

    async def confirm_inbound_id(self, source: str, msg_id: str, *, expires_at: float) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute(_INBOUND_IDS_TABLE)
            conn.execute(
                "UPDATE inbound_ids SET expires_at = ? WHERE source = ? AND msg_id = ?",
                (expires_at, source, msg_id),
            )

        await self._run(work, action="confirm_inbound_id")

    async def forget_inbound_id(self, source: str, msg_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute(_INBOUND_IDS_TABLE)
            conn.execute(
                "DELETE FROM inbound_ids WHERE source = ? AND msg_id = ?", (source, msg_id)
            )

        await self._run(work, action="forget_inbound_id")

    async def is_writable(self) -> bool:
        def work(conn: sqlite3.Connection) -> None:
            for statement in sql.PROBE:
                conn.execute(statement)

        try:
            await self._run(work, action="write probe")
        except StoreError:
            return False
        return True
