"""The PostgreSQL store's operations: one coroutine per :class:`bridge.store.base.Store`
method, under the method's name, taking the pooled connection the store's
``_run`` opened the transaction on. None commits.

Operations that are whole in another module (ingest, the directory…) are taken from
there: see the store class's ``_sources``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from bridge.core.events import Event
from bridge.core.presence import PresenceState
from bridge.store import common, history, rows
from bridge.store import statements as shared
from bridge.store.postgres import batches, device, leases
from bridge.store.postgres import queries as sql
from bridge.store.postgres.queries import rowcount
from bridge.store.statements import numbered as pg

# -- the hot path -------------------------------------------------------------------------


async def claim_presence_timeouts(
    conn: Any, batch: rows.IngestBatch, policy: rows.PresencePolicy, limit: int
) -> rows.IngestResult:
    announced = await device.timed_out(conn, policy, batch.now, limit)
    fresh, deliveries = await sql.store_items(
        conn,
        announced,
        now=batch.now,
        owner=batch.owner,
        lease_until=batch.lease_until,
        owners=batch.owners,
    )
    return rows.IngestResult(deliveries, stored=len(fresh), duplicates=0)


async def get_presence(conn: Any, account: str, device_id: str) -> PresenceState | None:
    row = await conn.fetchrow(device.GET_PRESENCE, account, device_id)
    return None if row is None else common.presence_from_row(row)


async def claim_due(conn: Any, claim: rows.Claim) -> list[rows.Delivery]:
    if claim.ordered and claim.per_device > 1:
        return await batches.claim_runs(conn, claim)
    query = device.CLAIM_ORDERED if claim.ordered else sql.CLAIM
    records = await conn.fetch(query, *leases.claim_params(claim))
    return [common.delivery_from_row(row) for row in records]


async def next_due_at(conn: Any, subscription: str, ordered: bool) -> float | None:
    found = await conn.fetchval(device.NEXT_DUE_ORDERED if ordered else sql.NEXT_DUE, subscription)
    return None if found is None else float(found)


async def heartbeat(conn: Any, owner: str) -> None:
    await conn.execute(leases.HEARTBEAT, owner)


async def oldest_pending(conn: Any, subscriptions: list[str]) -> dict[str, float]:
    records = await conn.fetch(leases.OLDEST_PENDING, subscriptions)
    return {row[0]: float(row[1]) for row in records if row[1] is not None}


async def release(conn: Any, delivery_ids: list[str]) -> None:
    await conn.execute(sql.RELEASE, delivery_ids)


# -- reading ------------------------------------------------------------------------------


async def get_delivery(conn: Any, delivery_id: str) -> rows.Delivery | None:
    row = await conn.fetchrow(pg(shared.GET_DELIVERY), delivery_id)
    return None if row is None else common.delivery_from_row(row)


async def attempts(conn: Any, delivery_id: str) -> list[rows.AttemptRecord]:
    stored = [rows.AttemptRecord(*row) for row in await conn.fetch(sql.ATTEMPTS, delivery_id)]
    last = await conn.fetchrow(pg(shared.LAST_ATTEMPT), delivery_id)
    return history.with_summarised(stored, last)


async def get_event(conn: Any, event_id: str) -> Event | None:
    row = await conn.fetchrow(pg(shared.GET_EVENT), event_id)
    return None if row is None else common.event_from_body(row[0], row[1], row[2])


async def queue_depth(conn: Any, subscription: str) -> int:
    return int(await conn.fetchval(pg(shared.QUEUE_DEPTH), subscription))


async def subscription_states(conn: Any) -> dict[str, rows.SubscriptionState]:
    records = await conn.fetch(pg(shared.SUBSCRIPTION_STATES))
    return {row[0]: common.subscription_state_from_row(row) for row in records}


async def list_rejected(conn: Any, limit: int) -> list[rows.Rejection]:
    return [
        common.rejection_from_row(row) for row in await conn.fetch(pg(shared.LIST_REJECTED), limit)
    ]


async def counts(conn: Any) -> dict[str, int]:
    return common.delivery_counts(
        await conn.fetch(pg(shared.COUNT_BY_STATUS)),
        events=await conn.fetchval(pg(shared.COUNT_EVENTS)),
        rejected=await conn.fetchval(pg(shared.COUNT_REJECTED)),
    )


async def list_deliveries(
    conn: Any, filters: Sequence[tuple[str, Any]], limit: int
) -> list[rows.Delivery]:
    query, params = sql.list_deliveries_query(filters, limit=limit)
    return [common.delivery_from_row(row) for row in await conn.fetch(query, *params)]


# -- operator and housekeeping writes -----------------------------------------------------


async def save_subscription_state(conn: Any, values: tuple[Any, ...]) -> None:
    await conn.execute(pg(shared.SAVE_SUBSCRIPTION_STATE), *values)


async def requeue(conn: Any, delivery_id: str, now: float) -> bool:
    await batches.forget(conn, delivery_id)  # an operator's retry goes in a new batch
    return rowcount(await conn.execute(pg(shared.REQUEUE), now, delivery_id)) > 0


async def expire_older_than(
    conn: Any, received_before: float, now: float, paused: list[str]
) -> dict[str, int]:
    records = await conn.fetch(sql.EXPIRE, now, received_before, paused)
    return dict(Counter(row[0] for row in records))


async def resume_age(conn: Any, subscription: str, paused_for: float) -> int:
    return rowcount(await conn.execute(pg(shared.RESUME_AGE), paused_for, subscription))


async def probe(conn: Any) -> None:
    for statement in sql.PROBE:
        await conn.execute(statement)


async def note_broker_counter(
    conn: Any, broker: str, name: str, value: int, now: float
) -> int | None:
    # The row lock keeps two instances from both seeing the old value.
    previous = await conn.fetchval(pg(shared.BROKER_COUNTER) + " FOR UPDATE", broker, name)
    await conn.execute(pg(shared.NOTE_BROKER_COUNTER), broker, name, value, now)
    return None if previous is None else int(previous)
