"""Batch membership and ordered batch claims for the SQLite store.

A subscription with ``batch:`` sends several deliveries in one POST. Which
deliveries went together, under which batch id, is kept in ``batch_members``
(schema step 9) so a failed batch is retried whole under the same id. An
operator's retry (``requeue``) takes a delivery out of its batch. Rows go with
their delivery (``ON DELETE CASCADE``) when retention purges it.

Ordered batching claims the first ``k`` pending deliveries of each device: a
delivery is claimable only when it is among its device's ``k`` oldest pending
ones and every older pending one of the device is claimable too (due, and not
leased), so a device's deliveries go out as one run, in creation order, and
the next run waits until the previous one is settled.

Everything here runs on the store's one thread inside a transaction it opened.
f-strings here only join constant fragments; values are always bound.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace

import orjson

from bridge.store import common, rows
from bridge.store.sqlite.leases import LEASE, LEASE_LAPSED

__all__ = ["assign_batch", "batches_of", "claim_runs", "forget"]

# A delivery gone since (purged) is skipped rather than failing the whole batch.
_ASSIGN = """INSERT INTO batch_members (delivery_id, batch_id, position)
    SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = ?1)
    ON CONFLICT (delivery_id) DO UPDATE SET batch_id = excluded.batch_id,
      position = excluded.position"""
_BATCHES_OF = """SELECT delivery_id, batch_id FROM batch_members
    WHERE delivery_id IN (SELECT value FROM json_each(?))"""
# An older delivery of the device that this claim could not take holds the rest back.
_BLOCKER_LAPSED = LEASE_LAPSED.replace("d.lease_", "b.lease_")
_FORGET = "DELETE FROM batch_members WHERE delivery_id = ?"
_CLAIMABLE_RUNS = f"""SELECT {common.DELIVERY_COLUMNS} {common.FROM_DELIVERIES}
    WHERE d.subscription = :sub AND d.status = 'pending' AND d.next_attempt_at <= :now
      AND {LEASE_LAPSED}
      AND (d.device_id IS NULL OR (
        d.rowid IN (SELECT f.rowid FROM deliveries AS f
            WHERE f.subscription = :sub AND f.status = 'pending' AND f.device_id = d.device_id
            ORDER BY f.rowid LIMIT :k)
        AND NOT EXISTS (SELECT 1 FROM deliveries AS b
            WHERE b.subscription = :sub AND b.status = 'pending' AND b.device_id = d.device_id
              AND b.rowid < d.rowid
              AND NOT (b.next_attempt_at <= :now AND {_BLOCKER_LAPSED}))))
    ORDER BY d.rowid LIMIT :limit"""  # noqa: S608


def assign_batch(conn: sqlite3.Connection, batch_id: str, delivery_ids: Sequence[str]) -> None:
    conn.executemany(
        _ASSIGN, [(delivery_id, batch_id, n) for n, delivery_id in enumerate(delivery_ids)]
    )


def batches_of(conn: sqlite3.Connection, delivery_ids: Sequence[str]) -> dict[str, str]:
    ids = orjson.dumps(list(delivery_ids)).decode()
    return {str(row[0]): str(row[1]) for row in conn.execute(_BATCHES_OF, (ids,))}


def forget(conn: sqlite3.Connection, delivery_id: str) -> None:
    conn.execute(_FORGET, (delivery_id,))


def claim_runs(
    conn: sqlite3.Connection,
    subscription: str,
    lease: tuple[float, str, float, float],
    limit: int,
    per_device: int,
) -> list[rows.Delivery]:
    """Lease the first ``per_device`` claimable deliveries of each device (see above)."""
    now, owner, lease_until, stale = lease
    params = {"sub": subscription, "now": now, "owner": owner, "stale": stale}
    params |= {"limit": limit, "k": per_device}
    records = conn.execute(_CLAIMABLE_RUNS, params).fetchall()
    if not records:
        return []
    ids = orjson.dumps([row[0] for row in records]).decode()
    taken = {"owner": owner, "until": lease_until, "now": now, "ids": ids}
    tokens = dict(conn.execute(LEASE, taken).fetchall())
    claimed = [common.delivery_from_row(row) for row in records]
    return [replace(d, lease_token=tokens.get(d.id, d.lease_token)) for d in claimed]
