"""Batch membership and ordered batch claims for the PostgreSQL store.

The same rules as :mod:`bridge.store.sqlite.batches` (read its docstring):
``batch_members`` (schema step 9) keeps which deliveries went together under
which batch id; ordered batching claims the first ``k`` pending deliveries of
each device. Unlike a claim of one head per device, a run of several is not
safe with ``SKIP LOCKED`` (an instance could skip a device's first delivery,
locked by another's claim, and take its second), so ordered batch claims of
one subscription take a transaction-scoped advisory lock and run one at a time.

f-strings here only join constant fragments; values are always $n.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.store import common, rows
from bridge.store.postgres.leases import LEASE_LAPSED, NEXT_FENCE

__all__ = ["assign_batch", "batches_of", "claim_runs", "forget"]

# A delivery gone since (purged) is skipped rather than failing the whole batch.
_ASSIGN = """INSERT INTO batch_members (delivery_id, batch_id, position)
    SELECT m.id, $1, m.n - 1
    FROM unnest($2::text[]) WITH ORDINALITY AS m (id, n)
    WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = m.id)
    ON CONFLICT (delivery_id) DO UPDATE SET batch_id = EXCLUDED.batch_id,
      position = EXCLUDED.position"""
_BATCHES_OF = """SELECT delivery_id, batch_id FROM batch_members
    WHERE delivery_id = ANY($1::text[])"""
# An older delivery of the device that this claim could not take holds the rest back.
_BLOCKER_LAPSED = LEASE_LAPSED.replace("d.lease_", "b.lease_")
_FORGET = "DELETE FROM batch_members WHERE delivery_id = $1"
_LOCK_SUBSCRIPTION = "SELECT pg_advisory_xact_lock(hashtextextended('batch-runs:' || $1, 0))"
_CLAIM_RUNS = f"""WITH due AS (
        SELECT d.id FROM deliveries AS d
        WHERE d.subscription = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2
          AND {LEASE_LAPSED}
          AND (d.device_id IS NULL OR (
            d.id IN (SELECT f.id FROM deliveries AS f
                WHERE f.subscription = $1 AND f.status = 'pending'
                  AND f.device_id = d.device_id
                ORDER BY f.seq LIMIT $7)
            AND NOT EXISTS (SELECT 1 FROM deliveries AS b
                WHERE b.subscription = $1 AND b.status = 'pending'
                  AND b.device_id = d.device_id AND b.seq < d.seq
                  AND NOT (b.next_attempt_at <= $2 AND {_BLOCKER_LAPSED}))))
        ORDER BY d.seq LIMIT $5
        FOR UPDATE OF d),
    leased AS (
        UPDATE deliveries AS d SET lease_token = {NEXT_FENCE},
          lease_owner = $3, lease_until = $4, updated_at = $2
        FROM due WHERE d.id = due.id
        RETURNING d.*)
    SELECT {common.DELIVERY_COLUMNS} FROM leased AS d JOIN events AS e ON e.id = d.event_id
    ORDER BY d.seq"""  # noqa: S608


async def assign_batch(conn: Any, batch_id: str, delivery_ids: Sequence[str]) -> None:
    await conn.execute(_ASSIGN, batch_id, list(delivery_ids))


async def batches_of(conn: Any, delivery_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(_BATCHES_OF, list(delivery_ids))
    return {str(row[0]): str(row[1]) for row in rows}


async def forget(conn: Any, delivery_id: str) -> None:
    await conn.execute(_FORGET, delivery_id)


async def claim_runs(
    conn: Any,
    subscription: str,
    lease: tuple[float, str, float, float],
    limit: int,
    per_device: int,
) -> list[rows.Delivery]:
    """Lease the first ``per_device`` claimable deliveries of each device (see above)."""
    now, owner, lease_until, stale = lease
    await conn.execute(_LOCK_SUBSCRIPTION, subscription)
    records = await conn.fetch(
        _CLAIM_RUNS, subscription, now, owner, lease_until, limit, stale, per_device
    )
    return [common.delivery_from_row(row) for row in records]
