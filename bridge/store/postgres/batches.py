"""Batch membership and ordered batch claims for the PostgreSQL store.

The same rules as :mod:`bridge.store.sqlite.batches` (read its docstring):
``batch_members`` (schema step 9) keeps which deliveries went together under
which batch id, and a batch a delivery leaves is retired whole; ordered
batching claims the first ``k`` pending deliveries of each device, found by a
walk of the partial index ``deliveries_pending_device`` (a loose index scan
over the devices, then each device's first ``k`` by ``LATERAL … LIMIT``).
Unlike a claim of one head per device, a run of several is not safe with
``SKIP LOCKED`` (an instance could skip a device's first delivery, locked by
another's claim, and take its second), so ordered batch claims of one
subscription take a transaction-scoped advisory lock and run one at a time.

f-strings here only join constant fragments; values are always $n.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.store import common, rows
from bridge.store.postgres.device import DEVICES
from bridge.store.postgres.leases import LEASE_LAPSED, NEXT_FENCE, claim_params

__all__ = ["CLAIM_RUNS", "assign_batch", "batch_members", "batches_of", "claim_runs", "forget"]

# Moving deliveries retires the batches they were in (every member leaves).
_RETIRE = """DELETE FROM batch_members WHERE batch_id <> $1 AND batch_id IN (
    SELECT batch_id FROM batch_members WHERE delivery_id = ANY($2::text[]))"""
# A delivery gone since (purged) is skipped rather than failing the whole batch.
_ASSIGN = """INSERT INTO batch_members (delivery_id, batch_id, position)
    SELECT m.id, $1, m.n - 1
    FROM unnest($2::text[]) WITH ORDINALITY AS m (id, n)
    WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = m.id)
    ON CONFLICT (delivery_id) DO UPDATE SET batch_id = EXCLUDED.batch_id,
      position = EXCLUDED.position"""
_MEMBERS = "SELECT delivery_id FROM batch_members WHERE batch_id = $1 ORDER BY position"
_BATCHES_OF = """SELECT delivery_id, batch_id FROM batch_members
    WHERE delivery_id = ANY($1::text[])"""
_FORGET = """DELETE FROM batch_members WHERE batch_id IN (
    SELECT batch_id FROM batch_members WHERE delivery_id = $1)"""
_LOCK_SUBSCRIPTION = "SELECT pg_advisory_xact_lock(hashtextextended('batch-runs:' || $1, 0))"
# Each device's first $7 pending deliveries, and whether each may go now (due,
# not leased); a run stops at the first that may not.
CLAIM_RUNS = f"""{DEVICES},
    first_k AS (
        SELECT run.* FROM devices CROSS JOIN LATERAL (
            SELECT d.id, d.device_id, d.seq, d.next_attempt_at <= $2 AND {LEASE_LAPSED} AS ok
            FROM deliveries AS d
            WHERE d.subscription = $1 AND d.status = 'pending'
              AND d.device_id = devices.device_id
            ORDER BY d.seq LIMIT $7) AS run
        WHERE devices.device_id IS NOT NULL),
    due AS (
        SELECT d.id FROM deliveries AS d
        WHERE d.id IN (
            SELECT f.id FROM first_k AS f WHERE f.ok AND NOT EXISTS (
                SELECT 1 FROM first_k AS b
                WHERE b.device_id = f.device_id AND b.seq < f.seq AND NOT b.ok)
            UNION ALL
            SELECT id FROM deliveries
            WHERE subscription = $1 AND status = 'pending' AND device_id IS NULL)
          AND d.status = 'pending' AND d.next_attempt_at <= $2 AND {LEASE_LAPSED}
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
    await conn.execute(_RETIRE, batch_id, list(delivery_ids))
    await conn.execute(_ASSIGN, batch_id, list(delivery_ids))


async def batches_of(conn: Any, delivery_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(_BATCHES_OF, list(delivery_ids))
    return {str(row[0]): str(row[1]) for row in rows}


async def batch_members(conn: Any, batch_id: str) -> list[str]:
    return [str(row[0]) for row in await conn.fetch(_MEMBERS, batch_id)]


async def forget(conn: Any, delivery_id: str) -> None:
    await conn.execute(_FORGET, delivery_id)


async def claim_runs(conn: Any, claim: rows.Claim) -> list[rows.Delivery]:
    """Lease the first ``per_device`` claimable deliveries of each device (see above)."""
    await conn.execute(_LOCK_SUBSCRIPTION, claim.subscription)
    records = await conn.fetch(CLAIM_RUNS, *claim_params(claim), claim.per_device)
    return [common.delivery_from_row(row) for row in records]
