"""The SQL of the SQLite store and the work of its multi-statement transactions.

Everything here runs on the store's one thread, inside a transaction opened by
:class:`bridge.store.sqlite.SQLiteStore`; functions take the connection and
plain values, and never commit. Statement texts are constants so sqlite3's
statement cache prepares each once. Lists of ids are passed as one JSON array
read with ``json_each``: one statement of fixed text, whatever the length.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from bridge.core.events import Event
from bridge.store import packets, statements
from bridge.store.catchup import schedule_values
from bridge.store.common import (
    DELIVERY_COLUMNS,
    FROM_DELIVERIES,
    event_values,
    not_yet_stored,
    outcome_values,
)
from bridge.store.heads import choose_heads, ordered_pairs
from bridge.store.history import first_success
from bridge.store.ids import new_delivery_ids
from bridge.store.rows import (
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    IngestBatch,
    IngestResult,
)
from bridge.store.sqlite.device import apply_presence
from bridge.store.sqlite.directory import note_devices
from bridge.store.sqlite.leases import LEASE_LAPSED
from bridge.store.sqlite.replies import commit_replies

__all__ = ["create_deliveries", "ingest", "list_deliveries_query", "purge_chunk", "record_attempts"]

_PENDING = DeliveryStatus.PENDING


CLAIMABLE = f"""SELECT {DELIVERY_COLUMNS} {FROM_DELIVERIES}
    WHERE d.subscription = :sub AND d.status = 'pending' AND d.next_attempt_at <= :now
      AND {LEASE_LAPSED}
    ORDER BY d.next_attempt_at, d.rowid LIMIT :limit"""
RELEASE = """UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
    WHERE id IN (SELECT value FROM json_each(?))"""
# Deliveries under a lease (in flight here or elsewhere) are left out: counting them
# would make a dispatcher poll non-stop while its own attempts are running.
NEXT_DUE = """SELECT next_attempt_at FROM deliveries
    WHERE subscription = :sub AND status = 'pending' AND lease_until IS NULL
    ORDER BY next_attempt_at LIMIT 1"""
ATTEMPTS = """SELECT delivery_id, attempt, started_at, latency_ms, status_code, error,
    response_excerpt FROM attempts WHERE delivery_id = ? ORDER BY attempt, rowid"""
# A delivery under a live lease is being sent right now: its attempt decides.
EXPIRE = """UPDATE deliveries SET status = 'dead', dead_reason = 'too_old',
    next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ?1
    WHERE status = 'pending' AND coalesce(age_from, created_at) < ?2
      AND (lease_until IS NULL OR lease_until < ?1)
      AND subscription NOT IN (SELECT value FROM json_each(?3))
      AND subscription NOT IN (SELECT name FROM subscription_state WHERE disabled = 1)
    RETURNING subscription"""
# The write probe takes the commit path of ingest: a row into events (its
# indexes, its pages) and out again, committed. A one-row update elsewhere can
# succeed in place while ingest's inserts fail on a full disk.
PROBE = (
    """INSERT INTO events (id, type, source, occurred_at, received_at, body)
    VALUES ('probe:readiness', 'bridge.probe', 'hookbridge://probe', 0, 0, zeroblob(4096))""",
    "DELETE FROM events WHERE id = 'probe:readiness'",
    "UPDATE probe SET at = at + 1 WHERE id = 1",
)

_EXISTING_IDS = "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))"
_INSERT_EVENT = """INSERT INTO events
    (id, type, source, device_id, occurred_at, received_at, content_hash, body, context, account)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_INSERT_EVENT_IF_NEW = _INSERT_EVENT.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
_INSERT_DELIVERY = """INSERT INTO deliveries
    (id, event_id, subscription, device_id, status, attempts, next_attempt_at,
     lease_owner, lease_until, created_at, updated_at, account)
    VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?)"""
# Is a delivery of this subscription and device pending (the partial device index)?
_QUEUE_WAITING = """SELECT 1 FROM deliveries
    WHERE subscription = ? AND device_id = ? AND status = 'pending' LIMIT 1"""
_INSERT_REJECTED = """INSERT INTO rejected (received_at, topic, payload, reason, detail, account)
    VALUES (?, ?, ?, ?, ?, ?)"""
# A vanished delivery must not fail the whole batch of attempts: its row is skipped.
# A first success (?8, see bridge.store.history) gets no row when the outcome above
# was applied (the delivery's row then holds exactly this attempt: its start) and it
# is the delivery's only attempt (no fenced-out try before it).
_INSERT_ATTEMPT = """INSERT INTO attempts
    (delivery_id, attempt, started_at, latency_ms, status_code, error, response_excerpt, account)
    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, d.account FROM deliveries AS d WHERE d.id = ?1
      AND NOT (?8 AND d.attempts = ?2 AND d.last_started_at = ?3
               AND NOT EXISTS (SELECT 1 FROM attempts WHERE delivery_id = ?1))"""
# Fenced: a token that is no longer the delivery's (someone claimed it since) changes nothing.
# The row keeps its last attempt (start, latency, excerpt with the code and error), and
# what a catch-up reads (bridge.core.retry.schedule_after): the step, an endpoint-wide
# failure, a Retry-After's end; the attempt is no longer early.
_APPLY_OUTCOME = """UPDATE deliveries SET status = ?1, attempts = max(attempts, ?2),
    next_attempt_at = ?3, dead_reason = ?4, last_status_code = ?5, last_error = ?6,
    lease_owner = NULL, lease_until = NULL, updated_at = ?7,
    retry_step = coalesce(?10, retry_step), endpoint_failure = ?11, not_before = ?12, early = 0,
    last_started_at = ?13, last_latency_ms = ?14, last_excerpt = ?15
    WHERE id = ?8 AND (?9 IS NULL OR lease_token = ?9)"""
# Retention works in chunks of PURGE_CHUNK rows, one transaction each, so the
# writer is never held for long.
PURGE_CHUNK = 1000
# "status <> 'pending'" lets SQLite use the partial index of finished deliveries.
_FINISHED = """SELECT id FROM deliveries
    WHERE status <> 'pending'
      AND ((status = 'delivered' AND updated_at < ?1) OR (status = 'dead' AND updated_at < ?2))
    LIMIT ?3"""
_PURGE_ATTEMPTS = """DELETE FROM attempts
    WHERE delivery_id IN (SELECT value FROM json_each(?))"""
_PURGE_DELIVERIES = "DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?))"
_PURGE_EVENTS = """DELETE FROM events WHERE arrival IN (SELECT arrival FROM events
    WHERE received_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = events.id)
    LIMIT ?)"""


def _json_list(values: list[str]) -> str:
    # JSON functions of older SQLite refuse BLOBs, so the array goes in as text.
    return orjson.dumps(values).decode()


def ingest(conn: sqlite3.Connection, batch: IngestBatch) -> IngestResult:
    """Store new events with leased deliveries, and rejections; skip duplicates.

    Which events are new is decided by one lookup of the whole batch under the
    write lock (``BEGIN IMMEDIATE``), so no other writer can slip in between
    the check and the insert, and the inserts stay plain ``executemany``.
    A broker redelivery is told by ``owner``'s packet log (see :mod:`bridge.store.packets`).
    """
    accepted, rejected, now, owner = batch.accepted, batch.rejected, batch.now, batch.owner
    stored_ids: set[str] = set()
    if accepted:
        ids_text = _json_list([a.event.id for a in accepted])
        stored_ids = {row[0] for row in conn.execute(_EXISTING_IDS, (ids_text,))}
    fresh = not_yet_stored(accepted, stored_ids, log_packets(conn, batch))
    duplicates = len(accepted) - len(fresh)
    collapsed = 0
    if batch.presence is not None:
        fresh, collapsed = apply_presence(conn, fresh, batch.presence, now)
    event_rows = [event_values(item.event, item.received_at) for item in fresh]
    conn.executemany(_INSERT_EVENT, event_rows)
    note_devices(conn, fresh)

    # Under the write lock: no other writer adds to these queues before the commit.
    waiting = [
        pair
        for pair in (ordered_pairs(fresh, batch.ordered) if batch.ordered else ())
        if conn.execute(_QUEUE_WAITING, pair).fetchone() is not None
    ]
    ids = iter(new_delivery_ids(now, sum(len(item.subscriptions) for item in fresh)))
    deliveries: list[Delivery] = []
    delivery_rows: list[tuple[Any, ...]] = []
    owners = batch.owners
    for item in fresh:
        event = item.event
        for subscription in item.subscriptions:
            delivery_id = next(ids)
            account = owners.get(subscription, "")
            delivery_rows.append(
                (
                    delivery_id,
                    event.id,
                    subscription,
                    event.device_id,
                    now,
                    owner,
                    batch.lease_until,
                    now,
                    now,
                    account,
                )
            )
            deliveries.append(
                Delivery(
                    delivery_id, event, subscription, 0, now, _PENDING, now, account=account or None
                )
            )
    conn.executemany(_INSERT_DELIVERY, delivery_rows)

    if rejected:
        conn.executemany(
            _INSERT_REJECTED,
            [
                (r.received_at, r.topic, r.payload, r.reason, r.detail, r.account or "")
                for r in rejected
            ],
        )
    heads = choose_heads(deliveries, batch.ordered, waiting) if batch.ordered else frozenset()
    return IngestResult(
        deliveries, stored=len(fresh), duplicates=duplicates, collapsed=collapsed, heads=heads
    )


def log_packets(conn: sqlite3.Connection, batch: IngestBatch) -> set[int]:
    """Append the batch to the packet log (pruned to its window); returns the positions
    of its DUP messages that are copies of committed ones (see bridge.store.packets)."""
    window, owner = batch.packet_window, batch.owner
    if window <= 0 or not owner:
        return set()
    found: set[int] = set()
    if any(item.redelivery for item in batch.accepted):
        recent = conn.execute(statements.RECENT_PACKETS, (owner, window))
        found = packets.redelivered(batch.accepted, recent, window=window)
    rows = packets.pack(batch.accepted, batch.rejected)
    if rows:
        last = conn.execute(statements.LAST_PACKETS_SEQ, (owner,)).fetchone()[0] or 0
        for seq, (connection, entry) in enumerate(rows, start=last + 1):
            conn.execute(statements.LOG_PACKETS, (owner, seq, connection, entry))
        conn.execute(statements.PRUNE_PACKETS, (owner, last + len(rows) - window))
    return found


def record_attempts(
    conn: sqlite3.Connection,
    results: Sequence[tuple[AttemptRecord, AttemptOutcome]],
    now: float,
) -> None:
    """Apply each outcome and keep each attempt; every lease involved is dropped.

    The delivery's row keeps its last attempt; an attempt row is written for every
    other attempt, and for a first success only when it was fenced out or followed
    one (see :mod:`bridge.store.history`).
    """
    attempt_rows = []
    outcome_rows = []
    for record, outcome in results:
        attempt_rows.append(
            (
                record.delivery_id,
                record.attempt,
                record.started_at,
                record.latency_ms,
                record.status_code,
                record.error,
                record.response_excerpt,
                first_success(record, outcome),
            )
        )
        status, next_at, reason = outcome_values(record, outcome, now)
        outcome_rows.append(
            (
                status,
                record.attempt,
                next_at,
                reason,
                record.status_code,
                record.error,
                now,
                record.delivery_id,
                record.lease_token,
                *schedule_values(outcome),
                record.started_at,
                record.latency_ms,
                record.response_excerpt,
            )
        )
    conn.executemany(_APPLY_OUTCOME, outcome_rows)
    conn.executemany(_INSERT_ATTEMPT, attempt_rows)
    # Pipe answers with the results they came with: one commit (bridge.store.sqlite.replies).
    commit_replies(conn, results)


def create_deliveries(
    conn: sqlite3.Connection,
    event: Event,
    subscriptions: Sequence[str],
    now: float,
    accounts: Sequence[str],
) -> list[Delivery]:
    """Store ``event`` if missing; one new pending, unleased delivery per subscription,
    each recorded with its subscription's account (``accounts``, in the same order)."""
    conn.execute(_INSERT_EVENT_IF_NEW, event_values(event, now))
    made = list(
        zip(new_delivery_ids(now, len(subscriptions)), subscriptions, accounts, strict=True)
    )
    conn.executemany(
        _INSERT_DELIVERY,
        [
            (delivery_id, event.id, name, event.device_id, now, None, None, now, now, account)
            for delivery_id, name, account in made
        ],
    )
    return [
        Delivery(delivery_id, event, name, 0, now, _PENDING, now, account=account or None)
        for delivery_id, name, account in made
    ]


def purge_chunk(
    conn: sqlite3.Connection, delivered_before: float, dead_before: float
) -> tuple[bool, int]:
    """Delete up to ``PURGE_CHUNK`` finished deliveries past retention with their attempts,
    or, once none is left, up to ``PURGE_CHUNK`` orphaned events.

    Returns whether the purge is done and how many rows this chunk removed.
    """
    bounds = (delivered_before, dead_before, PURGE_CHUNK)
    ids = [row[0] for row in conn.execute(_FINISHED, bounds)]
    removed = 0
    if ids:
        ids_text = _json_list(ids)
        removed += conn.execute(_PURGE_ATTEMPTS, (ids_text,)).rowcount
        removed += conn.execute(_PURGE_DELIVERIES, (ids_text,)).rowcount
    if len(ids) >= PURGE_CHUNK:
        return False, removed
    # An event with no delivery left is kept until the later bound so that a
    # late broker redelivery of it is still recognised as a duplicate.
    events = conn.execute(_PURGE_EVENTS, (max(delivered_before, dead_before), PURGE_CHUNK))
    removed += events.rowcount
    return events.rowcount < PURGE_CHUNK, removed


def list_deliveries_query(
    filters: Sequence[tuple[str, Any]], *, limit: int
) -> tuple[str, tuple[Any, ...]]:
    """The SELECT of one page of deliveries, newest (highest id) first.

    ``filters`` are (``column operator``, value) pairs from
    :func:`bridge.store.common.delivery_filters`.
    """
    where = [f"{condition} ?" for condition, _ in filters]
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    query = f"SELECT {DELIVERY_COLUMNS} {FROM_DELIVERIES} {condition} ORDER BY d.id DESC LIMIT ?"
    return query, (*(value for _, value in filters), limit)
