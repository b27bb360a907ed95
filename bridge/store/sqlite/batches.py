"""Batch membership and ordered batch claims for the SQLite store.

A subscription with ``batch:`` sends several deliveries in one POST. Which
deliveries went together, under which batch id, is kept in ``batch_members``
(schema step 9) so a failed batch is retried whole under the same id. A batch
id names one set of events for good (it is the POST's ``webhook-id``): when a
delivery leaves its batch (assigned to another, or an operator's retry), the
whole batch is retired, so its other members go under new ids too and no id
is ever sent with a smaller set. Rows go with their delivery
(``ON DELETE CASCADE``) when retention purges it.

Ordered batching claims the first ``k`` pending deliveries of each device: a
delivery is claimable only when it is among its device's ``k`` oldest pending
ones and every older pending one of the device is claimable too (due, and not
leased), so a device's deliveries go out as one run, in creation order, and
the next run waits until the previous one is settled. Like the ordinary
ordered claim (:mod:`bridge.store.sqlite.device`), the runs are found by
walking the partial index ``deliveries_pending_device``: one probe per device,
then one per delivery of its run, never a scan of the backlog.

Everything here runs on the store's one thread inside a transaction it opened.
f-strings here only join constant fragments; values are always bound.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from bridge.store import common, rows
from bridge.store.sqlite.device import DEVICES
from bridge.store.sqlite.leases import LEASE_LAPSED, lease_claimed

__all__ = ["CLAIMABLE_RUNS", "assign_batch", "batch_members", "batches_of", "claim_runs", "forget"]

# Moving deliveries retires the batches they were in (every member leaves).
_RETIRE = """DELETE FROM batch_members WHERE batch_id <> ?2 AND batch_id IN (
    SELECT batch_id FROM batch_members WHERE delivery_id IN (SELECT value FROM json_each(?1)))"""
# A delivery gone since (purged) is skipped rather than failing the whole batch.
_ASSIGN = """INSERT INTO batch_members (delivery_id, batch_id, position)
    SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = ?1)
    ON CONFLICT (delivery_id) DO UPDATE SET batch_id = excluded.batch_id,
      position = excluded.position"""
_MEMBERS = "SELECT delivery_id FROM batch_members WHERE batch_id = ? ORDER BY position"
_BATCHES_OF = """SELECT delivery_id, batch_id FROM batch_members
    WHERE delivery_id IN (SELECT value FROM json_each(?))"""
_FORGET = """DELETE FROM batch_members WHERE batch_id IN (
    SELECT batch_id FROM batch_members WHERE delivery_id = ?)"""
# The walk: each device with pending deliveries (as device.py's), then each
# device's oldest pending deliveries one index probe after the other, while
# they may go now (due, not leased) and at most :k of them: a run stops at the
# first delivery that may not go.
_CLAIMABLE = f"d.next_attempt_at <= :now AND {LEASE_LAPSED}"
_NEXT = """(SELECT min(h.rowid) FROM deliveries AS h
        WHERE h.subscription = :sub AND h.status = 'pending' AND h.device_id = {device}
          AND h.rowid > {after})"""
_HEAD = _NEXT.format(device="devices.device_id", after="-1")
_FOLLOWING = _NEXT.format(device="runs.device_id", after="runs.rid")
CLAIMABLE_RUNS = f"""{DEVICES},
    runs (device_id, rid, n) AS (
        SELECT d.device_id, d.rowid, 1 FROM devices JOIN deliveries AS d
          ON d.rowid = {_HEAD}
        WHERE devices.device_id IS NOT NULL AND {_CLAIMABLE}
        UNION ALL
        SELECT d.device_id, d.rowid, runs.n + 1 FROM runs JOIN deliveries AS d
          ON d.rowid = {_FOLLOWING}
        WHERE runs.n < :k AND {_CLAIMABLE})
    SELECT {common.DELIVERY_COLUMNS} {common.FROM_DELIVERIES}
    WHERE d.rowid IN (
        SELECT rid FROM runs
        UNION ALL
        SELECT rowid FROM deliveries
        WHERE subscription = :sub AND status = 'pending' AND device_id IS NULL)
      AND {_CLAIMABLE}
    ORDER BY d.rowid LIMIT :limit"""  # noqa: S608


def assign_batch(conn: sqlite3.Connection, batch_id: str, delivery_ids: Sequence[str]) -> None:
    conn.execute(_RETIRE, (orjson.dumps(list(delivery_ids)).decode(), batch_id))
    conn.executemany(
        _ASSIGN, [(delivery_id, batch_id, n) for n, delivery_id in enumerate(delivery_ids)]
    )


def batches_of(conn: sqlite3.Connection, delivery_ids: Sequence[str]) -> dict[str, str]:
    ids = orjson.dumps(list(delivery_ids)).decode()
    return {str(row[0]): str(row[1]) for row in conn.execute(_BATCHES_OF, (ids,))}


def batch_members(conn: sqlite3.Connection, batch_id: str) -> list[str]:
    return [str(row[0]) for row in conn.execute(_MEMBERS, (batch_id,))]


def forget(conn: sqlite3.Connection, delivery_id: str) -> None:
    conn.execute(_FORGET, (delivery_id,))


def claim_runs(conn: sqlite3.Connection, claim: rows.Claim) -> list[rows.Delivery]:
    """Lease the first ``per_device`` claimable deliveries of each device (see above)."""
    params = {"sub": claim.subscription, "now": claim.now, "owner": claim.owner}
    params |= {"stale": claim.stale, "limit": claim.limit, "k": claim.per_device}
    return lease_claimed(conn, conn.execute(CLAIMABLE_RUNS, params).fetchall(), claim)
