"""The SQL of the PostgreSQL store and the work of its multi-statement transactions.

Functions here take an asyncpg connection already inside a transaction opened
by :class:`bridge.store.postgres.PostgresStore` and never commit. Batches go
in as arrays read with ``unnest``: one statement of fixed text (prepared once
per connection by asyncpg's statement cache) whatever the batch size, and one
round trip for the whole batch instead of one per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge.core.events import Event
from bridge.core.outcomes import AttemptOutcome, DeliveryStatus
from bridge.store import common, history, packets, statements
from bridge.store.catchup import schedule_values
from bridge.store.ids import new_delivery_ids
from bridge.store.postgres import device, directory, leases
from bridge.store.postgres.connect import columns
from bridge.store.postgres.leases import LEASE_DUE, LEASE_LAPSED
from bridge.store.postgres.replies import commit_replies
from bridge.store.rows import Accepted, AttemptRecord, Delivery, IngestBatch, IngestResult
from bridge.store.statements import numbered

__all__ = [
    "create_deliveries",
    "ingest",
    "list_deliveries_query",
    "purge_chunk",
    "record_attempts",
    "rowcount",
    "store_items",
]

_PENDING = DeliveryStatus.PENDING


# f-strings here only join constant fragments of this module; values are always $n.
# SKIP LOCKED: two instances claiming at once each get different rows instead
# of one waiting on the other's row locks. The outer ORDER BY restores the
# order the CTE chose (UPDATE ... RETURNING has none of its own).
CLAIM = f"""WITH due AS (
        SELECT d.id, d.seq FROM deliveries AS d
        WHERE d.subscription = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2
          AND {LEASE_LAPSED}
        {LEASE_DUE}"""  # noqa: S608
RELEASE = """UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
    WHERE id = ANY($1::text[])"""
# Deliveries under a lease (in flight here or elsewhere) are left out: counting them
# would make a dispatcher poll non-stop while its own attempts are running.
NEXT_DUE = """SELECT min(next_attempt_at) FROM deliveries
    WHERE subscription = $1 AND status = 'pending' AND lease_until IS NULL"""
ATTEMPTS = """SELECT delivery_id, attempt, started_at, latency_ms, status_code, error,
    response_excerpt FROM attempts WHERE delivery_id = $1 ORDER BY attempt, id"""
# A delivery under a live lease is being sent right now: its attempt decides.
EXPIRE = """UPDATE deliveries SET status = 'dead', dead_reason = 'too_old',
    next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = $1
    WHERE status = 'pending' AND coalesce(age_from, created_at) < $2
      AND (lease_until IS NULL OR lease_until < $1)
      AND NOT (subscription = ANY($3::text[]))
      AND subscription NOT IN (SELECT name FROM subscription_state WHERE disabled)
    RETURNING subscription"""
# The write probe takes the commit path of ingest: a row into events (its
# indexes, its locks) and out again, committed. A one-row update elsewhere
# goes through while an operator's lock or a full disk stops ingest's inserts.
PROBE = (
    """INSERT INTO events (id, type, source, occurred_at, received_at, body)
    VALUES ('probe:readiness', 'bridge.probe', 'hookbridge://probe', 0, 0, ''::bytea)""",
    "DELETE FROM events WHERE id = 'probe:readiness'",
    "UPDATE probe SET at = at + 1 WHERE id = 1",
)

_EXISTING_IDS = "SELECT id FROM events WHERE id = ANY($1::text[])"
# ON CONFLICT: another instance may store the same event between our lookup and
# this insert (a redelivery to another member of the shared group); RETURNING
# says which rows were really ours.
_INSERT_EVENTS = """INSERT INTO events
    (id, type, source, device_id, occurred_at, received_at, content_hash, body, context, account)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                         $5::float8[], $6::float8[], $7::text[], $8::bytea[], $9::text[],
                         $10::text[])
    ON CONFLICT (id) DO NOTHING RETURNING id"""
_INSERT_DELIVERIES = """INSERT INTO deliveries
    (id, event_id, subscription, device_id, status, attempts, next_attempt_at,
     lease_owner, lease_until, created_at, updated_at, ingested_by, account)
    SELECT u.id, u.event_id, u.subscription, u.device_id, 'pending', 0, $5,
           $6, $7, $5, $5, $6, u.account
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $8::text[])
         WITH ORDINALITY AS u (id, event_id, subscription, device_id, account, n)
    ORDER BY u.n"""
_INSERT_REJECTED = """INSERT INTO rejected (received_at, topic, payload, reason, detail, account)
    SELECT * FROM unnest($1::float8[], $2::text[], $3::bytea[], $4::text[], $5::text[],
                         $6::text[])"""
# A vanished delivery must not fail the whole batch of attempts: its row is skipped.
# A first success (u.first, see bridge.store.history) gets no row when its outcome was
# applied (the delivery's row then holds exactly this attempt: its start) and it is
# the delivery's only attempt (no fenced-out try before it).
_INSERT_ATTEMPTS = """INSERT INTO attempts
    (delivery_id, attempt, started_at, latency_ms, status_code, error, response_excerpt, account)
    SELECT u.delivery_id, u.attempt, u.started_at, u.latency_ms, u.status_code, u.error,
           u.excerpt, d.account
    FROM unnest($1::text[], $2::int[], $3::float8[], $4::float8[], $5::int[],
                $6::text[], $7::text[], $8::bool[])
        AS u (delivery_id, attempt, started_at, latency_ms, status_code, error, excerpt, first)
    JOIN deliveries AS d ON d.id = u.delivery_id
    WHERE NOT (u.first AND d.attempts = u.attempt AND d.last_started_at = u.started_at
               AND NOT EXISTS (SELECT 1 FROM attempts WHERE delivery_id = u.delivery_id))"""
# The row keeps its last attempt (start, latency, excerpt with the code and error), and
# what a catch-up reads (bridge.core.retry.schedule_after): the step, an endpoint-wide
# failure, a Retry-After's end; the attempt is no longer early.
_APPLY_OUTCOMES = """UPDATE deliveries AS d SET status = u.status,
    attempts = greatest(d.attempts, u.attempt), next_attempt_at = u.next_at,
    dead_reason = u.reason, last_status_code = u.code, last_error = u.error,
    lease_owner = NULL, lease_until = NULL, updated_at = $8,
    retry_step = coalesce(u.step, d.retry_step), endpoint_failure = u.wide,
    not_before = u.not_before, early = 0,
    last_started_at = u.started_at, last_latency_ms = u.latency_ms, last_excerpt = u.excerpt
    FROM unnest($1::text[], $2::text[], $3::int[], $4::float8[], $5::text[], $6::int[],
                $7::text[], $9::bigint[], $10::int[], $11::smallint[], $12::float8[],
                $13::float8[], $14::float8[], $15::text[])
        AS u (id, status, attempt, next_at, reason, code, error, token, step, wide, not_before,
              started_at, latency_ms, excerpt)
    WHERE d.id = u.id AND (u.token IS NULL OR d.lease_token = u.token)"""


def rowcount(status: str) -> int:
    """The row count of an asyncpg command status such as ``UPDATE 3``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _not_yet_stored(conn: Any, batch: IngestBatch) -> list[Accepted]:
    """The items of a batch that are neither stored already, nor repeated in the batch,
    nor broker redeliveries of committed messages (see :mod:`bridge.store.packets`)."""
    accepted = batch.accepted
    stored_ids: set[str] = set()
    if accepted:
        rows = await conn.fetch(_EXISTING_IDS, [a.event.id for a in accepted])
        stored_ids = {row[0] for row in rows}
    return common.not_yet_stored(accepted, stored_ids, await _log_packets(conn, batch))


async def _log_packets(conn: Any, batch: IngestBatch) -> set[int]:
    """Append the batch to the packet log (pruned to its window); returns the positions
    of its DUP messages that are copies of committed ones."""
    window, owner = batch.packet_window, batch.owner
    if window <= 0 or not owner:
        return set()
    found: set[int] = set()
    if any(item.redelivery for item in batch.accepted):
        recent = await conn.fetch(numbered(statements.RECENT_PACKETS), owner, window)
        found = packets.redelivered(
            batch.accepted, [(row[0], bytes(row[1])) for row in recent], window=window
        )
    rows = packets.pack(batch.accepted, batch.rejected)
    if rows:
        last = await conn.fetchval(numbered(statements.LAST_PACKETS_SEQ), owner) or 0
        for seq, (connection, entry) in enumerate(rows, start=last + 1):
            await conn.execute(numbered(statements.LOG_PACKETS), owner, seq, connection, entry)
        await conn.execute(numbered(statements.PRUNE_PACKETS), owner, last + len(rows) - window)
    return found


async def ingest(conn: Any, batch: IngestBatch) -> IngestResult:
    """Store new events with leased deliveries, and rejections; skip duplicates.

    Duplicates inside the batch and against stored events are sorted out here
    (one lookup each for ids and redelivery hashes); an event another instance
    stores concurrently is caught by ``ON CONFLICT`` and counted a duplicate.
    With ``presence`` the batch's devices are locked first, so the duplicate
    check and the presence decisions see every earlier batch of those devices.
    """
    accepted, rejected, now, owner = batch.accepted, batch.rejected, batch.now, batch.owner
    presence = batch.presence
    collapsed = 0
    if presence is not None:
        await device.lock_devices(conn, accepted)
    items = await _not_yet_stored(conn, batch)
    synthetic: set[int] = set()
    if presence is not None:
        items, collapsed, announced = await device.apply_presence(conn, items, presence, now)
        synthetic = {id(item) for item in announced}
    fresh, deliveries = await store_items(
        conn, items, now=now, owner=owner, lease_until=batch.lease_until, owners=batch.owners
    )
    if rejected:
        await conn.execute(
            _INSERT_REJECTED,
            *columns(rejected, "received_at topic payload reason detail"),
            [r.account or "" for r in rejected],
        )
    from_batch = sum(1 for item in fresh if id(item) not in synthetic)
    return IngestResult(
        deliveries,
        stored=len(fresh),
        duplicates=len(accepted) - from_batch,
        collapsed=collapsed,
    )


async def store_items(
    conn: Any,
    items: Sequence[Accepted],
    *,
    now: float,
    owner: str,
    lease_until: float,
    owners: Mapping[str, str],
) -> tuple[list[Accepted], list[Delivery]]:
    """Insert events not stored yet and their deliveries leased to ``owner``.

    Returns the items really stored (an id repeated in ``items`` or stored
    meanwhile by another instance is skipped) and the deliveries created.
    """
    unique: list[Accepted] = []
    ids_in_batch: set[str] = set()
    for item in items:
        if item.event.id not in ids_in_batch:
            ids_in_batch.add(item.event.id)
            unique.append(item)
    fresh = unique
    if unique:
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [], [])
        for item in unique:
            values = common.event_values(item.event, item.received_at)
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        inserted = {row[0] for row in await conn.fetch(_INSERT_EVENTS, *columns)}
        if len(inserted) < len(unique):
            fresh = [item for item in unique if item.event.id in inserted]
        await directory.note_devices(conn, fresh)

    ids = iter(new_delivery_ids(now, sum(len(item.subscriptions) for item in fresh)))
    deliveries: list[Delivery] = []
    d_ids: list[str] = []
    d_events: list[str] = []
    d_subs: list[str] = []
    d_devices: list[str | None] = []
    d_accounts = common.delivery_owners(
        (name for item in fresh for name in item.subscriptions), owners
    )
    for item in fresh:
        event = item.event
        for subscription in item.subscriptions:
            delivery_id = next(ids)
            account = d_accounts[len(d_ids)]
            d_ids.append(delivery_id)
            d_events.append(event.id)
            d_subs.append(subscription)
            d_devices.append(event.device_id)
            deliveries.append(
                Delivery(
                    delivery_id, event, subscription, 0, now, _PENDING, now, account=account or None
                )
            )
    if d_ids:
        await conn.execute(
            _INSERT_DELIVERIES,
            d_ids,
            d_events,
            d_subs,
            d_devices,
            now,
            owner,
            lease_until,
            d_accounts,
        )
    return fresh, deliveries


async def record_attempts(
    conn: Any, results: Sequence[tuple[AttemptRecord, AttemptOutcome]], now: float
) -> None:
    """Apply each outcome, keep each attempt (a first success on its delivery's row,
    see :mod:`bridge.store.history`); every lease involved is dropped."""
    if not results:
        return
    records = [record for record, _ in results]
    statuses: list[str] = []
    next_ats: list[float | None] = []
    reasons: list[str | None] = []
    for record, outcome in results:
        status, next_at, reason = common.outcome_values(record, outcome, now)
        statuses.append(status)
        next_ats.append(next_at)
        reasons.append(reason)
    schedules = [schedule_values(outcome) for _, outcome in results]
    await conn.execute(
        _APPLY_OUTCOMES,
        [r.delivery_id for r in records],
        statuses,
        [r.attempt for r in records],
        next_ats,
        reasons,
        [r.status_code for r in records],
        [r.error for r in records],
        now,
        [r.lease_token for r in records],
        *(list(column) for column in zip(*schedules, strict=True)),
        [r.started_at for r in records],
        [r.latency_ms for r in records],
        [r.response_excerpt for r in records],
    )
    await conn.execute(
        _INSERT_ATTEMPTS,
        *columns(
            records, "delivery_id attempt started_at latency_ms status_code error response_excerpt"
        ),
        [history.first_success(record, outcome) for record, outcome in results],
    )
    # Pipe answers with the results they came with: one commit (bridge.store.postgres.replies).
    await commit_replies(conn, results)


async def create_deliveries(
    conn: Any, event: Event, subscriptions: Sequence[str], now: float, accounts: Sequence[str]
) -> list[Delivery]:
    """Store ``event`` if missing; one new pending, unleased delivery per subscription,
    each recorded with its subscription's account (``accounts``, in the same order)."""
    await conn.execute(_INSERT_EVENTS, *([value] for value in common.event_values(event, now)))
    ids = new_delivery_ids(now, len(subscriptions))
    if ids:
        await conn.execute(
            _INSERT_DELIVERIES,
            ids,
            [event.id] * len(ids),
            list(subscriptions),
            [event.device_id] * len(ids),
            now,
            None,
            None,
            list(accounts),
        )
    return [
        Delivery(delivery_id, event, subscription, 0, now, _PENDING, now, account=account or None)
        for delivery_id, subscription, account in zip(ids, subscriptions, accounts, strict=True)
    ]


async def purge_chunk(conn: Any, delivered_before: float, dead_before: float) -> tuple[bool, int]:
    """Delete up to ``PURGE_CHUNK`` finished deliveries past retention with their attempts,
    or, once none is left, up to ``PURGE_CHUNK`` orphaned events.

    Returns whether the purge is done and how many rows this chunk removed.
    """
    rows = await conn.fetch(leases.FINISHED, delivered_before, dead_before, leases.PURGE_CHUNK)
    ids = [row[0] for row in rows]
    removed = 0
    if ids:
        removed += rowcount(await conn.execute(leases.PURGE_ATTEMPTS, ids))
        removed += rowcount(await conn.execute(leases.PURGE_DELIVERIES, ids))
    if len(ids) >= leases.PURGE_CHUNK:
        return False, removed
    # An event with no delivery left is kept until the later bound so that a
    # late broker redelivery of it is still recognised as a duplicate.
    bound = max(delivered_before, dead_before)
    events = rowcount(await conn.execute(leases.PURGE_EVENTS, bound, leases.PURGE_CHUNK))
    return events < leases.PURGE_CHUNK, removed + events


def list_deliveries_query(
    filters: Sequence[tuple[str, Any]], *, limit: int
) -> tuple[str, list[Any]]:
    """The SELECT of one page of deliveries, newest (highest id) first.

    ``filters`` are (``column operator``, value) pairs from
    :func:`bridge.store.common.delivery_filters`.
    """
    where = [f"{condition} ${n}" for n, (condition, _) in enumerate(filters, start=1)]
    params = [value for _, value in filters]
    params.append(limit)
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    query = (
        f"SELECT {common.DELIVERY_COLUMNS} {common.FROM_DELIVERIES} {condition} "
        f"ORDER BY d.id DESC LIMIT ${len(params)}"
    )
    return query, params
