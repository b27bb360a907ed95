"""The SQLite store's operations: one function per :class:`bridge.store.base.Store`
method, under the method's name, taking the connection the store's ``_run``
opened the transaction on.

They run on the store's threads (writes on its one writer); none commits.

Operations that are whole in another module (ingest, the directory…) are taken from
there: see the store class's ``_sources``.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from bridge.core.events import Event
from bridge.core.presence import PresenceState
from bridge.store import common, history, rows
from bridge.store import statements as shared
from bridge.store.sqlite import batches, leases
from bridge.store.sqlite import device as per_device
from bridge.store.sqlite import queries as sql


def _one(conn: sqlite3.Connection, query: str, *params: Any) -> Any:
    """The first row of a query, or None."""
    return conn.execute(query, params).fetchone()


# -- the hot path -------------------------------------------------------------------------


def claim_presence_timeouts(
    conn: sqlite3.Connection, batch: rows.IngestBatch, policy: rows.PresencePolicy, limit: int
) -> rows.IngestResult:
    # BEGIN IMMEDIATE holds the write lock: no other instance claims the same rows.
    announced = per_device.timed_out(conn, policy, batch.now, limit)
    return sql.ingest(conn, replace(batch, accepted=announced))


def get_presence(conn: sqlite3.Connection, account: str, device_id: str) -> PresenceState | None:
    row = _one(conn, per_device.GET_PRESENCE, account, device_id)
    return None if row is None else common.presence_from_row(row)


def claim_due(conn: sqlite3.Connection, claim: rows.Claim) -> list[rows.Delivery]:
    if claim.ordered and claim.per_device > 1:
        return batches.claim_runs(conn, claim)
    query = per_device.CLAIMABLE_ORDERED if claim.ordered else sql.CLAIMABLE
    params = {"sub": claim.subscription, "now": claim.now, "owner": claim.owner}
    params |= {"stale": claim.stale, "limit": claim.limit}
    return leases.lease_claimed(conn, conn.execute(query, params).fetchall(), claim)


def next_due_at(conn: sqlite3.Connection, subscription: str, ordered: bool) -> float | None:
    query = per_device.NEXT_DUE_ORDERED if ordered else sql.NEXT_DUE
    row = conn.execute(query, {"sub": subscription}).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def heartbeat(conn: sqlite3.Connection, owner: str) -> None:
    conn.execute(leases.HEARTBEAT, (owner,))


def oldest_pending(conn: sqlite3.Connection, subscriptions: list[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for name in subscriptions:
        row = _one(conn, leases.OLDEST_PENDING, name)
        if row is not None and row[0] is not None:
            found[name] = float(row[0])
    return found


def release(conn: sqlite3.Connection, delivery_ids: list[str]) -> None:
    conn.execute(sql.RELEASE, (orjson.dumps(delivery_ids),))


# -- reading ------------------------------------------------------------------------------


def get_delivery(conn: sqlite3.Connection, delivery_id: str) -> rows.Delivery | None:
    row = _one(conn, shared.GET_DELIVERY, delivery_id)
    return None if row is None else common.delivery_from_row(row)


def attempts(conn: sqlite3.Connection, delivery_id: str) -> list[rows.AttemptRecord]:
    stored = [rows.AttemptRecord(*row) for row in conn.execute(sql.ATTEMPTS, (delivery_id,))]
    return history.with_summarised(stored, _one(conn, shared.LAST_ATTEMPT, delivery_id))


def get_event(conn: sqlite3.Connection, event_id: str) -> Event | None:
    row = _one(conn, shared.GET_EVENT, event_id)
    return None if row is None else common.event_from_body(row[0], row[1], row[2])


def queue_depth(conn: sqlite3.Connection, subscription: str) -> int:
    return int(_one(conn, shared.QUEUE_DEPTH, subscription)[0])


def subscription_states(conn: sqlite3.Connection) -> dict[str, rows.SubscriptionState]:
    records = conn.execute(shared.SUBSCRIPTION_STATES)
    return {row[0]: common.subscription_state_from_row(row) for row in records}


def list_rejected(conn: sqlite3.Connection, limit: int) -> list[rows.Rejection]:
    return [common.rejection_from_row(row) for row in conn.execute(shared.LIST_REJECTED, (limit,))]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return common.delivery_counts(
        conn.execute(shared.COUNT_BY_STATUS),
        events=_one(conn, shared.COUNT_EVENTS)[0],
        rejected=_one(conn, shared.COUNT_REJECTED)[0],
    )


def list_deliveries(
    conn: sqlite3.Connection, filters: Sequence[tuple[str, Any]], limit: int
) -> list[rows.Delivery]:
    query, params = sql.list_deliveries_query(filters, limit=limit)
    return [common.delivery_from_row(row) for row in conn.execute(query, params)]


# -- operator and housekeeping writes -----------------------------------------------------


def save_subscription_state(conn: sqlite3.Connection, values: tuple[Any, ...]) -> None:
    # sqlite3 binds the bool ``disabled`` as the integer 0 or 1.
    conn.execute(shared.SAVE_SUBSCRIPTION_STATE, values)


def requeue(conn: sqlite3.Connection, delivery_id: str, now: float) -> bool:
    batches.forget(conn, delivery_id)  # an operator's retry goes in a new batch
    return conn.execute(shared.REQUEUE, (now, delivery_id)).rowcount > 0


def expire_older_than(
    conn: sqlite3.Connection, received_before: float, now: float, paused: list[str]
) -> dict[str, int]:
    records = conn.execute(sql.EXPIRE, (now, received_before, orjson.dumps(paused)))
    return dict(Counter(row[0] for row in records))


def resume_age(conn: sqlite3.Connection, subscription: str, paused_for: float) -> int:
    return conn.execute(shared.RESUME_AGE, (paused_for, subscription)).rowcount


def probe(conn: sqlite3.Connection) -> None:
    for statement in sql.PROBE:
        conn.execute(statement)


def note_broker_counter(
    conn: sqlite3.Connection, broker: str, name: str, value: int, now: float
) -> int | None:
    # BEGIN IMMEDIATE: no other instance writes between the read and the write.
    row = _one(conn, shared.BROKER_COUNTER, broker, name)
    conn.execute(shared.NOTE_BROKER_COUNTER, (broker, name, value, now))
    return None if row is None else int(row[0])
